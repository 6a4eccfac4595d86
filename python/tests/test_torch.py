"""spanmatch.torch: two models and a DataLoader, against activations extracted by hand."""

from __future__ import annotations

import math
from typing import Dict, List

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("tqdm")
from torch import nn  # noqa: E402

import spanmatch  # noqa: E402
import spanmatch.torch as smt  # noqa: E402
from spanmatch.torch import _accumulate  # noqa: E402

EPS = (0.15, 0.2, 0.25, 0.3, 0.5)


# ------------------------------------------------------------------------------------------
# Models and helpers
# ------------------------------------------------------------------------------------------


class SmallCNN(nn.Module):
    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, 2 * width, 3, padding=1, stride=2),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, 12)
        self.act = nn.GELU()
        self.head = nn.Linear(12, 5)

    def forward(self, x):
        x = self.pool(self.features(x)).flatten(1)
        return self.head(self.act(self.fc(x)))


class Twice(nn.Module):
    """One ReLU module called twice per forward pass (as torchvision's BasicBlock)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 10)
        self.fc2 = nn.Linear(10, 10)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.fc2(self.relu(self.fc1(x))))


def seeded(cls, seed: int, **kw):
    torch.manual_seed(seed)
    m = cls(**kw)
    # Non-trivial BN statistics, so eval() matters.
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.2, 0.2)
            mod.running_var.uniform_(0.5, 1.5)
    return m


def loader(n: int = 50, batch: int = 16, shape=(3, 8, 8), seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *shape, generator=g)
    y = torch.randint(0, 5, (n,), generator=g)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=batch)


def by_hand(model: nn.Module, data, names: List[str]) -> Dict[str, np.ndarray]:
    """Activations of named modules over all batches (every call), as numpy arrays."""
    mods = dict(model.named_modules())
    got: Dict[str, list] = {n: [] for n in names}
    calls: Dict[str, int] = {}
    hooks = []
    for n in names:
        def hook(m, i, o, n=n):
            got[n].append(o.detach().clone())

        hooks.append(mods[n].register_forward_hook(hook))
    model.eval()
    with torch.no_grad():
        for batch in data:
            model(batch[0] if isinstance(batch, (tuple, list)) else batch)
    for h in hooks:
        h.remove()
    del calls
    return {n: torch.cat(v).numpy() for n, v in got.items()}


def assert_same(r1, r2, tol: float = 1e-9, measures: bool = True) -> None:
    assert [l.name for l in r1.layers] == [l.name for l in r2.layers]
    for l1, l2 in zip(r1.layers, r2.layers):
        assert (l1.neurons_a, l1.neurons_b, l1.rows) == (l2.neurons_a, l2.neurons_b, l2.rows), l1.name
        np.testing.assert_array_equal(l1.dead_a, l2.dead_a)
        np.testing.assert_array_equal(l1.dead_b, l2.dead_b)
        np.testing.assert_allclose(l1.thresholds_a, l2.thresholds_a, atol=tol, rtol=0, err_msg=l1.name)
        np.testing.assert_allclose(l1.thresholds_b, l2.thresholds_b, atol=tol, rtol=0, err_msg=l1.name)
        assert math.isclose(l1.max_epsilon, l2.max_epsilon, abs_tol=tol)
        assert len(l1.matches) == len(l2.matches)
        for m1, m2 in zip(l1.matches, l2.matches):
            assert m1.eps == m2.eps
            np.testing.assert_array_equal(m1.a, m2.a, err_msg=f"{l1.name} eps {m1.eps}")
            np.testing.assert_array_equal(m1.b, m2.b, err_msg=f"{l1.name} eps {m1.eps}")
            assert m1.mms == m2.mms
        if measures:
            for k in ("cka_linear", "cka_linear_debiased"):
                assert math.isclose(l1.measures[k], l2.measures[k], rel_tol=tol, abs_tol=tol), (l1.name, k)


@pytest.fixture(params=["engine", "torch"])
def backend(request, monkeypatch):
    """Layer pairs on the CPU go to the engine's accumulator; check the torch products too
    (what a GPU runs)."""
    monkeypatch.setattr(_accumulate, "NATIVE_CPU", request.param == "engine")
    return request.param


def no_hooks(*models: nn.Module) -> bool:
    return all(not m._forward_hooks for model in models for m in model.modules())


# ------------------------------------------------------------------------------------------
# Agreement with spanmatch.compare on activations extracted by hand
# ------------------------------------------------------------------------------------------


def test_cnn_equals_by_hand(backend):
    a, b = seeded(SmallCNN, 0), seeded(SmallCNN, 1)
    data = loader(n=50, batch=16)  # uneven last batch
    r = smt.compare(a, b, data, progress=False)
    names = ["features.1", "features.4", "act"]
    assert r.names == names
    ha, hb = by_hand(a, data, names), by_hand(b, data, names)
    ref = spanmatch.compare(ha, hb, eps=EPS)
    assert_same(r, ref)
    # Rows: every (input, position) of a conv layer, one per input for the fully connected.
    assert [l.rows for l in r.layers] == [50 * 64, 50 * 16, 50]
    assert r["features.1"].record["shape_a"] == [50, 8, 8, 8]
    # Not a trivial comparison: something matches, not everything.
    mms = np.array([l.mms for l in r.layers])
    assert 0 < mms.max() and mms.min() < 1


@pytest.mark.parametrize("engine32", [False, True])
def test_cnn_float32_precision_close(engine32, monkeypatch):
    """float32 products (torch: matmul per batch; engine: ssyrk per block of rows), summed in
    float64: thresholds within 1e-4 of float64, linear CKA within 1e-5, the same matches."""
    a, b = seeded(SmallCNN, 0), seeded(SmallCNN, 1)
    data = loader(n=40, batch=20)
    r64 = smt.compare(a, b, data, progress=False)
    monkeypatch.setattr(_accumulate, "NATIVE_CPU_F32", engine32)
    r32 = smt.compare(a, b, data, progress=False, precision="float32")
    worst = 0.0
    for l1, l2 in zip(r64.layers, r32.layers):
        np.testing.assert_allclose(l1.thresholds_a, l2.thresholds_a, atol=1e-4)
        np.testing.assert_allclose(l1.thresholds_b, l2.thresholds_b, atol=1e-4)
        assert abs(l1.cka - l2.cka) < 1e-5
        # The debiased estimator amplifies the ~1e-7 relative errors of the statistics (by
        # ~100 on the 40-row layer): 1.4e-5 measured there.
        assert abs(l1.measures["cka_linear_debiased"] - l2.measures["cka_linear_debiased"]) < 1e-4
        assert [m.a.tolist() for m in l1.matches] == [m.a.tolist() for m in l2.matches]
        assert l1.rows == l2.rows
        d = np.abs(np.concatenate([l1.thresholds_a - l2.thresholds_a, l1.thresholds_b - l2.thresholds_b]))
        worst = max(worst, float(np.nanmax(d)))
    assert worst > 0  # really float32 products


def test_module_called_twice_gives_one_layer_per_call(backend):
    a, b = seeded(Twice, 0), seeded(Twice, 1)
    data = [torch.randn(12, 6) for _ in range(3)]
    r = smt.compare(a, b, data, progress=False)
    assert r.names == ["relu#1", "relu#2"]
    # By hand: the two calls of the module, in order.
    def calls(model):
        out: List[List[torch.Tensor]] = [[], []]
        k = [0]

        def hook(m, i, o):
            out[k[0] % 2].append(o.clone())
            k[0] += 1

        h = model.relu.register_forward_hook(hook)
        with torch.no_grad():
            for x in data:
                model(x)
        h.remove()
        return {"relu#1": torch.cat(out[0]).numpy(), "relu#2": torch.cat(out[1]).numpy()}

    assert_same(r, spanmatch.compare(calls(a), calls(b)))


def test_layer_selection_types_patterns_and_mapping():
    a, b = seeded(SmallCNN, 0), seeded(SmallCNN, 1)
    data = loader(n=20, batch=10)
    assert smt.compare(a, b, data, layers=nn.ReLU, progress=False).names == ["features.1", "features.4"]
    assert smt.compare(a, b, data, layers="features.?", progress=False).names == [
        f"features.{i}" for i in range(5)
    ]
    assert smt.compare(a, b, data, layers=["fc", nn.GELU], progress=False).names == ["fc", "act"]
    # Two architectures: a dict; the result records both names.
    c = seeded(SmallCNN, 2, width=5)
    r = smt.compare(a, c, data, layers={"features.4": "features.4", "act": "fc"}, progress=False)
    assert r.names == ["features.4", "act"]
    assert r["act"].name_b == "fc"
    assert (r["features.4"].neurons_a, r["features.4"].neurons_b) == (16, 10)
    ref = spanmatch.compare(
        {"features.4": by_hand(a, data, ["features.4"])["features.4"], "act": by_hand(a, data, ["act"])["act"]},
        {"features.4": by_hand(c, data, ["features.4"])["features.4"], "act": by_hand(c, data, ["fc"])["fc"]},
    )
    assert_same(r, ref)
    assert smt.activation_modules(a) == ["features.1", "features.4", "act"]


def test_channels_first_conv1d_and_select(backend):
    class Seq(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(4, 6, 3, padding=1)
            self.relu = nn.ReLU()

        def forward(self, x):
            y = self.relu(self.conv(x))
            return y

    class Pair(nn.Module):
        """Returns a tuple; the tensor to compare is the second element."""

        def __init__(self):
            super().__init__()
            self.inner = Seq()

        def forward(self, x):
            return self.inner(x)

    torch.manual_seed(0)
    a, b = Seq(), Seq()
    data = [torch.randn(5, 4, 9) for _ in range(3)]
    r = smt.compare(a, b, data, layers="relu", layout="channels_first", progress=False)
    ha = torch.cat([a(x).detach() for x in data]).numpy()
    hb = torch.cat([b(x).detach() for x in data]).numpy()
    assert_same(r, spanmatch.compare({"relu": ha}, {"relu": hb}))
    assert r["relu"].rows == 15 * 9

    # select=: a module whose output is a tuple (zeros, activations) -> take the activations.
    class Tup(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            y = self.inner(x)
            return torch.zeros(1), y

    ta, tb = Tup(a), Tup(b)
    r2 = smt.compare(ta, tb, data, layers="", progress=False, layout="channels_first", select=lambda o: o[1])
    np.testing.assert_allclose(r2.layers[0].thresholds_a, r.layers[0].thresholds_a, atol=1e-12)
    # Default: the first tensor, here a [1] tensor: a clear error (no neuron axis).
    with pytest.raises(ValueError, match="neuron axis"):
        smt.compare(ta, tb, data, layers="", progress=False)
    assert no_hooks(ta, tb)


# ------------------------------------------------------------------------------------------
# Token models: padded batches equal the unpadded tokens alone
# ------------------------------------------------------------------------------------------


class TokenNet(nn.Module):
    def __init__(self, vocab: int = 30, d: int = 16) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        layer = nn.TransformerEncoderLayer(d, 2, dim_feedforward=24, dropout=0.1, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.out = nn.Linear(d, 8)
        self.act = nn.Tanh()

    def forward(self, input_ids, attention_mask=None):
        pad = None if attention_mask is None else attention_mask == 0
        h = self.encoder(self.emb(input_ids), src_key_padding_mask=pad)
        return self.act(self.out(h))


def token_batches(seqs: List[torch.Tensor], batch: int):
    out = []
    for i in range(0, len(seqs), batch):
        chunk = seqs[i : i + batch]
        t = max(len(s) for s in chunk)
        ids = torch.zeros(len(chunk), t, dtype=torch.long)
        mask = torch.zeros(len(chunk), t, dtype=torch.long)
        for k, s in enumerate(chunk):
            ids[k, : len(s)] = s
            mask[k, : len(s)] = 1
        out.append({"input_ids": ids, "attention_mask": mask})
    return out


def random_seqs(n: int, vocab: int, lo: int, hi: int, seed: int = 0) -> List[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(lo, hi + 1, (n,), generator=g)
    return [torch.randint(1, vocab, (int(l),), generator=g) for l in lengths]


def test_transformer_encoder_padding_left_out(backend):
    torch.manual_seed(0)
    a, b = TokenNet(), TokenNet()
    a.train()  # dropout on: compare must switch to eval and back
    b.eval()
    seqs = random_seqs(14, 30, 3, 9)
    padded = token_batches(seqs, 5)
    alone = [{"input_ids": s[None]} for s in seqs]  # no padding, no mask
    layers = ["encoder.layers.0", "encoder.layers.1.linear1", "act"]
    r = smt.compare(a, b, padded, layers=layers, progress=False)
    ref = smt.compare(a, b, alone, layers=layers, progress=False)
    assert a.training and not b.training
    tokens = sum(len(s) for s in seqs)
    assert [l.rows for l in r.layers] == [tokens] * 3
    assert_same(r, ref, tol=1e-5, measures=False)
    for l1, l2 in zip(r.layers, ref.layers):
        assert abs(l1.cka - l2.cka) < 1e-6
    # Without the mask the padding tokens count: more rows, another result.
    nomask = [{"input_ids": p["input_ids"]} for p in padded]
    r3 = smt.compare(a, b, nomask, layers=layers, progress=False)
    assert r3.layers[0].rows == sum(p["input_ids"].numel() for p in padded) > tokens


def _tiny_bert():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(
        vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=20, max_position_embeddings=32,
    )
    return transformers.BertModel(cfg)


def _tiny_gpt2():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.GPT2Config(
        vocab_size=40, n_embd=16, n_layer=2, n_head=2, n_positions=32, bos_token_id=0, eos_token_id=0
    )
    return transformers.GPT2Model(cfg)


@pytest.mark.parametrize("make", [_tiny_bert, _tiny_gpt2], ids=["bert", "gpt2"])
def test_transformers_padding_left_out(make):
    torch.manual_seed(0)
    a = make()
    torch.manual_seed(1)
    b = make()
    seqs = random_seqs(10, 40, 2, 8, seed=3)
    padded = token_batches(seqs, 4)
    alone = [{"input_ids": s[None]} for s in seqs]
    # Default layers: the GELU modules of the MLPs (and BERT's pooler Tanh, one row per input);
    # then whole blocks (tuple outputs).
    r = smt.compare(a, b, padded, progress=False)
    bert = "Bert" in type(a).__name__
    assert r.names[:2] == (
        [f"encoder.layer.{i}.intermediate.intermediate_act_fn" for i in range(2)] if bert else ["h.0.mlp.act", "h.1.mlp.act"]
    )
    assert r.names[2:] == (["pooler.activation"] if bert else [])
    tokens = sum(len(s) for s in seqs)
    assert [l.rows for l in r.layers] == [tokens, tokens] + ([len(seqs)] if bert else [])
    ref = smt.compare(a, b, alone, progress=False)
    assert_same(r, ref, tol=1e-5, measures=False)
    blocks = "encoder.layer.?" if bert else "h.?"
    r2 = smt.compare(a, b, padded, layers=blocks, progress=False)
    ref2 = smt.compare(a, b, alone, layers=blocks, progress=False)
    assert len(r2.layers) == 2
    assert r2.layers[0].rows == sum(len(s) for s in seqs)
    assert_same(r2, ref2, tol=1e-5, measures=False)


# ------------------------------------------------------------------------------------------
# Hooks and modes are restored
# ------------------------------------------------------------------------------------------


def test_modes_restored_and_hooks_removed_after_success_and_error():
    a, b = seeded(SmallCNN, 0), seeded(SmallCNN, 1)
    a.train()
    a.features[3].eval()  # a mixed state must come back as it was
    b.eval()
    before = [m.training for m in a.modules()] + [m.training for m in b.modules()]
    bn_mean = b.features[3].running_mean.clone()
    smt.compare(a, b, loader(n=20, batch=10), progress=False)
    assert [m.training for m in a.modules()] + [m.training for m in b.modules()] == before
    assert no_hooks(a, b)
    # eval() was in force: BN running statistics untouched.
    assert torch.equal(b.features[3].running_mean, bn_mean)
    assert torch.equal(a.features[3].running_mean, seeded(SmallCNN, 0).features[3].running_mean)

    def failing():
        yield torch.randn(4, 3, 8, 8)
        yield torch.randn(4, 3, 8, 8)
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        smt.compare(a, b, failing(), progress=False)
    assert [m.training for m in a.modules()] + [m.training for m in b.modules()] == before
    assert no_hooks(a, b)

    # An error raised inside the forward pass of model b, second batch.
    class Boom(nn.Module):
        def __init__(self):
            super().__init__()
            self.n = 0

        def forward(self, x):
            self.n += 1
            if self.n == 2:
                raise RuntimeError("boom")
            return x

    bb = seeded(SmallCNN, 1)
    bb.fc = nn.Sequential(bb.fc, Boom())
    bb.train()
    with pytest.raises(RuntimeError, match="boom"):
        smt.compare(a, bb, loader(n=30, batch=10), layers=["features.1", "act"], progress=False)
    assert bb.training and all(m.training for m in bb.modules())
    assert no_hooks(a, bb)


# ------------------------------------------------------------------------------------------
# Layer x layer
# ------------------------------------------------------------------------------------------


def test_cross_diagonal_equals_per_layer_and_self_is_one():
    a, b = seeded(SmallCNN, 0), seeded(SmallCNN, 1)
    data = loader(n=40, batch=16)
    layers = ["features.1", "features.4", "fc", "act", "head"]
    r = smt.compare(a, b, data, layers=layers, cross=True, progress=False)
    plain = smt.compare(a, b, data, layers=layers, progress=False)
    assert_same(r, plain, tol=1e-9)
    c = r.cross
    assert c.layers_a == layers and c.layers_b == layers
    assert c.mms.shape == (len(EPS), 5, 5) and c.cka.shape == (5, 5)
    for i, l in enumerate(plain.layers):
        np.testing.assert_allclose(c.mms[:, i, i], l.mms, atol=0)
        assert math.isclose(c.cka[i, i], l.cka, rel_tol=1e-9)
        # Debiased CKA on 40 rows is ill-conditioned: summation order alone (torch products
        # per batch here, the engine's row blocks there) moves `head` by ~1e-9 relative (exact
        # rational value 0.0562502039077; float64 runs 0.0562502038 to 0.0562502040).
        assert math.isclose(c.cka_debiased[i, i], l.measures["cka_linear_debiased"], rel_tol=1e-8)
    # Conv layers of different spatial sizes are not comparable; fully connected ones all are.
    comparable = c.comparable
    assert comparable[0, 0] and not comparable[0, 1] and not comparable[1, 2]
    assert comparable[2:, 2:].all()
    assert np.isnan(c.mms[:, 0, 1]).all() and np.isnan(c.cka[0, 2])
    # An off-diagonal entry equals the pair compared directly.
    direct = smt.compare(a, b, data, layers={"fc": "act"}, progress=False)
    np.testing.assert_allclose(c.mms[:, 2, 3], direct.layers[0].mms, atol=0)
    assert math.isclose(c.cka[2, 3], direct.layers[0].cka, rel_tol=1e-9)
    d = r.to_dict()["cross"]
    assert d["layers_a"] == layers and d["mms"][0][0][1] is None

    # A model against itself (the same object twice): mms = 1 and CKA = 1 on the diagonal.
    s = smt.compare(a, a, data, layers=layers, cross=True, progress=False)
    np.testing.assert_allclose(np.diagonal(s.cross.mms, axis1=1, axis2=2), 1.0)
    np.testing.assert_allclose(np.diagonal(s.cross.cka), 1.0, rtol=1e-9)
    assert all(np.all(l.mms == 1.0) for l in s.layers)
    assert no_hooks(a, b)


def test_cross_two_architectures_default_layers():
    # Different architectures on the same inputs: a CNN and a narrower one with another activation.
    a = seeded(SmallCNN, 0)
    c = seeded(SmallCNN, 3, width=4)
    c.features[1] = nn.SiLU()
    data = loader(n=20, batch=10)
    r = smt.compare(a, c, data, cross=True, progress=False, labels=("wide", "narrow"))
    assert r.cross.layers_a == ["features.1", "features.4", "act"]
    assert r.cross.layers_b == ["features.1", "features.4", "act"]
    assert r.cross.label_a == "wide"
    assert r.names == ["features.1", "features.4", "act"]  # same names: the pairs
    assert r.cross.rows[0, 0] == 20 * 64 and r.cross.rows[0, 1] == 0


# ------------------------------------------------------------------------------------------
# Bad input: clear errors, nothing left hooked
# ------------------------------------------------------------------------------------------


def test_unknown_layer_lists_closest_names():
    a, b = seeded(SmallCNN, 0), seeded(SmallCNN, 1)
    with pytest.raises(ValueError, match=r"'features\.11' is not a module of model a; closest names: features\.1"):
        smt.compare(a, b, loader(), layers=["features.11"], progress=False)
    with pytest.raises(ValueError, match=r"'fc2' is not a module of model b; closest names: fc"):
        smt.compare(a, b, loader(), layers={"fc": "fc2"}, progress=False)
    with pytest.raises(ValueError, match=r"'clasifier\.\*' matches no module of model a"):
        smt.compare(a, b, loader(), layers="clasifier.*", progress=False)
    with pytest.raises(ValueError, match="no activation module"):
        smt.compare(nn.Linear(3, 3), nn.Linear(3, 3), [torch.randn(2, 3)], progress=False)
    assert no_hooks(a, b)


def test_rows_differ_between_models(backend):
    a, b = seeded(SmallCNN, 0), seeded(SmallCNN, 1)
    with pytest.raises(ValueError, match=r"rows differ.*'features\.1' of model a: 640 rows.*'features\.4' of model b: 160 rows"):
        smt.compare(a, b, loader(n=20, batch=10), layers={"features.1": "features.4"}, progress=False)
    assert no_hooks(a, b)
    with pytest.raises(ValueError, match="rows differ"):
        smt.compare(a, b, loader(n=20, batch=10), layers={"features.1": "features.4"}, cross=True, progress=False)
    assert no_hooks(a, b)


def test_output_without_tensor():
    class NoTensor(nn.Module):
        def forward(self, x):
            return {"n": int(x.shape[0]), "msg": "hello"}

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 4)
            self.odd = NoTensor()

        def forward(self, x):
            self.odd(x)
            return self.lin(x)

    a, b = Net(), Net()
    with pytest.raises(TypeError, match=r"module 'odd' \(NoTensor\) of model a returned dict with no tensor in it"):
        smt.compare(a, b, [torch.randn(4, 3)], layers=["odd", "lin"], progress=False)
    assert no_hooks(a, b)
    with pytest.raises(TypeError, match="select= returned"):
        smt.compare(a, b, [torch.randn(4, 3)], layers=["odd"], select=lambda o: o["n"], progress=False)
    assert no_hooks(a, b)


def test_empty_data():
    a, b = seeded(SmallCNN, 0), seeded(SmallCNN, 1)
    empty = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.zeros(0, 3, 8, 8)), batch_size=4)
    with pytest.raises(ValueError, match="no batches"):
        smt.compare(a, b, empty, progress=False)
    with pytest.raises(ValueError, match="no batches"):
        smt.compare(a, b, [], progress=False)
    with pytest.raises(TypeError, match="iterable of batches"):
        smt.compare(a, b, torch.randn(4, 3, 8, 8), progress=False)
    assert no_hooks(a, b)


def test_bad_arguments():
    a, b = seeded(SmallCNN, 0), seeded(SmallCNN, 1)
    with pytest.raises(ValueError, match="layout"):
        smt.compare(a, b, loader(), layout="nhwc", progress=False)
    with pytest.raises(ValueError, match="eps"):
        smt.compare(a, b, loader(), eps=(0.2, 1.5), progress=False)
    with pytest.raises(ValueError, match="precision"):
        smt.compare(a, b, loader(), precision="half", progress=False)
    assert no_hooks(a, b)


def test_progress_bar_runs(capsys):
    a, b = seeded(SmallCNN, 0), seeded(SmallCNN, 1)
    r = smt.compare(a, b, loader(n=20, batch=10), progress=True)
    err = capsys.readouterr().err
    assert "spanmatch" in err and "2/2" in err and "inputs=20" in err
    assert len(r.layers) == 3
