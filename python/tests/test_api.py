"""The numpy front: compare, Accumulator, Stats, Result; checked against planted answers, the
CLI, and invariances."""

from __future__ import annotations

import json
import math
import pickle
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import spanmatch
from conftest import planted


def test_planted_match_finds_exactly_the_shared_neurons() -> None:
    a, b = planted(rows=500, shared=6, private=4)
    r = spanmatch.compare(a, b, eps=(0.0, 0.25, 0.5))
    layer = r["layer"]
    for m in layer.matches:
        # Shared directions: A's neurons 0..5, B's neurons 4..9; private ones never match
        # (independent Gaussian columns in 500 rows have sines close to 1).
        assert m.a.tolist() == list(range(6))
        assert m.b.tolist() == list(range(4, 10))
        assert m.mms == pytest.approx(12 / 20)
    assert np.all(layer.thresholds_a[:6] < 1e-6)
    assert np.all(layer.thresholds_a[6:] > 0.9)
    assert layer.dead_a.size == 0
    assert layer.measures["cka_linear"] > 0.2


def test_three_lines_and_result_api(tmp_path: Path) -> None:
    a, b = planted()
    result = spanmatch.compare(a, b)
    text = repr(result)
    assert "mms@0.25" in text and "layer" in text and "CKA" in text
    d = result.to_dict()
    assert set(d) >= {"schema", "schema_version", "spanmatch_version", "eps", "options", "settings", "comparisons"}
    assert (d["schema"], d["schema_version"], d["front"]) == ("spanmatch-results", 3, "python")
    assert d["options"]["dead"] == "drop" and d["settings"]["layout"] == "nchw"
    assert d["options"]["measures"] == ["cka"]
    rec = records(d)[0]
    assert set(rec) >= {"name", "rows", "dead_a", "dead_b", "thresholds_a", "thresholds_b", "max_epsilon", "matches", "measures"}
    assert set(rec["matches"][0]) == {"eps", "a", "b", "mms"}
    out = tmp_path / "r.json"
    result.to_json(out)
    again = spanmatch.Result.from_json(out)
    assert again.to_dict() == d
    assert again["layer"].matches[2].a.tolist() == result["layer"].matches[2].a.tolist()
    assert result[0] is result["layer"]
    assert list(result.eps) == list(spanmatch.DEFAULT_EPS)
    with pytest.raises(KeyError, match="no layer named 'nope'"):
        result["nope"]


def test_dict_of_layers_in_a_order_and_layer_selection() -> None:
    a1, b1 = planted(seed=1)
    a2, b2 = planted(seed=2, shared=3)
    r = spanmatch.compare({"fc2": a2, "fc1": a1, "only_a": a1}, {"fc1": b1, "fc2": b2})
    assert r.names == ["fc2", "fc1"]
    assert r["fc2"].matches[0].a.tolist() == [0, 1, 2]
    r1 = spanmatch.compare({"fc1": a1, "fc2": a2}, {"fc1": b1, "fc2": b2}, layers=["fc1"])
    assert r1.names == ["fc1"]
    with pytest.raises(ValueError, match="layer 'fc3' is in neither"):
        spanmatch.compare({"fc1": a1}, {"fc1": b1}, layers=["fc3"])
    with pytest.raises(ValueError, match="'only_a' is in a but not in b"):
        spanmatch.compare({"only_a": a1}, {"fc1": b1}, layers=["only_a"])


def _write_npz(path: Path, layers: dict) -> None:
    np.savez(path, **layers)


def test_cli_and_python_give_identical_json(tmp_path: Path, spanmatch_cli: Path) -> None:
    rng = np.random.default_rng(5)
    a1, b1 = planted(rows=300, noise=0.05, seed=3)
    conv_a = np.maximum(rng.standard_normal((20, 8, 5, 5)), 0).astype(np.float32)
    conv_b = np.maximum(conv_a[:, ::-1] + 0.1 * rng.standard_normal((20, 8, 5, 5)), 0).astype(np.float32)
    conv_a[:, 3] = 0  # a dead channel
    fa, fb = tmp_path / "a.npz", tmp_path / "b.npz"
    _write_npz(fa, {"conv": conv_a, "fc": a1})
    _write_npz(fb, {"conv": conv_b, "fc": b1})
    out = tmp_path / "cli.json"
    subprocess.run(
        [str(spanmatch_cli), "compare", str(fa), str(fb), "--json", str(out), "--measures", "cka,cca,procrustes"],
        check=True,
        capture_output=True,
    )
    cli = json.loads(out.read_text())
    measures = ("cka", "cca", "procrustes")
    from_files = spanmatch.compare(fa, fb, measures=measures).to_dict()
    from_arrays = spanmatch.compare({"conv": conv_a, "fc": a1}, {"conv": conv_b, "fc": b1}, measures=measures).to_dict()
    for py in (from_files, from_arrays):
        _assert_same_report(cli, py)


def records(d: dict) -> list:
    """The layer records of the primary comparison of a results dict (schema version 3)."""
    return next(c for c in d["comparisons"] if c["kind"] == "pair")["layers"]


def _assert_same_report(x: dict, y: dict) -> None:
    assert [l["name"] for l in records(x)] == [l["name"] for l in records(y)]
    assert x["eps"] == y["eps"]
    for lx, ly in zip(records(x), records(y)):
        for key in ("neurons_a", "neurons_b", "rows", "dead_a", "dead_b"):
            assert lx[key] == ly[key], key
        for mx, my in zip(lx["matches"], ly["matches"]):
            assert mx["a"] == my["a"] and mx["b"] == my["b"]
            assert mx["mms"] == pytest.approx(my["mms"], abs=1e-12)
        for key in ("thresholds_a", "thresholds_b"):
            for tx, ty in zip(lx[key], ly[key]):
                assert (tx is None) == (ty is None)
                if tx is not None:
                    assert tx == pytest.approx(ty, abs=1e-12)
        assert lx["max_epsilon"] == pytest.approx(ly["max_epsilon"], abs=1e-12)
        for k, v in lx["measures"].items():
            if isinstance(v, float):
                assert v == pytest.approx(ly["measures"][k], abs=1e-12), k


def _stats_close(s: spanmatch.Stats, t: spanmatch.Stats, rel: float = 1e-12) -> None:
    assert (s.n1, s.n2, s.rows) == (t.n1, t.n2, t.rows)
    scale = np.abs(s.gram).max()
    assert np.abs(s.gram - t.gram).max() <= rel * scale
    assert np.abs(s.sums - t.sums).max() <= rel * max(np.abs(s.sums).max(), 1.0)


@settings(max_examples=25, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=257), max_size=6))
def test_updates_in_pieces_equal_one_update(cuts: list) -> None:
    a, b = planted(rows=257, noise=0.1, seed=7)
    whole = spanmatch.Accumulator().update(a, b).finish()
    acc = spanmatch.Accumulator()
    edges = sorted(set([0, 257] + cuts))
    for lo, hi in zip(edges, edges[1:]):
        acc.update(a[lo:hi], b[lo:hi])
    _stats_close(acc.finish(), whole)
    assert acc.rows == 257


def test_merge_of_halves_and_pickle_round_trip() -> None:
    a, b = planted(rows=300, noise=0.1, seed=8)
    whole = spanmatch.Accumulator().update(a, b)
    h1 = spanmatch.Accumulator().update(a[:120], b[:120])
    h2 = spanmatch.Accumulator().update(a[120:], b[120:])
    merged = pickle.loads(pickle.dumps(h1)).merge(pickle.loads(pickle.dumps(h2)))
    _stats_close(merged.finish(), whole.finish())
    assert pickle.loads(pickle.dumps(whole)) == whole
    assert pickle.loads(pickle.dumps(whole.finish())) == whole.finish()
    empty = spanmatch.Accumulator("nhwc")
    back = pickle.loads(pickle.dumps(empty))
    assert back == empty and back.layout == "nhwc" and back.rows == 0
    # The analysis of a merged accumulator equals the one-pass analysis.
    assert merged.finish().max_match(0.3).a.tolist() == whole.finish().max_match(0.3).a.tolist()


def test_stats_from_parts_equals_accumulation() -> None:
    a, b = planted(rows=200, noise=0.05, seed=9)
    m = np.concatenate([a, b], axis=1)
    ra = (a**2).sum(1)
    rb = (b**2).sum(1)
    parts = spanmatch.Stats.from_parts(
        a.shape[1], b.shape[1], len(m), m.T @ m, m.sum(0), ra @ m, rb @ m, ra @ ra, ra @ rb, rb @ rb
    )
    acc = spanmatch.Accumulator().update(a, b).finish()
    _stats_close(parts, acc, rel=1e-12)
    ma, mb = parts.measures(("cka",)), acc.measures(("cka",))
    assert ma["cka_linear_debiased"] == pytest.approx(mb["cka_linear_debiased"], abs=1e-12)
    assert parts.profile().thresholds_a == pytest.approx(acc.profile().thresholds_a, abs=1e-10)


def _to_f64_reference(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float64)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "bfloat16"])
@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_dtypes_orders_layouts_agree_with_float64(dtype: str, order: str, layout: str) -> None:
    rng = np.random.default_rng(11)
    xa = np.maximum(rng.standard_normal((6, 5, 3, 4)), 0)
    xb = np.maximum(rng.standard_normal((6, 7, 3, 4)) + xa.mean(1, keepdims=True), 0)
    if dtype == "bfloat16":
        torch = pytest.importorskip("torch")
        ta = torch.from_numpy(xa).to(torch.bfloat16)
        tb = torch.from_numpy(xb).to(torch.bfloat16)
        ra, rb = ta.to(torch.float64).numpy(), tb.to(torch.float64).numpy()
        if layout == "nhwc":
            ta, tb = ta.permute(0, 2, 3, 1), tb.permute(0, 2, 3, 1)
        if order == "F":
            ta = torch.from_numpy(np.asfortranarray(ta.view(torch.int16).numpy())).view(torch.bfloat16)
            tb = torch.from_numpy(np.asfortranarray(tb.view(torch.int16).numpy())).view(torch.bfloat16)
        ia, ib = ta, tb
    else:
        ra, rb = xa.astype(dtype).astype(np.float64), xb.astype(dtype).astype(np.float64)
        ia, ib = xa.astype(dtype), xb.astype(dtype)
        if layout == "nhwc":
            ia, ib = ia.transpose(0, 2, 3, 1), ib.transpose(0, 2, 3, 1)
        ia, ib = np.asarray(ia, order=order), np.asarray(ib, order=order)
    ref = spanmatch.Accumulator("nchw").update(_to_f64_reference(ra), _to_f64_reference(rb)).finish()
    got = spanmatch.Accumulator(layout).update(ia, ib).finish()
    _stats_close(got, ref, rel=1e-13)
    assert got.rows == 6 * 3 * 4


def test_torch_cpu_tensors_are_read_without_copies() -> None:
    pytest.importorskip("torch")
    # A subprocess, so that the peak memory measured is this test's alone.
    code = r"""
import resource, torch, spanmatch
a = torch.randn(400_000, 128)           # 205 MB of float32
b = torch.randn(400_000, 128)
peak0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
acc = spanmatch.Accumulator()
acc.update(a, b)
acc.update(a[::2], b[::2])              # a strided view: still no copy
peak1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((peak1 - peak0) / 1024)
"""
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    grown_mb = float(out.stdout.strip().splitlines()[-1])
    # A float64 copy of one side would add 410 MB; the streamed blocks need about 8 MB.
    assert grown_mb < 60, f"peak memory grew by {grown_mb:.0f} MB"


def test_gil_is_released_while_accumulating() -> None:
    a, b = planted(rows=400_000, shared=60, private=40, seed=2)
    a, b = a.astype(np.float32), b.astype(np.float32)
    ticks = []
    stop = threading.Event()

    def ticker() -> None:
        while not stop.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.001)

    t = threading.Thread(target=ticker)
    acc = spanmatch.Accumulator()
    t.start()
    time.sleep(0.01)
    start = time.perf_counter()
    acc.update(a, b)
    end = time.perf_counter()
    stop.set()
    t.join()
    during = [x for x in ticks if start < x < end]
    assert end - start > 0.05
    # With the GIL held the ticker could not run at all during the update.
    assert len(during) >= 5, f"{len(during)} ticks during a {end - start:.3f} s update"


def test_two_threads_update_two_accumulators() -> None:
    pairs = [planted(rows=5000, noise=0.1, seed=s) for s in (1, 2)]
    accs = [spanmatch.Accumulator(), spanmatch.Accumulator()]
    threads = [threading.Thread(target=acc.update, args=p) for acc, p in zip(accs, pairs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for acc, (a, b) in zip(accs, pairs):
        _stats_close(acc.finish(), spanmatch.Accumulator().update(a, b).finish())


def test_stats_methods() -> None:
    a, b = planted(rows=300, shared=4, private=3, seed=4)
    s = spanmatch.Accumulator().update(a, b).finish()
    p = s.profile()
    assert p.max_epsilon > 0.9 and len(p.thresholds_a) == 7
    assert p.mms(0.25) == pytest.approx(8 / 14)
    m = s.max_match(0.25)
    assert m.a.tolist() == [0, 1, 2, 3] and m.b.tolist() == [3, 4, 5, 6]
    simple = s.simple_matches(0.0)
    assert sorted(x.size for x in simple) == [8] or all(x.size >= 2 for x in simple)
    for x in simple:
        assert set(x.a.tolist()) <= {0, 1, 2, 3} and set(x.b.tolist()) <= {3, 4, 5, 6}
    meas = s.measures(("cka", "cca", "procrustes"))
    assert 0 < meas["cka_linear"] <= 1 and "cca_mean_rho" in meas and "procrustes" in meas
    r = s.result(eps=(0.1, 0.2), name="fc", simple=0.0)
    assert r.names == ["fc"] and r["fc"].simple is not None and len(r["fc"].matches) == 2


def test_simple_matches_planted_one_to_one() -> None:
    rng = np.random.default_rng(3)
    a = rng.standard_normal((200, 5))
    perm = [3, 0, 4, 1, 2]
    b = a[:, perm] * np.array([2.0, -1.0, 0.5, 3.0, 1.0])
    s = spanmatch.Accumulator().update(a, b).finish()
    pairs = sorted((int(m.a[0]), int(m.b[0])) for m in s.simple_matches(0.0))
    assert pairs == sorted((perm[j], j) for j in range(5))


# ---- bad input: the right exception with the CLI's message ----


def test_nan_position_is_reported() -> None:
    a = np.ones((4, 3, 2, 2), np.float32)
    b = np.ones((4, 2, 2, 2), np.float32)
    a[2, 1, 1, 0] = np.nan
    with pytest.raises(ValueError, match=r"a: non-finite value NaN at input 2, position \[1, 0\], channel 1"):
        spanmatch.Accumulator().update(a, b)
    b2 = np.ones((4, 2), np.float32)
    b2[3, 1] = np.inf
    with pytest.raises(ValueError, match=r"layer 'x': b: non-finite value inf at input 3, channel 1"):
        spanmatch.compare({"x": np.ones((4, 3))}, {"x": b2})


def test_bad_shapes_and_arguments() -> None:
    a, b = planted(rows=50)
    with pytest.raises(ValueError, match="a has 50 rows .* but b has 49 rows"):
        spanmatch.compare(a, b[:49])
    with pytest.raises(ValueError, match="rank 1"):
        spanmatch.compare(a[:, 0], b)
    with pytest.raises(ValueError, match=r"ε = 1.5 is outside \[0, 1\]"):
        spanmatch.compare(a, b, eps=(0.2, 1.5))
    with pytest.raises(ValueError, match=r"ε = -0.1 is outside"):
        spanmatch.Accumulator().update(a, b).finish().max_match(-0.1)
    with pytest.raises(ValueError, match="unknown measure 'foo'"):
        spanmatch.compare(a, b, measures=("cka", "foo"))
    with pytest.raises(ValueError, match="layout: 'nwhc' is not a layout"):
        spanmatch.Accumulator("nwhc")
    with pytest.raises(ValueError, match="dead: 'keep' is not a policy"):
        spanmatch.compare(a, b, dead="keep")
    with pytest.raises(ValueError, match="tol"):
        spanmatch.compare(a, b, tol=0.5)
    with pytest.raises(TypeError, match="unsupported element type"):
        spanmatch.compare(a.astype(np.int32), b)
    with pytest.raises(TypeError, match="expected an array"):
        spanmatch.compare(object(), b)
    acc = spanmatch.Accumulator().update(a, b)
    with pytest.raises(ValueError, match="holds 10 \\+ 10 neurons, but the batch has 10 \\+ 9"):
        acc.update(a, b[:, :9])
    with pytest.raises(ValueError, match="no rows were accumulated"):
        spanmatch.Accumulator().finish()
    with pytest.raises(ValueError, match="no rows were accumulated"):
        spanmatch.compare(a[:0], b[:0])


def test_missing_and_corrupt_files(tmp_path: Path) -> None:
    a, b = planted(rows=20)
    np.save(tmp_path / "a.npy", a)
    with pytest.raises(FileNotFoundError, match="nope.npy: file not found"):
        spanmatch.compare(tmp_path / "a.npy", tmp_path / "nope.npy")
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(ValueError, match="bad.npy"):
        spanmatch.compare(tmp_path / "a.npy", tmp_path / "bad.npy")
    np.save(tmp_path / "i.npy", np.ones((20, 3), np.int64))
    with pytest.raises(TypeError, match="i.npy"):
        spanmatch.compare(tmp_path / "a.npy", tmp_path / "i.npy")
    with pytest.raises(TypeError, match="not a mix"):
        spanmatch.compare(tmp_path / "a.npy", b)


def test_rust_panic_surfaces_as_an_exception() -> None:
    from spanmatch import _native

    with pytest.raises(BaseException, match="deliberate panic"):
        _native._test_panic()
    # The interpreter is still alive and the module usable.
    assert spanmatch.compare(*planted(rows=30))["layer"].rows == 30


def test_safetensors_and_npy_files(tmp_path: Path) -> None:
    a, b = planted(rows=64, noise=0.05)
    np.save(tmp_path / "fc_a.npy", a.astype(np.float32))
    np.save(tmp_path / "fc_b.npy", b.astype(np.float32))
    r_npy = spanmatch.compare(tmp_path / "fc_a.npy", tmp_path / "fc_b.npy")
    assert r_npy.names == ["fc_a"]

    def write_st(path: Path, name: str, x: np.ndarray) -> None:
        data = np.ascontiguousarray(x, dtype="<f4").tobytes()
        header = json.dumps({name: {"dtype": "F32", "shape": list(x.shape), "data_offsets": [0, len(data)]}}).encode()
        header += b" " * (-len(header) % 8)
        path.write_bytes(len(header).to_bytes(8, "little") + header + data)

    write_st(tmp_path / "a.safetensors", "fc", a)
    write_st(tmp_path / "b.safetensors", "fc", b)
    r_st = spanmatch.compare(tmp_path / "a.safetensors", tmp_path / "b.safetensors")
    assert r_st.names == ["fc"]
    for x, y in zip(r_npy["fc_a"].matches, r_st["fc"].matches):
        assert x.a.tolist() == y.a.tolist() and x.b.tolist() == y.b.tolist()


def test_version() -> None:
    assert spanmatch.__version__.count(".") == 2
    assert math.isfinite(spanmatch.DEFAULT_EPS[0])


# ---- controls: centred variant and the neuron-basis null ----


def test_center_removes_a_shared_constant_component() -> None:
    rng = np.random.default_rng(1)
    rows = 3000
    # Both layers: a large shared constant plus small independent parts.
    a = 10.0 + 0.1 * rng.standard_normal((rows, 5))
    b = 10.0 + 0.1 * rng.standard_normal((rows, 5))
    r = spanmatch.compare(a, b, eps=(0.15, 0.5), center=True)
    layer = r["layer"]
    assert [m.mms for m in layer.matches] == [1.0, 1.0]
    assert layer.centered is not None and [m.mms for m in layer.centered] == [0.0, 0.0]
    # Centring from the statistics equals centring the data before the pass.
    ac, bc = a - a.mean(0), b - b.mean(0)
    direct = spanmatch.compare(ac, bc, eps=(0.15, 0.5), center=True)["layer"]
    np.testing.assert_allclose(
        _centred_thresholds(r), direct.thresholds_a, atol=1e-9
    )
    assert "centred" in repr(r)


def _centred_thresholds(r: spanmatch.Result) -> np.ndarray:
    rec = records(r.to_dict())[0]["centered"]
    return np.asarray([np.nan if t is None else t for t in rec["thresholds_a"]])


def test_rotation_null_destroys_one_to_one_matches_and_is_seeded() -> None:
    rng = np.random.default_rng(2)
    a = rng.standard_normal((2000, 6))
    b = np.hstack([a[:, [2, 0, 1]] + 0.01 * rng.standard_normal((2000, 3)), rng.standard_normal((2000, 3))])
    r = spanmatch.compare(a, b, eps=(0.25,), null="rotate", null_draws=8, seed=3)
    layer = r["layer"]
    assert layer.mms[0] == pytest.approx(6 / 12)
    null = layer.null[0]
    assert null["observed"] == pytest.approx(6 / 12)
    assert null["max"] < 0.2 and len(null["values"]) == 8
    again = spanmatch.compare(a, b, eps=(0.25,), null="rotate", null_draws=8, seed=3)["layer"].null
    assert again == layer.null
    other = spanmatch.compare(a, b, eps=(0.25,), null="rotate", null_draws=8, seed=4)["layer"].null
    assert other[0]["values"] != null["values"] or null["max"] == 0.0
    # CKA is unchanged by the neuron rotation: the null leaves the measures alone.
    assert "rotation null" in repr(r)
    with pytest.raises(ValueError, match="null: 'shuffle' is not a control"):
        spanmatch.compare(a, b, null="shuffle")
    with pytest.raises(ValueError, match="null_draws must be at least 1"):
        spanmatch.compare(a, b, null="rotate", null_draws=0)


@pytest.mark.parametrize("rows", [50, 20_000])
def test_a_failed_update_leaves_the_accumulator_unchanged(rows: int) -> None:
    a, b = planted(rows=rows, noise=0.1, seed=12)
    acc = spanmatch.Accumulator().update(a[:10], b[:10])
    before = pickle.dumps(acc)
    bad = a.copy()
    bad[-1, 0] = np.nan  # in the last block: earlier blocks were already read
    with pytest.raises(ValueError, match="non-finite"):
        acc.update(bad, b)
    assert pickle.dumps(acc) == before


# ---- bootstrap intervals over chunks of inputs ----


def test_bootstrap_intervals_files_and_arrays_agree(tmp_path: Path, spanmatch_cli: Path) -> None:
    rng = np.random.default_rng(21)
    conv_a = np.maximum(rng.standard_normal((37, 6, 3, 3)), 0).astype(np.float32)
    conv_b = np.maximum(conv_a[:, ::-1] + 0.5 * rng.standard_normal(conv_a.shape), 0).astype(np.float32)
    fa, fb = tmp_path / "a.npz", tmp_path / "b.npz"
    np.savez(fa, conv=conv_a)
    np.savez(fb, conv=conv_b)
    eps = (0.3, 0.6, 0.9)
    arr = spanmatch.compare({"conv": conv_a}, {"conv": conv_b}, eps=eps, bootstrap=50, chunks=7, seed=5)
    fil = spanmatch.compare(fa, fb, eps=eps, bootstrap=50, chunks=7, seed=5)
    out = tmp_path / "cli.json"
    subprocess.run(
        [str(spanmatch_cli), "compare", str(fa), str(fb), "--eps", "0.3,0.6,0.9", "--bootstrap", "50",
         "--chunks", "7", "--seed", "5", "--json", str(out)],
        check=True, capture_output=True,
    )
    cli = records(json.loads(out.read_text()))[0]["intervals"]
    ia, iff = arr["conv"].intervals, fil["conv"].intervals
    assert ia["chunks"] == 7 and ia["resamples"] == 50 and ia["level"] == 0.95
    for x, y, z in zip(ia["mms"], iff["mms"], cli["mms"]):
        assert x["lo"] == pytest.approx(y["lo"], abs=1e-12) and x["hi"] == pytest.approx(y["hi"], abs=1e-12)
        assert z["lo"] == pytest.approx(y["lo"], abs=1e-12) and z["hi"] == pytest.approx(y["hi"], abs=1e-12)
    # The intervals cover the full-data values, and the full-data result is unchanged by chunking.
    plain = spanmatch.compare({"conv": conv_a}, {"conv": conv_b}, eps=eps)["conv"]
    for m, iv in zip(plain.matches, ia["mms"]):
        assert iv["lo"] - 1e-12 <= m.mms <= iv["hi"] + 1e-12
    assert arr["conv"].thresholds_a == pytest.approx(plain.thresholds_a, abs=1e-10)
    cka = plain.measures["cka_linear"]
    assert ia["cka_linear"]["lo"] - 1e-12 <= cka <= ia["cka_linear"]["hi"] + 1e-12
    assert "95% interval" in repr(arr)
    # Same seed, same intervals; one chunk gives a point.
    again = spanmatch.compare({"conv": conv_a}, {"conv": conv_b}, eps=eps, bootstrap=50, chunks=7, seed=5)
    assert again["conv"].intervals == ia
    one = spanmatch.compare({"conv": conv_a}, {"conv": conv_b}, eps=eps, bootstrap=10, chunks=1)["conv"]
    for m, iv in zip(one.matches, one.intervals["mms"]):
        assert iv["lo"] == pytest.approx(m.mms, abs=1e-12) and iv["hi"] == pytest.approx(m.mms, abs=1e-12)


def test_bootstrap_bad_arguments(tmp_path: Path) -> None:
    a, b = planted(rows=30)
    with pytest.raises(ValueError, match="31 chunks for the bootstrap, but only 30 inputs"):
        spanmatch.compare(a, b, bootstrap=10, chunks=31)
    with pytest.raises(ValueError, match="bootstrap must be at least 1"):
        spanmatch.compare(a, b, bootstrap=0)
    with pytest.raises(ValueError, match="chunks must be at least 1"):
        spanmatch.compare(a, b, bootstrap=10, chunks=0)
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    with pytest.raises(ValueError, match="31 chunks for the bootstrap, but the files hold only 30 inputs"):
        spanmatch.compare(tmp_path / "a.npy", tmp_path / "b.npy", bootstrap=10, chunks=31)


def test_flat_statistics_add_up_over_disjoint_inputs() -> None:
    a, b = planted(rows=240, noise=0.1, seed=13)
    parts = [spanmatch.Accumulator().update(a[lo:hi], b[lo:hi]).to_flat() for lo, hi in ((0, 100), (100, 240))]
    assert len(parts[0]) == spanmatch.flat_length(10, 10)
    total = parts[0] + parts[1]  # what Dask's reduction or an all_reduce gives
    summed = spanmatch.Stats.from_flat(total, 10, 10)
    _stats_close(summed, spanmatch.Accumulator().update(a, b).finish())
    one = spanmatch.Accumulator().update(a, b).finish()
    assert spanmatch.Stats.from_flat(one.to_flat()) == one
    with pytest.raises(ValueError, match="no statistics yet"):
        spanmatch.Accumulator().to_flat()
    with pytest.raises(ValueError, match="invalid statistics state"):
        spanmatch.Stats.from_flat(total[:-1], 10, 10)


# ---- row blocks: deferred small updates, float32 block products ----


def _gram_err(s: spanmatch.Stats, t: spanmatch.Stats) -> float:
    """Largest Gram difference, relative to the geometric mean of the two diagonal entries."""
    d = np.sqrt(np.diag(t.gram))
    return float((np.abs(s.gram - t.gram) / np.maximum(np.outer(d, d), 1e-300)).max())


def _sums_err(s: spanmatch.Stats, t: spanmatch.Stats) -> float:
    """Largest column-sum difference, relative to its scale ``sqrt(rows · Σx²)`` (a sum near
    zero, of values of both signs, has no relative accuracy of its own)."""
    scale = np.sqrt(np.diag(t.gram) * t.rows)
    return float((np.abs(s.sums - t.sums) / np.maximum(scale, 1e-300)).max())


@pytest.mark.parametrize("block_rows", [None, 1, 7, 64, 100_000])
def test_deferred_blocks_equal_one_update_per_batch(block_rows) -> None:
    """Rows wait for a whole block before the product; every block size (one row per block,
    blocks inside a batch, batches inside a block) gives the same statistics to 1e-12."""
    a, b = planted(rows=300, noise=0.1, seed=21)
    ref = spanmatch.Accumulator(block_rows=1_000_000)
    for lo in range(0, 300, 30):
        ref.update(a[lo : lo + 30], b[lo : lo + 30])
    acc = spanmatch.Accumulator(block_rows=block_rows)
    edges = [0, 1, 5, 40, 41, 150, 151, 300]
    for lo, hi in zip(edges, edges[1:]):
        acc.update(a[lo:hi], b[lo:hi])
        assert acc.rows == hi
    _stats_close(acc.finish(), ref.finish())
    # finish() added the waiting rows; the accumulator stays usable.
    acc.update(a[:3], b[:3])
    assert acc.rows == 303


@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_default_blocks_with_batches_of_changing_sizes(precision: str) -> None:
    """Default blocks follow the batch size (at least 512 rows): a large batch leaves rows
    waiting that exceed the next, smaller batch's block; nothing is lost or counted twice."""
    a, b = planted(rows=30_000, noise=0.1, seed=24)
    ref = spanmatch.Accumulator().update(a, b).finish()
    acc = spanmatch.Accumulator(precision=precision)
    edges = [0, 400, 500, 1200, 1230, 29_000, 29_100, 29_997, 30_000]
    for lo, hi in zip(edges, edges[1:]):
        acc.update(a[lo:hi], b[lo:hi])
        assert acc.rows == hi
    got = acc.finish()
    if precision == "float64":
        _stats_close(got, ref)
    else:
        assert _gram_err(got, ref) < 1e-5
        assert _sums_err(got, ref) < 1e-5


@pytest.mark.parametrize("precision", ["float64", "float32"])
@pytest.mark.parametrize("first", [3, 60, 64])
def test_a_failed_update_keeps_the_waiting_rows(precision: str, first: int) -> None:
    """A non-finite value in a batch leaves the accumulator, and the rows still waiting for a
    block, as they were: whether the bad batch would have filled no block, one, or several."""
    a, b = planted(rows=400, noise=0.1, seed=22)
    ref = spanmatch.Accumulator(precision=precision, block_rows=64)
    ref.update(a[:first], b[:first]).update(a[first:], b[first:])
    for bad_rows in (10, 64, 300):
        acc = spanmatch.Accumulator(precision=precision, block_rows=64).update(a[:first], b[:first])
        bad = a[first : first + bad_rows].copy()
        bad[-1, 0] = np.inf
        with pytest.raises(ValueError, match="non-finite value inf"):
            acc.update(bad, b[first : first + bad_rows])
        assert acc.rows == first
        acc.update(a[first:], b[first:])
        _stats_close(acc.finish(), ref.finish(), rel=1e-12)


def test_float32_products_are_within_float32_rounding_of_float64() -> None:
    a, b = planted(rows=5000, noise=0.1, seed=23)
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    exact = spanmatch.Accumulator().update(a32, b32).finish()
    acc = spanmatch.Accumulator(precision="float32")
    for lo in range(0, 5000, 700):
        acc.update(a32[lo : lo + 700], b32[lo : lo + 700])
    fast = acc.finish()
    assert acc.precision == "float32" and "precision='float32'" in repr(acc)
    assert fast.rows == exact.rows == 5000
    # Block products of up to a few thousand float32 terms: ~1e-7 typical, 1e-5 bound.
    assert 0 < _gram_err(fast, exact) < 1e-5
    assert _sums_err(fast, exact) < 1e-5
    # The analysis: thresholds within 1e-4, the same matches.
    pe, pf = exact.profile(), fast.profile()
    np.testing.assert_allclose(pf.thresholds_a, pe.thresholds_a, atol=1e-4)
    np.testing.assert_allclose(pf.thresholds_b, pe.thresholds_b, atol=1e-4)
    for eps in (0.15, 0.3):
        assert fast.max_match(eps).a.tolist() == exact.max_match(eps).a.tolist()
    m64 = exact.measures(["cka"])
    m32 = fast.measures(["cka"])
    for k, v in m64.items():
        if isinstance(v, float):
            assert abs(m32[k] - v) < 1e-5, k
    # State carries the precision; bfloat16/float16/float64 inputs go through float32 too.
    back = pickle.loads(pickle.dumps(acc))
    assert back.precision == "float32" and back == acc
    f64in = spanmatch.Accumulator(precision="float32").update(a, b).finish()
    assert _gram_err(f64in, spanmatch.Accumulator().update(a, b).finish()) < 1e-5
    with pytest.raises(ValueError, match="precision"):
        spanmatch.Accumulator(precision="half")
    with pytest.raises(ValueError, match="block_rows"):
        spanmatch.Accumulator(block_rows=0)
    with pytest.raises(ValueError, match="non-finite value NaN at input 2"):
        bad = a32.copy()
        bad[2, 1] = np.nan
        spanmatch.Accumulator(precision="float32").update(bad, b32)
    with pytest.raises(ValueError, match="too large for float32"):
        spanmatch.Accumulator(precision="float32").update(np.full((4, 3), 1e30, np.float64), a[:4])
