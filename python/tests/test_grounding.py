"""The grounding benchmark (python/benchmarks/grounding.py, grounding_scoring.py).

* The scoring equals ReSi's own code on a fixed synthetic table (fixtures/resi_scoring.json,
  made by fixtures/make_resi_scoring_fixture.py, which calls ReSi's functions), to 1e-12.
* The benchmark's self-test: random numbers score at chance on every test, a similarity that
  falls strictly with layer distance scores +1 on monotonicity.
* The scoring of a cached tiny set of similarities (fixtures/grounding_tiny_similarities.json,
  from a ``--quick`` run; no training) gives every measure x test a score, interval and n, the
  same numbers every time (fixtures/grounding_tiny_scores.json).
* Bad input: unknown test names, a cache written by another version, a missing dataset.
* ``--quick`` end to end (marked slow: ``pytest -m slow``).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "python" / "benchmarks"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
sys.path.insert(0, str(BENCH))

import grounding  # noqa: E402
import grounding_scoring as gs  # noqa: E402

TOL = 1e-12


def _nan(v):
    return float("nan") if v is None else float(v)


@pytest.fixture(scope="module")
def resi():
    return json.loads((FIXTURES / "resi_scoring.json").read_text())


# ------------------------------------------------------------------------------ ReSi's values


def test_auprc_equals_resi(resi):
    assert len(resi["auprc"]) >= 10
    for case in resi["auprc"]:
        got = gs.auprc(case["in_group"], case["cross_group"], case["larger_is_more_similar"])
        assert abs(got - case["value"]) <= TOL, case


def test_group_separation_equals_resi(resi):
    groups = resi["group_separation"]["groups"]
    for case in resi["group_separation"]["cases"]:
        table = {frozenset((a, b)): v for a, b, v in case["pairs"]}
        got = gs.group_separation(groups, lambda a, b: table[frozenset((a, b))], case["larger_is_more_similar"])
        assert abs(got - case["value"]) <= TOL


def test_monotonicity_equals_resi(resi):
    assert any(any(v is None for i, row in enumerate(c["table"]) for j, v in enumerate(row) if i != j) for c in resi["monotonicity"])
    for case in resi["monotonicity"]:
        table = np.array([[_nan(v) for v in row] for row in case["table"]])
        got = gs.monotonicity_net(table, case["larger_is_more_similar"])
        assert abs(got - case["value"]) <= TOL


def test_prediction_equals_resi(resi):
    for case in resi["prediction"]:
        rep = {(a, b): x for a, b, x, _ in case["pairs"]}
        fun = {(a, b): y for a, b, _, y in case["pairs"]}
        nets = sorted({p[0] for p in case["pairs"]} | {p[1] for p in case["pairs"]})
        got = gs.prediction(nets, lambda a, b: rep[(a, b)], lambda a, b: fun[(a, b)], case["larger_is_more_similar"])
        assert abs(got - case["spearman"]) <= TOL, case["behaviour"]


def test_behaviour_from_logits_equals_resi(resi):
    logits = [np.asarray(x) for x in resi["outputs"]["logits"]]
    for i in range(3):
        for j in range(3):
            assert abs(grounding.jensen_shannon(logits[i], logits[j]) - resi["outputs"]["jsd"][i][j]) <= TOL
            assert abs(grounding.disagreement(logits[i], logits[j]) - resi["outputs"]["disagreement"][i][j]) <= TOL


def test_spearman_edge_cases_match_scipy_conventions():
    # scipy: constant input or a single value -> NaN; two values -> +-1 (from corrcoef).
    assert math.isnan(gs.spearman([1.0], [2.0]))
    assert math.isnan(gs.spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))
    assert math.isnan(gs.spearman([1.0, np.nan, 3.0], [1.0, 2.0, 3.0]))
    assert gs.spearman([1.0, 2.0], [2.0, 1.0]) == pytest.approx(-1.0, abs=1e-15)
    # Ties get average ranks.
    np.testing.assert_array_equal(gs.rankdata([3.0, 1.0, 3.0, 2.0]), [3.5, 1.0, 3.5, 2.0])


def test_average_precision_by_hand():
    # Ranked: + - + - (no ties): AP = (1/2) (1/1 + 2/3).
    assert gs.average_precision(np.array([1, 0, 1, 0]), np.array([4.0, 3.0, 2.0, 1.0])) == pytest.approx((1 + 2 / 3) / 2, abs=TOL)
    # One tie between a positive and a negative at the top: one step, precision 1/2.
    assert gs.average_precision(np.array([1, 0]), np.array([1.0, 1.0])) == pytest.approx(0.5, abs=TOL)
    # Distances are mapped so that the smallest distance ranks first.
    assert gs.auprc([0.1, 0.2], [0.5, 0.9], larger_is_more_similar=False) == pytest.approx(1.0, abs=TOL)
    assert gs.auprc([0.5, 0.9], [0.1, 0.2], larger_is_more_similar=False) < 0.6


# ------------------------------------------------------------------------------ self-test


def test_self_test_random_measure_at_chance_and_synthetic_at_ideal():
    out = gs.self_test(draws=400)
    # Random numbers: AUPRC at the expected AP of a random ranking (0.219 for 3 groups of 5),
    # which is near the in-group fraction (1/6); Spearman near 0.
    assert out["expected_random_auprc"] == pytest.approx(0.2186, abs=1e-3)
    assert abs(out["random_auprc"] - out["expected_random_auprc"]) < 0.02
    assert abs(out["random_auprc"] - out["in_group_fraction"]) < 0.08
    assert abs(out["random_monotonicity"]) < 0.05
    assert abs(out["random_prediction"]) < 0.05
    # Strictly falling with layer distance: +1, as a similarity and as a distance.
    assert out["synthetic_monotonicity"] == 1.0
    assert out["synthetic_monotonicity_distance"] == 1.0
    assert out["synthetic_auprc"] == 1.0
    assert out["synthetic_prediction"] == pytest.approx(1.0, abs=TOL)


def test_self_test_on_quick_design():
    # The --quick design (3 groups of 2 nets, 3 standard nets): chance is far above the
    # in-group fraction there, and the random measure sits at it.
    out = gs.self_test(groups=[["a0", "a1"], ["b0", "b1"], ["c0", "c1"]], layers=4, nets=3, draws=1000)
    assert abs(out["random_auprc"] - out["expected_random_auprc"]) < 0.03
    assert abs(out["random_prediction"]) < 0.08


def test_random_auprc_formula_against_simulation():
    rng = np.random.default_rng(5)
    groups = [[f"g{g}n{k}" for k in range(4)] for g in range(3)]
    sims = []
    for _ in range(1500):
        t = {}
        sims.append(gs.group_separation(groups, lambda a, b: t.setdefault(frozenset((a, b)), rng.random()), True))
    assert np.mean(sims) == pytest.approx(gs.random_auprc(groups), abs=0.01)


def test_monotonicity_sign_and_distance():
    idx = np.arange(5)
    falling = 1.0 / (1.0 + np.abs(idx[:, None] - idx[None, :]))
    assert gs.monotonicity_net(falling, True) == 1.0
    assert gs.monotonicity_net(falling, False) == -1.0  # read as a distance it is backwards
    rising = np.abs(idx[:, None] - idx[None, :]).astype(float)
    assert gs.monotonicity_net(rising, False) == 1.0


def test_bootstrap_intervals_bracket_score_and_are_deterministic():
    groups = [[f"g{g}n{k}" for k in range(5)] for g in range(3)]
    rng = np.random.default_rng(1)
    table = {frozenset(p): rng.random() + (0.3 if next(iter(p))[:2] == sorted(p)[1][:2] else 0.0)
             for p in __import__("itertools").combinations([n for g in groups for n in g], 2)}
    value = lambda a, b: table[frozenset((a, b))]  # noqa: E731
    a = gs.bootstrap_groups(groups, {"m": value}, {"m": True}, 300, seed=3)["m"]
    b = gs.bootstrap_groups(groups, {"m": value}, {"m": True}, 300, seed=3)["m"]
    assert a == b
    assert a.lo <= a.score <= a.hi and a.lo < a.hi
    assert 290 <= a.valid <= 300  # a group drawn as one net five times has no in-group pair


# ------------------------------------------------------------------------------ the tiny set


@pytest.fixture(scope="module")
def tiny():
    return json.loads((FIXTURES / "grounding_tiny_similarities.json").read_text())


def test_tiny_set_scores_every_measure_on_every_test(tiny):
    res = grounding.score(tiny, progress=False)
    assert set(res["tests"]) == set(grounding.TESTS)
    assert set(res["scores"]) == set(tiny["measures"])
    for m, by_test in res["scores"].items():
        assert set(by_test) == set(grounding.TESTS), m
        for t, r in by_test.items():
            assert r["score"] is not None, (m, t)
            assert r["n"] >= 2 and r["n_pairs"] >= 1
            if r["lo"] is not None:
                assert r["lo"] <= r["score"] + 1e-12 and r["score"] <= r["hi"] + 1e-12, (m, t, r)
    # Orientation is carried through (Procrustes is a distance).
    assert res["measures"]["procrustes"]["orientation"] == "distance"
    assert res["measures"]["cka_linear"]["orientation"] == "similarity"
    # Chance of the quick design's group tests: 3 groups of 2 nets.
    assert res["tests"]["shortcut"]["chance"] == pytest.approx(gs.random_auprc([[0, 1], [2, 3], [4, 5]]))


def test_tiny_set_scores_are_stable(tiny):
    got = grounding.score(tiny, progress=False)
    want = json.loads((FIXTURES / "grounding_tiny_scores.json").read_text())
    for m in want["scores"]:
        for t, w in want["scores"][m].items():
            g = got["scores"][m][t]
            for k in ("score", "lo", "hi"):
                if w[k] is None:
                    assert g[k] is None, (m, t, k)
                else:
                    assert abs(g[k] - w[k]) <= TOL, (m, t, k)
            assert g["n"] == w["n"] and g["valid"] == w["valid"]


def test_rescore_command_writes_json_table_and_figure(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "g.json"
    rc = grounding.main(["--rescore", str(FIXTURES / "grounding_tiny_similarities.json"), "--out", str(out),
                         "--markdown", str(tmp_path / "t.md"), "--figure", str(tmp_path / "f.png"), "--bootstrap", "20"])
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["schema"] == "spanmatch-grounding" and res["bootstrap"]["resamples"] == 20
    table = (tmp_path / "t.md").read_text()
    assert "| `cka_linear` |" in table and "monotonicity" in table
    assert (tmp_path / "f.png").stat().st_size > 10_000


def test_rescore_subset_of_tests(tiny):
    res = grounding.score(tiny, tests=["shortcut"], progress=False)
    assert list(res["tests"]) == ["shortcut"]


# ------------------------------------------------------------------------------ bad input


def test_unknown_test_name_is_a_clear_error(tiny):
    with pytest.raises(ValueError, match=r"unknown test name\(s\): layer_order; the tests are: monotonicity"):
        grounding.check_tests(["monotonicity", "layer_order"])
    with pytest.raises(ValueError, match="unknown test name"):
        grounding.score(tiny, tests=["nope"], progress=False)
    with pytest.raises(ValueError, match="unknown test name"):
        grounding.main(["--tests", "monotonicity,nope", "--self-test"])


def test_unknown_test_name_from_the_command_line():
    p = subprocess.run([sys.executable, str(BENCH / "grounding.py"), "--tests", "labels"], capture_output=True, text=True)
    assert p.returncode == 2
    assert "unknown test name(s): labels; the tests are: monotonicity, label_randomization" in p.stderr


def test_similarities_of_another_version_is_an_error(tiny):
    other = dict(tiny, version=grounding.RESULTS_VERSION + 1)
    with pytest.raises(ValueError, match="version"):
        grounding.score(other, progress=False)
    with pytest.raises(ValueError, match="not a grounding similarities document"):
        grounding.score({"schema": "x"}, progress=False)


def test_cache_from_another_version_is_a_clear_error(tmp_path):
    pytest.importorskip("torch")
    cache = grounding.Cache(tmp_path, grounding.QUICK)
    cache.open(rebuild=False)  # a fresh cache: creates the manifest
    manifest = cache.dir / "manifest.json"
    m = json.loads(manifest.read_text())
    assert m["cache_version"] == grounding.CACHE_VERSION
    cache.open(rebuild=False)  # the same version: fine
    (cache.dir / "nets" / "std-s0.pt").write_bytes(b"old")
    m["cache_version"] = grounding.CACHE_VERSION - 1
    m["digest"] = "0123456789abcdef"
    manifest.write_text(json.dumps(m))
    with pytest.raises(grounding.CacheError, match=r"another version of grounding.py.*differs in: cache_version, digest.*--rebuild"):
        cache.open(rebuild=False)
    assert (cache.dir / "nets" / "std-s0.pt").exists()  # nothing deleted without --rebuild
    cache.open(rebuild=True)
    assert not (cache.dir / "nets" / "std-s0.pt").exists()
    assert json.loads(manifest.read_text())["cache_version"] == grounding.CACHE_VERSION


def test_cache_with_other_training_settings_is_an_error(tmp_path):
    pytest.importorskip("torch")
    grounding.Cache(tmp_path, grounding.QUICK).open(rebuild=False)
    other = grounding.Cache(tmp_path, __import__("dataclasses").replace(grounding.QUICK, epochs=3))
    with pytest.raises(grounding.CacheError, match="differs in: digest, training"):
        other.open(rebuild=False)


def test_cached_net_of_another_spec_is_an_error(tmp_path):
    torch = pytest.importorskip("torch")
    cache = grounding.Cache(tmp_path, grounding.QUICK)
    cache.open(rebuild=False)
    net = grounding.standard_net(0)
    torch.save({"spec": grounding.standard_net(1).as_dict(), "digest": grounding.training_digest(grounding.QUICK)}, cache.path(net))
    with pytest.raises(grounding.CacheError, match="holds another net"):
        cache.load(net)


def test_missing_dataset_names_path_and_package(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"train-images-idx3-ubyte.gz is missing.*dataset-fashion-mnist"):
        grounding.load_fashion_mnist(tmp_path)


def test_design_uses_unique_seeds_and_reuses_standard_nets():
    plan = grounding.design(grounding.FULL, grounding.TESTS)
    nets = grounding.nets_of(plan)
    assert len(nets) == 50  # 10 standard + 2x5 random labels + 3x5 noise + 3x5 cue
    assert len({n.seed for n in nets}) == len(nets)
    label0 = [n.name for n in plan["label_randomization"]["groups"][0]]
    assert label0 == [f"std-s{k}" for k in range(5)]
    with pytest.raises(ValueError, match="at least 3 standard nets"):
        grounding.design(__import__("dataclasses").replace(grounding.QUICK, standard_nets=2), ["prediction_jsd"])


def test_cue_positions_and_training_set():
    data = {
        "train_images": np.zeros((50, 28, 28), np.uint8),
        "train_labels": np.arange(50, dtype=np.uint8) % 10,
    }
    settings = __import__("dataclasses").replace(grounding.QUICK, train_images=50)
    x, y = grounding.training_set(data, settings, grounding.NetSpec("c", 7, cue_prob=1.0))
    for img, label in zip(x, y):
        r, c = grounding.CUE_POSITIONS[label]
        assert img.sum() == 9 * 255 and np.all(img[r : r + 3, c : c + 3] == 255)
    _, y_rand = grounding.training_set(data, settings, grounding.NetSpec("r", 7, label_noise=1.0))
    assert np.mean(y_rand != y) > 0.6  # 100 % random labels (a tenth agree by chance)


def test_is_distance_rule():
    assert grounding.is_distance("procrustes") and grounding.is_distance("procrustes_angular")
    assert grounding.is_distance("soft_match") and grounding.is_distance("perm_procrustes") and grounding.is_distance("shape")
    assert not grounding.is_distance("cka_linear") and not grounding.is_distance("mms@0.5")
    assert not grounding.is_distance("one_to_one") and not grounding.is_distance("predictivity")
    # Its name holds a distance hint, but it is 1 - soft_match²/2: larger = more similar.
    assert not grounding.is_distance("soft_match_correlation")


def test_adapter_values_on_planted_pair():
    """The adapter's numbers are the engine's: mms from the thresholds equals max_match, the
    centred match is that of the mean-centred activations, and dead neurons count with
    dead='match'."""
    import spanmatch

    rng = np.random.default_rng(0)
    s = rng.standard_normal((500, 4))
    a = np.hstack([s, rng.standard_normal((500, 3)), np.zeros((500, 1))]) + 5.0
    a[:, -1] = 0.0  # a dead neuron
    b = np.hstack([s @ rng.standard_normal((4, 4)), rng.standard_normal((500, 2))]) + 5.0
    ad = grounding.SpanmatchAdapter()
    st = ad.stats(a, b)
    v = ad.values(st)
    for e in grounding.EPS:
        assert v[f"mms@{e:g}"] == st.max_match(e).mms
        assert v[f"mms_dead_match@{e:g}"] == st.max_match(e, dead="match").mms
    centred = ad.values(ad.stats(a - a.mean(0), b - b.mean(0)))
    assert v["mms_centred@0.25"] == pytest.approx(centred["mms@0.25"], abs=1e-12)
    # The 4 shared directions match once centred (the +5 offset is shared by every neuron, so
    # the uncentred spans share it too); the dead neuron is in the match only with dead="match".
    assert v["mms_centred@0.15"] == pytest.approx(8 / 14)
    assert v["mms_dead_match@0.15"] > v["mms@0.15"]
    assert v["cka_linear"] == pytest.approx(st.measures(["cka"])["cka_linear"])
    assert set(spanmatch._native.measure_names()) >= {"cka", "cca", "svcca", "pwcca", "procrustes"}
    # Settings of a measure (its alpha) are not scored; the neuron-matching measures are.
    assert not set(v) & grounding.SETTING_KEYS
    assert {"one_to_one", "soft_match", "soft_match_correlation", "perm_procrustes"} <= set(v)


# ------------------------------------------------------------------------------ end to end


@pytest.mark.slow
def test_quick_end_to_end(tmp_path):
    """``grounding.py --quick`` trains its 19 nets, scores them and writes the same JSON as the
    full run; a second run only scores (cached nets)."""
    pytest.importorskip("torch")
    pytest.importorskip("tqdm")
    if not grounding.DATA_DIR.is_dir():
        pytest.skip(f"Fashion-MNIST is not installed at {grounding.DATA_DIR} (apt-get install dataset-fashion-mnist)")
    out = tmp_path / "out" / "grounding.json"
    cmd = [sys.executable, str(BENCH / "grounding.py"), "--quick", "--cache", str(tmp_path / "cache"), "--out", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=900)
    res = json.loads(out.read_text())
    assert res["runtime"]["nets_trained"] == 19
    assert set(res["tests"]) == set(grounding.TESTS)
    for m, by_test in res["scores"].items():
        for t in grounding.TESTS:
            assert {"score", "lo", "hi", "n"} <= set(by_test[t]), (m, t)
    assert (out.parent / "similarities.json").is_file()
    first = out.read_text()
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
    again = json.loads(out.read_text())
    assert again["runtime"]["nets_trained"] == 0
    assert again["scores"] == json.loads(first)["scores"]  # deterministic
