"""The torch front's controls equal the numpy front's and the CLI's on the same activations
(captured by hand, saved to .npz): untrained baseline, rotation null, centred match, bootstrap
intervals, simple matches, verdict, measures; the schema round trip of torch output; simple
matches with a progress bar and Ctrl-C keeping what was found."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("tqdm")
from torch import nn  # noqa: E402

import spanmatch  # noqa: E402
import spanmatch.torch as smt  # noqa: E402
from spanmatch.torch import _compare  # noqa: E402

from records import assert_records_equal, differences  # noqa: E402
from test_torch import EPS, SmallCNN, by_hand, loader  # noqa: E402
from test_torch_baseline import fresh, trained  # noqa: E402

#: The analysis of every front in this file: every control, one new measure, same seeds.
OPTIONS = spanmatch.Options(
    eps=EPS,
    measures=("cka", "cca", "one_to_one"),
    null="rotate",
    null_draws=6,
    bootstrap=40,
    chunks=4,  # 4 batches of 12 inputs: chunk c = batch c = inputs 12c .. 12c+11 on every front
    simple=0.5,
    seed=3,
)
#: Fields of a torch record that the other fronts do not have (they never see the inputs).
TORCH_ONLY = ("top_inputs", "pool")


def records(d):
    return d["comparisons"][0]["layers"]


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """Two 'trained' CNNs, their initial weights, 48 inputs in 4 batches; the torch result and
    the activations captured by hand, saved to .npz."""
    a, b = trained(SmallCNN, 0), trained(SmallCNN, 1)
    a0, b0 = fresh(SmallCNN, 10), fresh(SmallCNN, 11)
    data = loader(n=48, batch=12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = smt.compare(a, b, data, OPTIONS, baseline=(a0, b0), top_inputs=2, progress=False)
    names = r.names
    acts = {k: by_hand(m, data, names) for k, m in (("a", a), ("b", b), ("a0", a0), ("b0", b0))}
    d = tmp_path_factory.mktemp("fronts")
    paths = {}
    for k, v in acts.items():
        paths[k] = d / f"{k}.npz"
        np.savez(paths[k], **v)
    return dict(torch=r, acts=acts, paths=paths, dir=d, names=names)


def test_torch_equals_numpy_front(case):
    acts = case["acts"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = spanmatch.compare(acts["a"], acts["b"], OPTIONS, baseline=(acts["a0"], acts["b0"]))
    t = case["torch"].to_dict()
    assert_records_equal(records(t), records(ref.to_dict()), tol=1e-10, skip=TORCH_ONLY)
    assert t["options"] == dict(OPTIONS.to_dict(), top_inputs=2)
    assert ref.to_dict()["options"] == OPTIONS.to_dict()


def test_torch_equals_cli(case, spanmatch_cli):
    p = case["paths"]
    out = case["dir"] / "cli.json"
    cmd = [
        str(spanmatch_cli), "compare", str(p["a"]), str(p["b"]),
        "--baseline", str(p["a0"]), str(p["b0"]),
        "--eps", ",".join(str(e) for e in EPS),
        "--measures", ",".join(OPTIONS.measures),
        "--null", "rotate", "--null-draws", str(OPTIONS.null_draws),
        "--bootstrap", str(OPTIONS.bootstrap), "--chunks", str(OPTIONS.chunks),
        "--simple", str(OPTIONS.simple), "--seed", str(OPTIONS.seed),
        "--json", str(out),
    ]  # fmt: skip
    for n in case["names"]:
        cmd += ["--layer", n]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    cli = json.loads(out.read_text())
    t = case["torch"].to_dict()
    assert [l["name"] for l in records(cli)] == case["names"]
    assert_records_equal(records(t), records(cli), tol=1e-10, skip=TORCH_ONLY)


def test_the_comparison_is_not_vacuous(case):
    """Every control was computed and moved something; the comparator sees a difference."""
    r = case["torch"]
    for l in r.layers:
        assert l.verdict in ("learned", "given", "subspace-only", "none") and not l.verdict_missing
        assert l.untrained is not None and l.null is not None and l.centered is not None
        assert l.intervals is not None and l.simple is not None
        assert "one_to_one" in l.measures and "cca_mean_rho" in l.measures
    assert any(l.intervals["mms"][-1]["lo"] < l.intervals["mms"][-1]["hi"] for l in r.layers)
    assert any(l.null[-1]["mean"] != l.mms[-1] for l in r.layers)
    assert any(l.simple for l in r.layers)
    assert any(u != m for l in r.layers for u, m in zip(l.untrained["mms"], l.mms))
    # A record off by one rotation draw, one threshold by 1e-9 or one verdict is caught.
    recs = records(r.to_dict())
    for change in (
        lambda x: x["null"]["per_eps"][-1]["values"].__setitem__(0, x["null"]["per_eps"][-1]["values"][0] + 1e-12),
        lambda x: x["thresholds_a"].__setitem__(0, x["thresholds_a"][0] + 1e-9),
        lambda x: x.__setitem__("verdict", "learned" if x["verdict"] != "learned" else "none"),
    ):
        other = json.loads(json.dumps(recs))
        change(other[0])
        assert differences(recs, other, 1e-10)


def test_torch_result_round_trips_through_json(case, tmp_path):
    """to_json -> Result.from_json -> to_dict is the same data: records with top_inputs and pool,
    the cross block (view, every measure), settings.memory; TopInputs and MemoryEstimate come
    back from the dict."""
    a, b = trained(SmallCNN, 0), trained(SmallCNN, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = smt.compare(
            a, b, loader(n=30, batch=10), layers=["features.1", "features.4", "act"], cross=True,
            pool="mean", top_inputs=3, measures=("cka", "one_to_one", "soft_match"), baseline="reinit",
            null="rotate", null_draws=3, progress=False,
        )  # fmt: skip
    path = tmp_path / "torch.json"
    r.to_json(path)
    back = spanmatch.Result.from_json(path)
    assert back.to_dict() == r.to_dict()
    d = back.to_dict()
    assert d["front"] == "torch" and d["schema_version"] == 3
    assert d["settings"]["layout"] == "tokens" and d["settings"]["baseline"] == "reinit"
    assert d["provenance"]["inputs"] == 30  # every input of the loader, recorded for repeating the run
    assert smt.MemoryEstimate.from_dict(d["settings"]["memory"]) == r.memory
    c = back.cross
    assert c is not None and c.view is not None and c.view.tolist() == r.cross.view.tolist()
    for k in ("one_to_one", "soft_match", "cka_linear"):
        np.testing.assert_array_equal(c.measures[k], r.cross.measures[k])
    for l, l2 in zip(back.layers, r.layers):
        for side in ("a", "b"):
            t = smt.TopInputs.from_dict(l.top_inputs[side], l.top_inputs["k"])
            t2 = getattr(l2, f"top_inputs_{side}")
            np.testing.assert_array_equal(t.indices, t2.indices)
            np.testing.assert_array_equal(t.values, t2.values)
            np.testing.assert_array_equal(t.positions, t2.positions)
            assert t.positions_shape == t2.positions_shape
    assert back["features.1"].top_inputs["a"]["positions_shape"] == [8, 8]


# ------------------------------------------------------------------------------------------
# Cross matrices carry every requested measure
# ------------------------------------------------------------------------------------------


def test_cross_carries_every_requested_measure():
    """Each layer x layer entry holds every requested measure, equal to the numpy front on the
    same pooled activations captured by hand."""
    a, b = trained(SmallCNN, 0), trained(SmallCNN, 1)
    data = loader(n=30, batch=10)
    layers = ["features.1", "features.4", "fc", "act"]
    measures = ("cka", "cca", "one_to_one", "soft_match", "perm_procrustes", "predictivity", "shape")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = smt.compare(a, b, data, layers=layers, cross=True, pool="mean", measures=measures, progress=False)
    c = r.cross
    assert {"one_to_one", "semi_match", "soft_match", "perm_procrustes", "predictivity_ab", "predictivity_ba", "shape", "cca_mean_rho"} <= set(c.measures)
    assert "shape_alpha" not in c.measures  # a setting, not a value
    ha, hb = by_hand(a, data, layers), by_hand(b, data, layers)

    def pooled(x):
        return x.astype(np.float64) if x.ndim == 2 else x.astype(np.float64).mean(axis=(2, 3))

    for i, la in enumerate(layers):
        for j, lb in enumerate(layers):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                rec = spanmatch.compare(pooled(ha[la]), pooled(hb[lb]), eps=EPS, measures=measures, center=False).layers[0]
            np.testing.assert_array_equal(c.mms[:, i, j], rec.mms)
            for k, m in c.measures.items():
                v = rec.measures.get(k)
                if v is None:
                    assert np.isnan(m[i, j]), (la, lb, k)
                else:
                    assert abs(m[i, j] - v) <= 1e-9 * max(1.0, abs(v)), (la, lb, k, m[i, j], v)
    d = r.to_dict()["cross"]
    assert set(d["measures"]) == set(c.measures) - {"cka_linear", "cka_linear_debiased"}
    assert c.best_match("one_to_one")["features.1"] in layers


# ------------------------------------------------------------------------------------------
# Simple matches: progress bar, Ctrl-C keeps what was found
# ------------------------------------------------------------------------------------------


def _simple_case():
    """Model B is model A slightly perturbed: many simple matches in every layer."""
    a = trained(SmallCNN, 0)
    b = copy.deepcopy(a)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in b.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return a, b, loader(n=48, batch=12), ["features.1", "features.4", "act"]


def test_simple_matches_show_a_progress_bar(capsys):
    a, b, data, layers = _simple_case()
    r = smt.compare(a, b, data, layers=layers, simple=0.5, progress=True)
    err = capsys.readouterr().err
    assert "simple matches features.1" in err and "neuron" in err
    assert all(l.record["simple"]["complete"] for l in r.layers)
    quiet = smt.compare(a, b, data, layers=layers, simple=0.5, progress=False)
    assert "simple matches" not in capsys.readouterr().err
    assert quiet.to_dict()["comparisons"] == r.to_dict()["comparisons"]


def test_ctrl_c_during_simple_matches_keeps_what_was_found(monkeypatch):
    """A real SIGINT while the simple matches run: the layer being searched and every later one
    stop and keep what they found (complete: false, a warning); every other number is that of an
    uninterrupted run; the models are left as they were."""
    a, b, data, layers = _simple_case()
    full = smt.compare(a, b, data, layers=layers, simple=0.5, null="rotate", null_draws=3, progress=False)
    state = {k: v.clone() for k, v in a.state_dict().items()}
    calls = []
    shown = _compare._SimpleProgress.__call__

    def interrupt(self, layer, done, total):
        calls.append((layer, done, total))
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGINT)  # Python raises KeyboardInterrupt here
        shown(self, layer, done, total)

    monkeypatch.setattr(_compare._SimpleProgress, "__call__", interrupt)
    # Python's own Ctrl-C handler (KeyboardInterrupt): an earlier test in the same process (Dask,
    # torch.distributed) may have left another handler installed.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.warns(UserWarning, match="simple matches interrupted, partial result"):
            r = smt.compare(a, b, data, layers=layers, simple=0.5, null="rotate", null_draws=3, progress=False)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert calls and calls[0][0] == "features.1"
    for l, f in zip(r.layers, full.layers):
        s, fs = l.record["simple"], f.record["simple"]
        assert not s["complete"] and fs["complete"]
        found = [(m["a"], m["b"]) for m in s["matches"]]
        every = [(m["a"], m["b"]) for m in fs["matches"]]
        assert all(m in every for m in found)  # what was found is right, only less of it
        rest = {k: v for k, v in l.record.items() if k != "simple"}
        assert rest == {k: v for k, v in f.record.items() if k != "simple"}
    assert any(len(l.record["simple"]["matches"]) < len(f.record["simple"]["matches"]) for l, f in zip(r.layers, full.layers))
    assert all(torch.equal(v, a.state_dict()[k]) for k, v in state.items())
    assert not any(m._forward_hooks for m in a.modules())


def test_progress_callback_errors_are_raised(monkeypatch):
    """An error of the progress bar itself (not Ctrl-C) is raised, not swallowed."""
    a, b, data, layers = _simple_case()

    def broken(self, layer, done, total):
        raise RuntimeError("bar broke")

    monkeypatch.setattr(_compare._SimpleProgress, "__call__", broken)
    with pytest.raises(RuntimeError, match="bar broke"):
        smt.compare(a, b, data, layers=layers, simple=0.5, progress=False)
    assert not any(m._forward_hooks for m in a.modules())


def test_options_object_and_keywords_agree():
    a, b = trained(SmallCNN, 0), trained(SmallCNN, 1)
    data = loader(n=24, batch=12)
    opts = spanmatch.Options(eps=(0.25, 0.5), null="rotate", null_draws=2, top_inputs=2, seed=5)
    r1 = smt.compare(a, b, data, opts, progress=False)
    r2 = smt.compare(a, b, data, eps=(0.25, 0.5), null="rotate", null_draws=2, top_inputs=2, seed=5, progress=False)
    r3 = smt.compare(a, b, data, opts.to_dict(), null_draws=2, progress=False)
    assert r1.to_dict()["comparisons"] == r2.to_dict()["comparisons"] == r3.to_dict()["comparisons"]
    assert r1.options == opts
    assert "top_inputs" in r1.layers[0].record
