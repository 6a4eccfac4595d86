"""The one results schema and the controls across fronts: the numpy front and the CLI give the
same numbers for every control (untrained baseline, rotation null, centred match, bootstrap
intervals, simple matches, verdict); results round-trip through JSON and render; files written
before schema version 3 still read; bad input gets clear errors."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pytest

import spanmatch
from conftest import ROOT

FIXTURES = ROOT / "crates" / "spanmatch-engine" / "tests" / "fixtures"


def records(d: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The layer records of the primary comparison."""
    return next(c for c in d["comparisons"] if c["kind"] == "pair")["layers"]


def nets(seed: int, shared: float) -> Dict[str, np.ndarray]:
    """A conv layer [N, C, H, W] and a fully connected one, for two nets whose neurons share
    ``shared`` of their signal."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((60, 6, 4, 4))
    fc = rng.standard_normal((60, 8))
    out = {}
    for side in range(2):
        own = np.random.default_rng(seed * 10 + side)
        conv = shared * z[:, ::-1] + (1 - shared) * own.standard_normal(z.shape)
        lin = shared * fc @ own.standard_normal((8, 8)) + (1 - shared) * own.standard_normal(fc.shape)
        out[f"side{side}"] = {"conv": np.maximum(conv, 0).astype(np.float32), "fc": lin}
    return out


@pytest.fixture(scope="module")
def activations(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    trained, untrained = nets(1, 0.9), nets(2, 0.3)
    d = tmp_path_factory.mktemp("acts")
    paths = {}
    for name, sides in (("t", trained), ("u", untrained)):
        for k, v in sides.items():
            p = d / f"{name}_{k}.npz"
            np.savez(p, **v)
            paths[(name, k)] = p
    return {"trained": trained, "untrained": untrained, "paths": paths, "dir": d}


CONTROLS = dict(null="rotate", null_draws=4, bootstrap=20, chunks=5, simple=0.3, orders=1, seed=3)


def assert_close_records(x: Dict[str, Any], y: Dict[str, Any], tol: float = 1e-10) -> None:
    """Two layer records: indices and interval ends identical, numbers within ``tol``."""

    def close(u: Any, v: Any, what: str) -> None:
        if isinstance(u, dict):
            assert set(u) == set(v), what
            for k in u:
                close(u[k], v[k], f"{what}.{k}")
        elif isinstance(u, list):
            assert len(u) == len(v), what
            for i, (a, b) in enumerate(zip(u, v)):
                close(a, b, f"{what}[{i}]")
        elif isinstance(u, float) or isinstance(v, float):
            assert u is not None and v is not None, what
            assert math.isclose(u, v, rel_tol=tol, abs_tol=tol), f"{what}: {u} vs {v}"
        else:
            assert u == v, f"{what}: {u} vs {v}"

    for key in ("neurons_a", "neurons_b", "rows", "dead_a", "dead_b", "verdict", "verdict_missing"):
        assert x.get(key) == y.get(key), key
    for m1, m2 in zip(x["matches"], y["matches"]):
        assert (m1["eps"], m1["a"], m1["b"]) == (m2["eps"], m2["a"], m2["b"])
    # Interval ends of mms are fractions of neurons: identical.
    assert x["intervals"]["mms"] == y["intervals"]["mms"]
    assert x["untrained"]["intervals"]["mms"] == y["untrained"]["intervals"]["mms"]
    for m1, m2 in zip(x["simple"]["matches"], y["simple"]["matches"]):
        assert (m1["a"], m1["b"], m1["count"]) == (m2["a"], m2["b"], m2["count"])
    for key in ("thresholds_a", "thresholds_b", "max_epsilon", "matches", "centered", "null", "intervals", "untrained", "simple"):
        close(x[key], y[key], key)
    for k in ("cka_linear", "cka_linear_debiased"):
        close(x["measures"][k], y["measures"][k], k)


def test_numpy_front_and_cli_agree_on_every_control(activations: Dict[str, Any], spanmatch_cli: Path) -> None:
    t, u, p = activations["trained"], activations["untrained"], activations["paths"]
    out = activations["dir"] / "cli.json"
    subprocess.run(
        [
            str(spanmatch_cli), "compare", str(p[("t", "side0")]), str(p[("t", "side1")]),
            "--baseline", str(p[("u", "side0")]), str(p[("u", "side1")]),
            "--null", "rotate", "--null-draws", "4", "--bootstrap", "20", "--chunks", "5",
            "--simple", "0.3", "--orders", "1", "--seed", "3", "--json", str(out),
        ],
        check=True,
        capture_output=True,
    )
    cli = json.loads(out.read_text())
    arrays = spanmatch.compare(t["side0"], t["side1"], baseline=(u["side0"], u["side1"]), **CONTROLS)
    files = spanmatch.compare(
        p[("t", "side0")], p[("t", "side1")], baseline=(p[("u", "side0")], p[("u", "side1")]), **CONTROLS
    )
    assert cli["front"] == "cli-compare" and arrays.to_dict()["front"] == "python"
    assert cli["options"] == arrays.to_dict()["options"] == files.to_dict()["options"]
    for py in (arrays, files):
        d = py.to_dict()
        assert [l["name"] for l in records(d)] == ["conv", "fc"]
        for x, y in zip(records(cli), records(d)):
            assert x["untrained"] is not None and x["verdict"] in ("learned", "given", "subspace-only", "none")
            assert_close_records(x, y)
    # The verdict and the controls appear in the table, at the main ε.
    table = repr(arrays)
    for word in ("at ε = 0.5", "95% interval", "centred", "untrained", "rotation null", "verdict"):
        assert word in table, word
    layer = arrays["conv"]
    assert layer.verdict == records(cli)[0]["verdict"]
    np.testing.assert_allclose(layer.untrained_mms, records(cli)[0]["untrained"]["mms"], atol=1e-12)
    assert arrays.verdicts == {l["name"]: l["verdict"] for l in records(cli)}


def test_untrained_summary_is_the_baseline_pair_analysed_alone(activations: Dict[str, Any]) -> None:
    t, u = activations["trained"], activations["untrained"]
    with_base = spanmatch.compare(t["side0"], t["side1"], baseline=(u["side0"], u["side1"]), measures=("cka", "cca"))
    alone = spanmatch.compare(u["side0"], u["side1"], measures=("cka", "cca"))
    for name in ("conv", "fc"):
        summary = with_base[name].untrained
        assert summary["mms"] == [m.mms for m in alone[name].matches]
        assert summary["max_epsilon"] == alone[name].max_epsilon
        assert summary["measures"]["cka_linear"] == alone[name].cka
        assert summary["measures"]["cca_mean_rho"] == alone[name].measures["cca_mean_rho"]
        np.testing.assert_array_equal(summary["centered_mms"], alone[name].centered_mms)
        np.testing.assert_allclose(
            summary["trained_minus_untrained"], with_base[name].mms - alone[name].mms, atol=1e-15
        )
        # Without the null the verdict names what is missing.
        assert with_base[name].verdict is None and with_base[name].verdict_missing == ["null"]


def test_round_trips_and_the_report_renders_any_front(activations: Dict[str, Any], spanmatch_cli: Path, tmp_path: Path) -> None:
    t, u = activations["trained"], activations["untrained"]
    r = spanmatch.compare(t["side0"], t["side1"], baseline=(u["side0"], u["side1"]), **CONTROLS)
    path = tmp_path / "r.json"
    r.to_json(path)
    again = spanmatch.Result.from_json(path)
    assert again.to_dict() == r.to_dict()
    assert again.table() == r.table()
    assert again.options == r.options == spanmatch.Options(**CONTROLS)
    assert [s.sine for s in again["fc"].simple] == [s.sine for s in r["fc"].simple]
    assert all(s.sine is not None and 0 <= s.sine <= 0.3 + 1e-12 for s in r["fc"].simple)
    # `spanmatch report` renders a Python results file, with the verdict column.
    out = tmp_path / "report"
    subprocess.run([str(spanmatch_cli), "report", str(path), "--out", str(out), "--no-png"], check=True, capture_output=True)
    html = (out / "report.html").read_text()
    assert "verdict<br>" in html and "conv" in html and "centred match" in html
    # ... and a compare --json file.
    cli_json = tmp_path / "cli.json"
    p = activations["paths"]
    subprocess.run(
        [str(spanmatch_cli), "compare", str(p[("t", "side0")]), str(p[("t", "side1")]), "--json", str(cli_json)],
        check=True,
        capture_output=True,
    )
    subprocess.run([str(spanmatch_cli), "report", str(cli_json), "--out", str(tmp_path / "r2"), "--no-png"], check=True, capture_output=True)
    assert (tmp_path / "r2" / "report.html").is_file()
    assert spanmatch.Result.from_json(cli_json).to_dict() == json.loads(cli_json.read_text())


def test_dask_and_stats_fronts_write_the_same_schema() -> None:
    da = pytest.importorskip("dask.array")
    import spanmatch.dask
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((200, 6)), rng.standard_normal((200, 5))
    d = spanmatch.dask.compare(da.from_array(a, chunks=50), da.from_array(b, chunks=50), eps=(0.5,)).to_dict()
    assert (d["schema"], d["schema_version"], d["front"]) == ("spanmatch-results", 3, "dask")
    s = spanmatch.Accumulator().update(a, b).finish().result(eps=(0.5,)).to_dict()
    assert records(s)[0]["matches"] == records(d)[0]["matches"]
    assert d["provenance"]["cpu"]["arch"] and isinstance(d["provenance"]["cpu"]["features"], list)


def test_extras_attach_to_records_and_are_checked() -> None:
    rng = np.random.default_rng(1)
    st = spanmatch.Accumulator().update(rng.standard_normal((50, 3)), rng.standard_normal((50, 2))).finish()
    top = {
        "k": 2,
        "a": {"indices": np.array([[4, 1], [0, -1], [2, 3]]), "values": [[1.5, 0.5], [0.2, None], [3.0, 1.0]]},
        "b": {"indices": [[1, 2], [3, 4]], "values": [[1.0, 0.5], [0.7, 0.1]], "positions": [[0, 3], [1, 1]]},
        "response": "max over positions",
    }
    r = spanmatch.analyse({"fc": st}, extras={"fc": {"top_inputs": top, "note_from_front": {"x": 1}}})
    rec = records(r.to_dict())[0]
    assert rec["top_inputs"]["a"]["indices"] == [[4, 1], [0, -1], [2, 3]]
    assert rec["top_inputs"]["b"]["positions"] == [[0, 3], [1, 1]]
    assert rec["note_from_front"] == {"x": 1}
    assert r["fc"].top_inputs["k"] == 2
    with pytest.raises(ValueError, match=r"extras\['fc'\]"):
        spanmatch.analyse({"fc": st}, extras={"fc": {"top_inputs": {"k": 2}}})
    with pytest.raises(ValueError, match="extras: no layer named 'fc9'"):
        spanmatch.analyse({"fc": st}, extras={"fc9": {"x": 1}})


@pytest.mark.parametrize(
    "name", ["legacy_compare.json", "legacy_python.json", "legacy_torch_cross.json", "legacy_reproduce.json"]
)
def test_files_before_schema_3_still_read(name: str) -> None:
    old = json.loads((FIXTURES / name).read_text())
    r = spanmatch.Result.from_json(FIXTURES / name)
    d = r.to_dict()
    assert d["schema_version"] == 3 and d["converted_from"]
    if name == "legacy_reproduce.json":
        pair = next(c for c in old["comparisons"] if c["kind"] == "Pair")
        assert [l.name for l in r] == [l["layer"] for l in pair["layers"]]
        for l, ol in zip(r, pair["layers"]):
            assert list(l.mms) == ol["mms"]
            assert l.verdict in ("learned", "given", "subspace-only", "none")
            assert l.untrained is not None
    else:
        assert [l.name for l in r] == [l["name"] for l in old["layers"]]
        for l, ol in zip(r, old["layers"]):
            assert [m.mms for m in l.matches] == [m["mms"] for m in ol["matches"]]
            assert [m.a.tolist() for m in l.matches] == [m["a"] for m in ol["matches"]]
    if "cross" in old:
        assert r.cross is not None and r.cross.layers_a == old["cross"]["layers_a"]
        assert r.to_dict()["cross"] == old["cross"]
    # A dict of the old schema converts too.
    assert spanmatch.Result(old).to_dict()["comparisons"] == d["comparisons"]


def test_unknown_schema_versions_fail_naming_the_version(tmp_path: Path) -> None:
    d = spanmatch.compare(np.eye(4), np.eye(4), eps=(0.5,)).to_dict()
    d["schema_version"] = 9
    path = tmp_path / "v9.json"
    path.write_text(json.dumps(d))
    with pytest.raises(ValueError, match="schema_version 9 is not supported.*schema_version 3"):
        spanmatch.Result.from_json(path)
    with pytest.raises(ValueError, match="not a spanmatch results file"):
        spanmatch.Result({"hello": 1})


def test_bad_baselines_and_chunks_are_clear_errors(activations: Dict[str, Any], spanmatch_cli: Path) -> None:
    t, u, p = activations["trained"], activations["untrained"], activations["paths"]
    a, b = t["side0"], t["side1"]
    with pytest.raises(ValueError, match="baseline: layer 'fc' has shapes"):
        spanmatch.compare(a, b, baseline=({**u["side0"], "fc": u["side0"]["fc"][:, :5]}, u["side1"]))
    with pytest.raises(ValueError, match="baseline: layer 'fc' is not in b0"):
        spanmatch.compare(a, b, baseline=(u["side0"], {"conv": u["side1"]["conv"]}))
    with pytest.raises(TypeError, match="baseline: give"):
        spanmatch.compare(a, b, baseline=u["side0"])
    with pytest.raises(TypeError, match="must have the form of a and b"):
        spanmatch.compare(a, b, baseline=(u["side0"]["fc"], u["side1"]["fc"]))
    with pytest.raises(ValueError, match="baseline: layer 'fc': a has 30 rows .* but b has 60 rows"):
        spanmatch.compare(a, b, baseline=({**u["side0"], "fc": u["side0"]["fc"][:30]}, u["side1"]))
    with pytest.raises(ValueError, match="61 chunks for the bootstrap, but only 60 inputs"):
        spanmatch.compare(a, b, bootstrap=5, chunks=61)
    with pytest.raises(ValueError, match="61 chunks for the bootstrap"):
        spanmatch.compare(p[("t", "side0")], p[("t", "side1")], bootstrap=5, chunks=61)
    # Statistics of other widths as a baseline (the analysis step every front shares).
    st = spanmatch.Accumulator().update(a["fc"], b["fc"]).finish()
    st0 = spanmatch.Accumulator().update(a["fc"][:, :5], b["fc"]).finish()
    with pytest.raises(ValueError, match="untrained baseline pair has 5 \\+ 8 neurons over 60 rows, the trained pair 8 \\+ 8"):
        spanmatch.analyse({"fc": st}, baseline={"fc": st0})
    with pytest.raises(ValueError, match="baseline: no entry for layer 'fc'"):
        spanmatch.analyse({"fc": st, "fc2": st}, baseline={"fc2": st0})
    with pytest.raises(ValueError, match="bootstrap: needs the statistics of chunks"):
        spanmatch.analyse({"fc": st}, baseline={"fc": st}, bootstrap=5, chunks={"fc": [st]})
    # The CLI: a baseline file without the layer, or of other shapes, names the file and layer.
    d = activations["dir"]
    np.savez(d / "short.npz", conv=u["side0"]["conv"][:, :4], fc=u["side0"]["fc"])
    np.savez(d / "nofc.npz", conv=u["side0"]["conv"])
    for base, want in (("short.npz", "short.npz"), ("nofc.npz", "layer 'fc' is not in")):
        run = subprocess.run(
            [str(spanmatch_cli), "compare", str(p[("t", "side0")]), str(p[("t", "side1")]), "--baseline", str(d / base), str(p[("u", "side1")])],
            capture_output=True,
            text=True,
        )
        assert run.returncode != 0 and want in run.stderr and base in run.stderr, run.stderr


def test_torch_front_writes_the_schema_with_the_centred_match() -> None:
    torch = pytest.importorskip("torch")
    import spanmatch.torch as smt

    torch.manual_seed(0)
    a = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU())
    b = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.ReLU())
    data = [torch.randn(16, 4) for _ in range(3)]
    d = smt.compare(a, b, data, progress=False, eps=(0.5,)).to_dict()
    assert (d["schema_version"], d["front"]) == (3, "torch")
    rec = records(d)[0]
    assert rec["centered"]["matches"][0]["eps"] == 0.5
    assert rec["verdict_missing"] == ["baseline", "null"]
