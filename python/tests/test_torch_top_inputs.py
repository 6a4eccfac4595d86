"""spanmatch.torch top_inputs=k: equal to a brute-force top-k over hand-captured activations
(indices, values, positions; ties to the lower index), on a CNN and on a tiny GPT-2."""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("tqdm")
from torch import nn  # noqa: E402

import spanmatch.torch as smt  # noqa: E402

from test_torch import loader, no_hooks, random_seqs, token_batches  # noqa: E402


class Quant(nn.Module):
    """A ReLU rounded to halves: many equal responses, across inputs and across positions."""

    def forward(self, x):
        return torch.round(torch.relu(x) * 2) / 2


class QuantCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.q1 = Quant()
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1, stride=2)
        self.relu2 = nn.ReLU()
        self.fc = nn.Linear(8, 5)
        self.q3 = Quant()

    def forward(self, x):
        h = self.relu2(self.conv2(self.q1(self.conv1(x))))
        return self.q3(self.fc(h.mean((2, 3))))


def capture(model: nn.Module, data, names: List[str]) -> Dict[str, List[torch.Tensor]]:
    mods = dict(model.named_modules())
    got: Dict[str, List[torch.Tensor]] = {n: [] for n in names}
    hooks = [mods[n].register_forward_hook(lambda m, i, o, n=n: got[n].append((o[0] if isinstance(o, tuple) else o).detach().clone())) for n in names]
    model.eval()
    with torch.no_grad():
        for batch in data:
            if isinstance(batch, dict):
                model(**batch)
            else:
                model(batch[0] if isinstance(batch, (tuple, list)) else batch)
    for h in hooks:
        h.remove()
    return got


def brute(
    responses: np.ndarray, positions: Optional[np.ndarray], k: int
) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """Top-k per neuron by (value descending, input index ascending): [neurons, k] arrays."""
    n, c = responses.shape
    idx = np.full((c, k), -1)
    val = np.full((c, k), np.nan)
    pos = None if positions is None else np.full((c, k), -1)
    for j in range(c):
        order = np.lexsort((np.arange(n), -responses[:, j]))[:k]
        idx[j, : len(order)] = order
        val[j, : len(order)] = responses[order, j]
        if pos is not None:
            pos[j, : len(order)] = positions[order, j]
    return idx, val, pos


def conv_responses(x: np.ndarray) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    if x.ndim == 2:
        return x.astype(np.float64), None
    flat = x.reshape(x.shape[0], x.shape[1], -1)
    return flat.max(axis=2).astype(np.float64), flat.argmax(axis=2)  # argmax: the first maximum


def assert_top(t: smt.TopInputs, idx, val, pos) -> None:
    np.testing.assert_array_equal(t.indices, idx)
    np.testing.assert_array_equal(t.values, val)
    if pos is None:
        assert t.positions is None
    else:
        np.testing.assert_array_equal(t.positions, pos)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cnn_top_inputs_equal_brute_force_with_ties(dtype):
    """float32 responses: one topk over exact int64 keys; float64: a stable sort."""
    torch.manual_seed(0)
    a, b = QuantCNN().to(dtype), QuantCNN().to(dtype)
    data = [(x.to(dtype), y) for x, y in loader(n=45, batch=7)]  # uneven last batch
    names = ["q1", "relu2", "q3"]
    k = 6
    r = smt.compare(a, b, data, layers=names, top_inputs=k, progress=False)
    ties_across = ties_within = 0
    for model, side in ((a, "a"), (b, "b")):
        got = capture(model, data, names)
        for n in names:
            x = torch.cat(got[n]).numpy()
            resp, pos = conv_responses(x)
            idx, val, p = brute(resp, pos, k)
            t = getattr(r[n], f"top_inputs_{side}")
            assert t is r.top_inputs[side][n]
            assert t.k == k and t.indices.shape == (x.shape[1], k)
            assert t.positions_shape == (None if x.ndim == 2 else tuple(x.shape[2:]))
            assert_top(t, idx, val, p)
            ties_across += int(np.sum(val[:, 1:] == val[:, :-1]))
            if x.ndim == 4:
                flat = x.reshape(x.shape[0], x.shape[1], -1)
                ties_within += int(np.sum((flat == flat.max(axis=2, keepdims=True)).sum(axis=2) > 1))
    # The ties really were there (lower index first, first position of the maximum).
    assert ties_across > 20 and ties_within > 20
    # The record carries the same lists (the results schema's block).
    rec = r["q1"].record["top_inputs"]
    assert rec["k"] == k and rec["response"] == "max over positions"
    assert rec["a"]["indices"] == r["q1"].top_inputs_a.indices.tolist()
    assert rec["b"]["positions_shape"] == [8, 8]


def test_fewer_inputs_than_k_and_cross_layers():
    torch.manual_seed(1)
    a, b = QuantCNN(), QuantCNN()
    data = loader(n=5, batch=2)
    r = smt.compare(a, b, data, layers=["relu2", "q3"], top_inputs=8, cross=True, pool="mean", progress=False)
    t = r["q3"].top_inputs_a
    assert (t.indices[:, 5:] == -1).all() and np.isnan(t.values[:, 5:]).all()
    assert (t.indices[:, :5] >= 0).all()
    assert sorted(t.indices[0, :5].tolist()) == [0, 1, 2, 3, 4]
    assert set(r.top_inputs["a"]) == {"relu2", "q3"} and set(r.top_inputs["b"]) == {"relu2", "q3"}
    assert r["relu2"].top_inputs_a.positions[:, 5:].tolist() == [[-1, -1, -1]] * 8
    assert no_hooks(a, b)


def _tiny_gpt2(seed: int):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(
        vocab_size=40, n_embd=16, n_layer=2, n_head=2, n_positions=32, bos_token_id=0, eos_token_id=0
    )
    return transformers.GPT2Model(cfg)


def test_gpt2_top_inputs_equal_brute_force_tokens_and_padding():
    a, b = _tiny_gpt2(0), _tiny_gpt2(1)
    seqs = random_seqs(13, 40, 2, 9, seed=5)
    batches = token_batches(seqs, 4)
    names = ["h.0.mlp.act", "h.1"]
    k = 4
    r = smt.compare(a, b, batches, layers=names, top_inputs=k, progress=False)
    for model, side in ((a, "a"), (b, "b")):
        got = capture(model, batches, names)
        for n in names:
            resp, pos = [], []
            for out, batch in zip(got[n], batches):
                m = batch["attention_mask"].bool()
                y = out.masked_fill(~m[:, :, None], float("-inf"))  # padding left out
                v, p = y.max(dim=1)
                resp.append(v)
                pos.append(p)
            resp_np = torch.cat(resp).double().numpy()
            pos_np = torch.cat(pos).numpy()
            idx, val, p = brute(resp_np, pos_np, k)
            t = getattr(r[n], f"top_inputs_{side}")
            assert t.positions_shape is None
            assert_top(t, idx, val, p)
            # Every position is a real token of its input.
            lengths = np.array([len(s) for s in seqs])
            assert (t.positions < lengths[t.indices]).all()
    # Padding matters: without the mask (padding counted) another answer.
    nomask = [{"input_ids": bt["input_ids"]} for bt in batches]
    r2 = smt.compare(a, b, nomask, layers=names, top_inputs=k, progress=False)
    assert not np.array_equal(r2["h.1"].top_inputs_a.positions, r["h.1"].top_inputs_a.positions)
