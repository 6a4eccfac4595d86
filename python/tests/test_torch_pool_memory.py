"""spanmatch.torch: pool= (every layer pair comparable, on one row per input), and memory: the
estimate's formulas, max_memory errors, cross=True in groups and passes within the budget."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("tqdm")
from torch import nn  # noqa: E402

import spanmatch  # noqa: E402
import spanmatch.torch as smt  # noqa: E402
from spanmatch import flat_length  # noqa: E402

from test_torch import SmallCNN, by_hand, loader, no_hooks, random_seqs, seeded, token_batches  # noqa: E402

EPS = (0.15, 0.2, 0.25, 0.3, 0.5)
LAYERS = ["features.1", "features.4", "act"]  # 8x8 positions, 4x4 positions, one row per input


# ------------------------------------------------------------------------------------------
# pool=
# ------------------------------------------------------------------------------------------


def test_cross_without_pool_warns_naming_the_pairs_left_out():
    a, b = seeded(SmallCNN, 0), seeded(SmallCNN, 1)
    with pytest.warns(UserWarning, match=r"cross: 6 of 9 layer pairs have different rows and are left out \(features\.1 / features\.4, features\.1 / act, .*pool='mean'"):
        r = smt.compare(a, b, loader(n=20, batch=10), layers=LAYERS, cross=True, progress=False)
    assert r.cross.view.tolist() == [["full", None, None], [None, "full", None], [None, None, "full"]]
    assert r.cross.comparable.sum() == 3
    assert any("left out" in w for w in r.warnings)


@pytest.mark.parametrize("how", ["mean", "max"])
def test_cross_pool_compares_every_pair_on_one_row_per_input(how):
    a, b = seeded(SmallCNN, 0), seeded(SmallCNN, 1)
    data = loader(n=40, batch=16)
    with _no_warning():
        r = smt.compare(a, b, data, layers=LAYERS, cross=True, pool=how, progress=False)
    c = r.cross
    assert c.comparable.all()
    # Every entry pooled (one consistent matrix); the dense layer is its own pooled view.
    assert c.view.tolist() == [[how, how, how], [how, how, how], [how, how, "full"]]
    assert c.to_dict()["view"][0][1] == how
    ha, hb = by_hand(a, data, LAYERS), by_hand(b, data, LAYERS)

    def pooled(x):
        if x.ndim == 2:
            return x
        return x.astype(np.float64).mean(axis=(2, 3)) if how == "mean" else x.max(axis=(2, 3))

    for i, la in enumerate(LAYERS):
        for j, lb in enumerate(LAYERS):
            ref = spanmatch.compare(pooled(ha[la]), pooled(hb[lb]), eps=EPS).layers[0]
            np.testing.assert_array_equal(c.mms[:, i, j], ref.mms, err_msg=f"{la} / {lb}")
            assert math.isclose(c.cka[i, j], ref.cka, rel_tol=1e-9), (la, lb)
            assert c.rows[i, j] == 40
    # The per-layer pairs (same names, same rows) keep every row.
    assert r.names == LAYERS and "pool" not in r["features.1"].record
    full = spanmatch.compare(ha["features.1"], hb["features.1"], eps=EPS).layers[0]
    np.testing.assert_array_equal(r["features.1"].mms, full.mms)
    assert r["features.1"].rows == 40 * 64
    np.testing.assert_array_equal(r["act"].mms, c.mms[:, 2, 2])


class _no_warning:
    def __enter__(self):
        import warnings

        self._cm = warnings.catch_warnings()
        self._cm.__enter__()
        warnings.simplefilter("error")

    def __exit__(self, *exc):
        self._cm.__exit__(*exc)


def test_pair_with_different_rows_pooled_and_recorded():
    a, b = seeded(SmallCNN, 0), seeded(SmallCNN, 1)
    data = loader(n=30, batch=8)
    with pytest.raises(ValueError, match="rows differ.*pass pool='mean'"):
        smt.compare(a, b, data, layers={"features.1": "act"}, progress=False)
    r = smt.compare(a, b, data, layers={"features.1": "act", "act": "act"}, pool="mean", progress=False)
    assert r["features.1"].record["pool"] == "mean" and "pool" not in r["act"].record
    assert r["features.1"].record["shape_a"] == [30, 8]
    ha = by_hand(a, data, ["features.1"])["features.1"].astype(np.float64).mean(axis=(2, 3))
    hb = by_hand(b, data, ["act"])["act"]
    ref = spanmatch.compare(ha, hb, eps=EPS).layers[0]
    np.testing.assert_array_equal(r["features.1"].mms, ref.mms)
    np.testing.assert_allclose(r["features.1"].thresholds_a, ref.thresholds_a, atol=1e-10)
    assert no_hooks(a, b)


def test_tokens_pooled_over_unmasked_tokens():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(
        vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=20, max_position_embeddings=32,
    )
    torch.manual_seed(0)
    a = transformers.BertModel(cfg)
    torch.manual_seed(1)
    b = transformers.BertModel(cfg)
    seqs = random_seqs(60, 40, 2, 9, seed=4)
    batches = token_batches(seqs, 16)
    tok, seq = "encoder.layer.1.intermediate.intermediate_act_fn", "pooler.activation"
    r = smt.compare(a, b, batches, layers={tok: seq}, pool="mean", progress=False)
    got = []
    h = a.get_submodule(tok).register_forward_hook(lambda m, i, o: got.append(o.detach().clone()))
    g2 = []
    h2 = b.get_submodule(seq).register_forward_hook(lambda m, i, o: g2.append(o.detach().clone()))
    a.eval()
    b.eval()
    with torch.no_grad():
        for bt in batches:
            a(**bt)
            b(**bt)
    h.remove()
    h2.remove()
    xa = torch.cat([(o * bt["attention_mask"][:, :, None]).sum(1) / bt["attention_mask"].sum(1, keepdim=True) for o, bt in zip(got, batches)])
    ref = spanmatch.compare(xa.double().numpy(), torch.cat(g2).double().numpy(), eps=EPS).layers[0]
    l = r.layers[0]
    assert l.rows == 60 and l.record["pool"] == "mean"
    assert l.max_epsilon > 0.1  # not a trivial match
    np.testing.assert_allclose(l.thresholds_a, ref.thresholds_a, atol=1e-6)
    assert math.isclose(l.cka, ref.cka, rel_tol=1e-6)


# ------------------------------------------------------------------------------------------
# Memory
# ------------------------------------------------------------------------------------------


def _gpt2_like(layers: int, d: int, mlp: int):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.GPT2Config(
        vocab_size=50, n_embd=d, n_layer=layers, n_head=2, n_inner=mlp, n_positions=16, bos_token_id=0, eos_token_id=0
    )
    return transformers.GPT2Model(cfg)


def test_memory_estimate_of_a_gpt2_shaped_pair():
    """GPT-2-shaped pair (every MLP activation and every block output), smaller: per layer pair
    (n1 + n2)² × 8 bytes (+ the vectors), the total, and what cross=True needs: per layer its
    n² block, per pair of layers of A and B its n_i × n_j block."""
    L, d, mlp = 3, 16, 64
    torch.manual_seed(0)
    a, b = _gpt2_like(L, d, mlp), _gpt2_like(L, d, mlp)
    batch = {"input_ids": torch.randint(1, 50, (2, 5))}
    layers = ["h.*.mlp.act", "h.?"]
    est = smt.estimate_memory(a, b, batch, layers=layers)
    names = [f"h.{i}" for i in range(L)] + [f"h.{i}.mlp.act" for i in range(L)]
    widths = {n: (mlp if n.endswith("act") else d) for n in names}
    assert sorted(est.pairs) == sorted(names)
    for n in names:
        w = widths[n]
        assert est.pairs[n] == 8 * flat_length(w, w) == 8 * ((2 * w) ** 2 + 3 * 2 * w + 6)
    assert est.per_layer == sum(8 * flat_length(widths[n], widths[n]) for n in names)
    assert est.baseline == 0 and est.chunks == 0 and est.cross == 0 and est.passes == 1
    # On the CPU the engine's accumulator also holds up to 512 rows of a pair in waiting.
    assert est.accumulators == 8 * 512 * sum(2 * w for w in widths.values())
    assert est.total == est.per_layer + est.accumulators
    side = sum(widths.values())
    nl = 2 * len(names)
    blocks = 2 * sum(w * w for w in widths.values()) + side * side
    small = 2 * side + nl * 2 * side + nl * nl + 1  # sums, row-norm moments, NᵀN, rows
    assert est.cross_full == 8 * (blocks + small)
    assert est.cross_joint == 8 * (2 * side) ** 2
    # With the baseline and 5 bootstrap chunks.
    est2 = smt.estimate_memory(a, b, batch, layers=layers, baseline=True, bootstrap=100, chunks=5)
    assert est2.baseline == est.per_layer and est2.chunks == 5 * 2 * est.per_layer
    assert est2.accumulators == 2 * est.accumulators  # the chunk being filled is one of the 1 + 5 sets
    est3 = smt.estimate_memory(a, b, batch, layers=layers, cross=True)
    assert est3.cross == est.cross_full and est3.total == est.per_layer + est.cross_full
    assert est3.accumulators == 0  # the per-layer statistics come from the cross blocks
    assert "cross=True would need" in repr(est3)
    # The GPT-2-small numbers (12 layers, d = 768, MLP 3072), from the same formulas.
    per = 12 * 8 * flat_length(3072, 3072) + 12 * 8 * flat_length(768, 768)
    assert abs(per / 2**30 - 3.59) < 0.01  # GiB of per-layer statistics
    side = 12 * 3072 + 12 * 768
    assert abs(8 * (2 * 12 * (3072**2 + 768**2) + side * side) / 2**30 - 17.6) < 0.05  # cross=True blocks


def test_max_memory_errors_name_what_fits():
    a, b = seeded(SmallCNN, 0), seeded(SmallCNN, 1)
    data = loader(n=160, batch=4)
    snap = [p.detach().clone() for p in a.parameters()]
    with pytest.raises(ValueError, match=r"max_memory=1000 B is too small for a single layer pair: 'features\.4' \(16 \+ 16 neurons\)"):
        smt.compare(a, b, data, max_memory=1000, progress=False)
    need = smt.estimate_memory(a, b, next(iter(data)), bootstrap=10, chunks=40).total
    budget = int(0.7 * need)
    with pytest.raises(ValueError, match=r"bootstrap: 40 chunks need .* at most (\d+) chunks fit") as e:
        smt.compare(a, b, data, bootstrap=10, chunks=40, max_memory=budget, progress=False)
    fit = int(e.value.args[0].split("at most ")[1].split()[0])
    assert 2 <= fit < 40
    r = smt.compare(a, b, data, bootstrap=10, chunks=fit, max_memory=budget, progress=False)
    assert r.layers[0].intervals["chunks"] == fit
    assert r.memory.total <= budget < smt.estimate_memory(a, b, next(iter(data)), bootstrap=10, chunks=fit + 1).total
    with pytest.raises(ValueError, match="bootstrap"):
        smt.compare(a, b, data, bootstrap=10, chunks=fit + 1, max_memory=budget, progress=False)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), snap))
    assert no_hooks(a, b)


def _wide(seed: int, layers: int, width: int) -> nn.Module:
    torch.manual_seed(seed)
    mods = [nn.Linear(16, width), nn.ReLU()]
    for _ in range(layers - 1):
        mods += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*mods)


def test_cross_in_passes_within_max_memory_equals_one_pass():
    a, b = _wide(0, 4, 24), _wide(1, 4, 24)
    g = torch.Generator().manual_seed(0)
    data = [torch.randn(30, 16, generator=g) for _ in range(3)]
    one = smt.compare(a, b, data, cross=True, progress=False)
    assert one.memory.passes == 1
    budget = one.memory.per_layer + 9 * 8 * flat_length(24, 24) * 2 + 40_000
    split = smt.compare(a, b, data, cross=True, max_memory=budget, progress=False)
    assert split.memory.passes > 1
    np.testing.assert_array_equal(split.cross.mms, one.cross.mms)
    np.testing.assert_array_equal(split.cross.cka, one.cross.cka)
    for l1, l2 in zip(one.layers, split.layers):
        np.testing.assert_array_equal(l1.thresholds_a, l2.thresholds_a)
    with pytest.raises(ValueError, match="one-shot iterator"):
        smt.compare(a, b, iter(data), cross=True, max_memory=budget, progress=False)
    assert no_hooks(a, b)


_RSS_SCRIPT = textwrap.dedent(
    """
    import json, resource, sys
    import torch
    from torch import nn
    import spanmatch.torch as smt
    torch.set_num_threads(1)
    L, W, batches, kw = json.loads(sys.argv[1])
    def make(seed, width):
        torch.manual_seed(seed)
        mods = [nn.Linear(16, width), nn.ReLU()]
        for _ in range(L - 1):
            mods += [nn.Linear(width, width), nn.ReLU()]
        return nn.Sequential(*mods)
    g = torch.Generator().manual_seed(0)
    data = [torch.randn(100, 16, generator=g) for _ in range(batches)]
    smt.compare(make(0, 8), make(1, 8), data[:2], progress=False, **kw)  # warm-up: same code, tiny
    a, b = make(0, W), make(1, W)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    r = smt.compare(a, b, data, progress=False, **kw)
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    m = r.memory
    print(json.dumps({"delta": (rss1 - rss0) * 1024, "passes": m.passes, "statistics": m.per_layer,
                      "joint": m.cross_joint, "unbudgeted": m.per_layer + m.cross_full}))
    """
)


def _peak_over_warm_process(layers: int, width: int, batches: int, **kw: object) -> dict:
    """Runs :data:`_RSS_SCRIPT` in a subprocess: ``compare`` of two MLPs of ``layers`` ReLU
    layers of ``width`` neurons with ``kw``; its peak RSS over the warm process, and memory."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    arg = json.dumps([layers, width, batches, kw])
    out = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, arg], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_cross_peak_memory_stays_within_max_memory():
    """12 + 12 layers of 200 neurons: one joint Gram matrix would take 176 MB, the cross
    blocks and per-layer statistics 67 MB; with max_memory = 40 MB the comparison runs in
    several passes and its peak RSS (over the warm process) stays near 40 MB."""
    budget = 40 << 20
    m = _peak_over_warm_process(12, 200, 6, cross=True, max_memory=budget)
    m["budget"] = budget
    assert m["joint"] > 4 * m["budget"] and m["unbudgeted"] > 1.5 * m["budget"]
    assert m["passes"] > 1
    # 10% for one batch of activations and the allocator's slack (measured: 43 MB).
    assert m["delta"] < 1.25 * m["budget"], m


def test_per_layer_peak_memory_holds_the_statistics_about_once():
    """8 + 8 layers of 1024 neurons (statistics 8 x 33.6 MB): the peak over the warm process
    stays under twice the statistics. Each pair's statistics are held once after the pass (the
    engine's accumulator is released when its flat vector is taken, the flat vector when the
    Stats are made) and copied into the engine's form one layer at a time; before, four copies
    of every pair were alive at once (measured: 1.6x the statistics now, 3.4x before; 13.2 GB
    for a GPT-2-small pair whose statistics take 3.9 GB)."""
    m = _peak_over_warm_process(8, 1024, 4, center=False)
    assert m["statistics"] > 8 * 33e6
    assert m["delta"] < 2.0 * m["statistics"], m
