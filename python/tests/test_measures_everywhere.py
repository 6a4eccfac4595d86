"""Every measure on every front: the CLI, the numpy front (arrays and files), ``Stats.measures``,
``spanmatch.analyse`` (what the PyTorch front calls) and Dask give the same values and the same
controls (bootstrap intervals, rotation null, untrained baseline) on the same activations; the
neuron-level objects (``match_1to1``, ``soft_match``, ``perm_procrustes``) on a planted permuted
copy; bad measure options and names are clear errors on every front."""

from __future__ import annotations

import json
import math
import re
import subprocess
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pytest

import spanmatch

MEASURE_OPTIONS = dict(shape_alpha=0.3, ridge_alpha=0.1, transport_plan=True)
CONTROLS = dict(null="rotate", null_draws=3, bootstrap=12, chunks=4, seed=2)


def records(d: Dict[str, Any]) -> List[Dict[str, Any]]:
    return next(c for c in d["comparisons"] if c["kind"] == "pair")["layers"]


def close(u: Any, v: Any, what: str, tol: float = 1e-10) -> None:
    """Equal structure; numbers within ``tol`` (relative or absolute); the rest identical."""
    if isinstance(u, dict):
        assert set(u) == set(v), f"{what}: {sorted(u)} vs {sorted(v)}"
        for k in u:
            close(u[k], v[k], f"{what}.{k}", tol)
    elif isinstance(u, list):
        assert len(u) == len(v), what
        for i, (a, b) in enumerate(zip(u, v)):
            close(a, b, f"{what}[{i}]", tol)
    elif isinstance(u, float) or isinstance(v, float):
        assert u is not None and v is not None, what
        assert math.isclose(u, v, rel_tol=tol, abs_tol=tol), f"{what}: {u} vs {v}"
    else:
        assert u == v, f"{what}: {u} vs {v}"


def layers(seed: int, shared: float) -> Dict[str, Dict[str, np.ndarray]]:
    """Two nets: a conv layer [N, C, H, W] (6 channels each) and fully connected layers of
    unequal widths (8 and 5 neurons), with a dead neuron, sharing ``shared`` of their signal."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((48, 6, 3, 3))
    fc = rng.standard_normal((48, 8))
    out: Dict[str, Dict[str, np.ndarray]] = {}
    for side, width in ((0, 8), (1, 5)):
        own = np.random.default_rng(seed * 10 + side)
        conv = shared * z[:, ::-1] + (1 - shared) * own.standard_normal(z.shape)
        lin = shared * fc @ own.standard_normal((8, width)) + (1 - shared) * own.standard_normal((48, width))
        lin = np.maximum(lin, 0)
        lin[:, 1] = 0.0  # a dead neuron on each side
        out[f"side{side}"] = {"conv": np.maximum(conv, 0).astype(np.float32), "fc": lin}
    return out


@pytest.fixture(scope="module")
def acts(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    trained, untrained = layers(3, 0.8), layers(4, 0.2)
    d = tmp_path_factory.mktemp("measures")
    paths = {}
    for name, sides in (("t", trained), ("u", untrained)):
        for k, v in sides.items():
            paths[(name, k)] = d / f"{name}_{k}.npz"
            np.savez(paths[(name, k)], **v)
    return {"trained": trained, "untrained": untrained, "paths": paths, "dir": d}


def test_every_front_gives_the_same_measures_and_controls(acts: Dict[str, Any], spanmatch_cli: Path) -> None:
    t, u, p = acts["trained"], acts["untrained"], acts["paths"]
    out = acts["dir"] / "cli.json"
    run = subprocess.run(
        [
            str(spanmatch_cli), "compare", str(p[("t", "side0")]), str(p[("t", "side1")]),
            "--baseline", str(p[("u", "side0")]), str(p[("u", "side1")]),
            "--measures", "all", "--shape-alpha", "0.3", "--ridge-alpha", "0.1", "--transport-plan",
            "--null", "rotate", "--null-draws", "3", "--bootstrap", "12", "--chunks", "4", "--seed", "2",
            "--json", str(out),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    assert "1:1 in match@0.5" in run.stdout and "rotation null mean/max" in run.stdout, run.stdout
    cli = json.loads(out.read_text())
    kw = dict(measures="all", **MEASURE_OPTIONS, **CONTROLS)
    arrays = spanmatch.compare(t["side0"], t["side1"], baseline=(u["side0"], u["side1"]), **kw)
    files = spanmatch.compare(
        p[("t", "side0")], p[("t", "side1")], baseline=(p[("u", "side0")], p[("u", "side1")]), **kw
    )
    assert cli["options"] == arrays.to_dict()["options"] == files.to_dict()["options"]
    assert cli["options"]["measures"] == list(spanmatch._native.measure_names())
    assert (cli["options"]["shape_alpha"], cli["options"]["ridge_alpha"]) == (0.3, 0.1)
    for py in (arrays, files):
        for x, y in zip(records(cli), records(py.to_dict())):
            for key in ("measures", "intervals", "null", "untrained", "one_to_one_in_match"):
                close(x[key], y[key], f"{x['name']}.{key}")
    # Every number of every measure is there, with its controls.
    fc = records(cli)[1]
    m = fc["measures"]
    for key in ("cka_linear", "cca_r2", "svcca", "pwcca", "procrustes", "one_to_one", "semi_match",
                "soft_match", "perm_procrustes", "predictivity_ab", "predictivity_ba", "shape"):
        assert isinstance(m[key], float), key
        assert set(fc["intervals"][key]) == {"lo", "hi"}, key
        assert key in fc["untrained"]["trained_minus_untrained_measures"], key
    assert m["shape_alpha"] == 0.3 and m["predictivity_alpha"] == 0.1
    assert m["neurons"]["constant_a"] == [1] and m["neurons"]["constant_b"] == [1]
    assert m["neurons"]["soft_plan"], "--transport-plan keeps the plan"
    assert sorted(fc["null"]["measures"]) == [
        "one_to_one", "perm_procrustes", "perm_procrustes_angular", "pwcca", "semi_match", "soft_match",
        "soft_match_correlation",
    ]
    # Stats.measures and spanmatch.analyse (the PyTorch front's analysis) on the same statistics.
    st = spanmatch.Accumulator().update(t["side0"]["fc"], t["side1"]["fc"]).finish()
    direct = st.measures("all", **MEASURE_OPTIONS)
    close({k: v for k, v in m.items()}, direct, "Stats.measures")
    analysed = st.result(measures="all", **MEASURE_OPTIONS).to_dict()
    close(records(analysed)[0]["measures"], m, "analyse")


def test_dask_front_gives_the_same_measures(acts: Dict[str, Any]) -> None:
    da = pytest.importorskip("dask.array")
    import spanmatch.dask

    t = acts["trained"]
    a, b = t["side0"]["fc"], t["side1"]["fc"]
    kw = dict(measures=["one_to_one", "soft_match", "shape", "cka"], null="rotate", null_draws=2, **MEASURE_OPTIONS)
    d = spanmatch.dask.compare(da.from_array(a, chunks=16), da.from_array(b, chunks=16), **kw).to_dict()
    n = spanmatch.compare(a, b, **kw).to_dict()
    close(records(d)[0]["measures"], records(n)[0]["measures"], "dask", tol=1e-12)
    close(records(d)[0]["null"], records(n)[0]["null"], "dask null", tol=1e-12)


def permuted_copy(rows: int = 300, n: int = 7, seed: int = 0) -> Dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = np.maximum(rng.standard_normal((rows, n)) @ rng.standard_normal((n, n)) + 0.5, 0)
    perm = rng.permutation(n)
    return {"a": a, "b": 2.0 * a[:, perm] - 1.0, "perm": perm}


def test_neuron_objects_of_a_permuted_copy() -> None:
    c = permuted_copy()
    rng = np.random.default_rng(9)
    base = (rng.standard_normal(c["a"].shape), rng.standard_normal(c["a"].shape))
    r = spanmatch.compare(
        c["a"], c["b"], measures=("match_1to1", "soft_match", "perm_procrustes"), transport_plan=True,
        null="rotate", null_draws=6, bootstrap=10, chunks=5, baseline=base,
    )
    layer = r["layer"]
    want = np.array(sorted((int(p), j) for j, p in enumerate(c["perm"])), dtype=np.int64)
    one = layer.match_1to1
    assert one is not None and layer.one_to_one is not None
    np.testing.assert_array_equal(one.pairs, want)
    assert one.pairs.dtype == np.int64 and one.pairs.shape == (7, 2)
    np.testing.assert_allclose(one.correlations, 1.0, atol=1e-12)
    assert abs(one.mean - 1.0) < 1e-12 and abs(one.semi_match - 1.0) < 1e-12
    np.testing.assert_array_equal(one.best_in_b.pairs, want)
    np.testing.assert_array_equal(one.best_in_a.pairs, want[np.argsort(want[:, 1])])
    assert one.partner_of_a(int(c["perm"][2])) == 2 and one.partner_of_b(2) == int(c["perm"][2])
    # The maximum match holds every neuron, each with its partner.
    assert (one.partner_inside, one.match_neurons) == (14, 14)
    soft = layer.soft_match
    assert soft is not None and soft.distance < 1e-6 and soft.plan is not None
    expected_plan = np.zeros((7, 7))
    expected_plan[want[:, 0], want[:, 1]] = 1 / 7
    np.testing.assert_allclose(soft.plan, expected_plan, atol=1e-12)
    perm = layer.perm_procrustes
    assert perm is not None and perm.distance < 1e-6
    np.testing.assert_array_equal(perm.permutation, want)
    # Controls: every rotation is less alike (smallest p-value), the interval is the point, and
    # training added what the independent baseline lacks.
    null = layer.null_measures
    assert null["one_to_one"]["p_value"] == pytest.approx(1 / 7) and null["one_to_one"]["max"] < 0.99
    assert null["soft_match"]["p_value"] == pytest.approx(1 / 7) and null["soft_match"]["min"] > 0.01
    assert "cka_linear" not in null
    assert layer.intervals["one_to_one"]["lo"] == pytest.approx(1.0, abs=1e-12)
    diff = layer.untrained["trained_minus_untrained_measures"]
    assert diff["one_to_one"] == pytest.approx(1.0 - layer.untrained["measures"]["one_to_one"], abs=1e-12)
    assert "neurons" not in layer.untrained["measures"]
    # The objects come back from JSON.
    again = spanmatch.Result(r.to_dict())["layer"]
    np.testing.assert_array_equal(again.match_1to1.pairs, one.pairs)
    np.testing.assert_array_equal(again.soft_match.plan, soft.plan)
    # Not computed: None.
    plain = spanmatch.compare(c["a"], c["b"])["layer"]
    assert plain.match_1to1 is None and plain.soft_match is None and plain.perm_procrustes is None
    assert spanmatch.compare(c["a"], c["b"], measures="soft_match")["layer"].soft_match.plan is None


def test_an_untrained_copy_gives_no_gain() -> None:
    """When the untrained pair is already the same permuted copy, trained − untrained is 0."""
    c = permuted_copy(seed=2)
    r = spanmatch.compare(c["a"], c["b"], measures="one_to_one", baseline=(c["a"], c["b"]))["layer"]
    assert r.untrained["trained_minus_untrained_measures"] == {"one_to_one": 0.0, "semi_match": 0.0}


def test_bad_measure_names_and_options_are_clear_errors(spanmatch_cli: Path, tmp_path: Path) -> None:
    c = permuted_copy(rows=40, n=3)
    for kw, want in (
        (dict(shape_alpha=1.5), "shape_alpha: α = 1.5 is outside [0, 1]"),
        (dict(shape_alpha=-0.5), "shape_alpha: α = -0.5 is outside [0, 1]"),
        (dict(ridge_alpha=-1.0), "ridge_alpha: -1 is not a ridge penalty"),
        (dict(measures=("cka", "hungarian")), "unknown measure 'hungarian'; valid names: match, all, cka"),
    ):
        with pytest.raises(ValueError, match=re.escape(want)):
            spanmatch.compare(c["a"], c["b"], **kw)
    st = spanmatch.Accumulator().update(c["a"], c["b"]).finish()
    with pytest.raises(ValueError, match="one_to_one \\(or match_1to1\\)"):
        st.measures(["nope"])
    with pytest.raises(ValueError, match="shape_alpha"):
        st.measures("shape", shape_alpha=3.0)
    pa, pb = tmp_path / "a.npy", tmp_path / "b.npy"
    np.save(pa, c["a"])
    np.save(pb, c["b"])
    for args, want in (
        (["--shape-alpha", "1.5"], "--shape-alpha: α = 1.5 is outside [0, 1]"),
        (["--ridge-alpha", "-2"], "--ridge-alpha: -2 is not a ridge penalty"),
        (["--measures", "cka,foo"], "--measures: unknown measure 'foo'; valid names: match, all,"),
    ):
        run = subprocess.run([str(spanmatch_cli), "compare", str(pa), str(pb), *args], capture_output=True, text=True)
        assert run.returncode != 0 and want in run.stderr, run.stderr


def test_options_accept_all_and_keep_the_measure_options() -> None:
    o = spanmatch.Options(measures="all", shape_alpha=0.2)
    d = o.to_dict()
    assert d["measures"] == ["all"] and d["shape_alpha"] == 0.2 and d["transport_plan"] is False
    assert spanmatch.Options.from_dict(d) == o
    c = permuted_copy(rows=60, n=4)
    r = spanmatch.compare(c["a"], c["b"], o)
    assert r.options.measures == tuple(spanmatch._native.measure_names())
    assert r.options.shape_alpha == 0.2
