"""The report of any result (``Result.report``), what matched neurons respond to
(``top_inputs``, ``plot(kind="neurons")``), the notebook view and provenance."""

from __future__ import annotations

import base64
import glob
import io
import json
import re
import time

import numpy as np
import pytest

import spanmatch
from spanmatch import _topk, _views

from conftest import planted

PIL = pytest.importorskip("PIL.Image")


def _decode_png(data: str) -> np.ndarray:
    """A base64 PNG as an array HW (grey) or HWC (RGB)."""
    return np.asarray(PIL.open(io.BytesIO(base64.b64decode(data))))


def _conv_pair(n: int = 240, seed: int = 0):
    """Conv-like activations [N, C, 4, 4] of two nets with the same channels in another order
    (plus a little noise) and one private channel each: one-to-one simple matches."""
    rng = np.random.default_rng(seed)
    base = np.maximum(rng.standard_normal((n, 5, 4, 4)), 0)
    perm = [3, 0, 4, 1, 2]
    a = np.concatenate([base, np.maximum(rng.standard_normal((n, 1, 4, 4)), 0)], axis=1)
    b = np.concatenate([base[:, perm] + 0.01 * rng.standard_normal(base.shape), np.maximum(rng.standard_normal((n, 1, 4, 4)), 0)], axis=1)
    return a.astype(np.float32), b.astype(np.float32)


@pytest.fixture(scope="module")
def images_result():
    a, b = _conv_pair()
    fa, fb = planted(rows=240, shared=4, private=2, noise=0.01, seed=3)
    r = spanmatch.compare({"conv": a, "fc": fa}, {"conv": b, "fc": fb}, top_inputs=5, simple=0.5)
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(240, 3, 10, 12), dtype=np.uint8)
    return r, images


# -- top inputs of the numpy front ------------------------------------------------------------


def test_top_inputs_equal_brute_force_with_ties_by_lower_index():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 4, size=(30, 3, 2, 2)).astype(np.float32)  # many ties
    side, what = _topk.top_inputs_side(x, 6)
    assert what == "max over positions"
    resp = x.reshape(30, 3, -1).max(axis=2)
    for c in range(3):
        # Brute force: sort (−response, index) pairs.
        want = sorted(range(30), key=lambda i: (-resp[i, c], i))[:6]
        assert side["indices"][c] == want
        assert side["values"][c] == [float(resp[i, c]) for i in want]
    # Channels last gives the same, and dense layers rank the activation itself.
    side2, _ = _topk.top_inputs_side(np.moveaxis(x, 1, -1), 6, layout="nhwc")
    assert side2["indices"] == side["indices"]
    dense, what = _topk.top_inputs_side(resp, 6)
    assert what == "activation" and dense["indices"] == side["indices"]
    # Fewer inputs than k: -1 and None.
    few, _ = _topk.top_inputs_side(x[:2], 4)
    assert few["indices"][0][2:] == [-1, -1] and few["values"][0][2:] == [None, None]


def test_token_positions_are_the_first_maximum():
    x = np.zeros((3, 5, 2), dtype=np.float32)  # [N, T, C], channels last
    x[1, 3, 0] = 2.0
    x[1, 4, 0] = 2.0  # a tie within the input: the first position
    x[2, 0, 0] = 1.0
    x[0, 2, 1] = 5.0
    rec = _topk.top_inputs_record(x, x, 2, layout="nhwc")
    assert rec["a"]["indices"][0] == [1, 2] and rec["a"]["positions"][0] == [3, 0]
    assert rec["a"]["indices"][1][0] == 0 and rec["a"]["positions"][1][0] == 2
    # Images (NCHW) keep no positions.
    assert "positions" not in _topk.top_inputs_record(x[:, None], x[:, None], 2)["a"]


def test_compare_records_top_inputs_and_inputs_seen(images_result):
    r, _ = images_result
    top = r["conv"].top_inputs
    assert top["k"] == 5 and top["response"] == "max over positions"
    assert np.asarray(top["a"]["indices"]).shape == (6, 5)
    assert r.to_dict()["provenance"]["inputs"] == 240
    with pytest.raises(ValueError, match="top_inputs: needs the activations in memory"):
        spanmatch.compare("a.npz", "b.npz", top_inputs=3)


# -- the report --------------------------------------------------------------------------------


def test_report_writes_the_page_results_and_figures(images_result, tmp_path):
    r, images = images_result
    dataset = [(images[i], i % 3) for i in range(len(images))]

    class Data(list):
        classes = ["cat", "dog", "emu"]

    page = r.report(tmp_path / "rep", inputs=Data(dataset))
    assert page == tmp_path / "rep" / "report.html"
    names = sorted(p.name for p in (tmp_path / "rep").iterdir())
    assert names == ["mms_by_layer.png", "profiles.png", "report.html", "results.json", "simple_sizes.png"]
    html = page.read_text()
    assert html.count("<svg") == 3 and "What matched neurons respond to" in html
    # Figure 2 is drawn from the thresholds when no profile curve was stored.
    assert "no profiles in results" not in html
    assert html.count('class="strip"') > 0 and 'class="vg simple"' in html
    assert "cat" in html and "dog" in html
    # results.json: the result plus the views, each input once with its image (exact pixels).
    d = json.loads((tmp_path / "rep" / "results.json").read_text())
    nv = d.pop("neuron_views")
    assert d["comparisons"] == r.to_dict()["comparisons"]
    assert nv["class_names"] == ["cat", "dog", "emu"] and nv["image_shape"] == [3, 10, 12]
    shown = {i for lv in nv["layers"] for g in lv["groups"] for n in g["a"] + g["b"] for i in n["inputs"]}
    assert sorted(shown) == [v["index"] for v in nv["inputs"]]
    for v in nv["inputs"]:
        assert v["label"] == v["index"] % 3
        np.testing.assert_array_equal(_decode_png(v["png"]), np.moveaxis(images[v["index"]], 0, -1))
    # The strips show each neuron's top inputs from the record.
    conv = next(lv for lv in nv["layers"] if lv["layer"] == "conv")
    n0 = conv["groups"][0]["a"][0]
    assert n0["inputs"] == r["conv"].top_inputs["a"]["indices"][n0["neuron"]]
    # It reads back, and `spanmatch report` renders it again (same views).
    back = spanmatch.Result.from_json(tmp_path / "rep" / "results.json")
    assert back.to_dict()["neuron_views"] == nv
    again = back.report(tmp_path / "again", png=False)
    assert again.read_text().count('class="strip"') == html.count('class="strip"')


def test_report_counts_equal_the_engine_selection(images_result, tmp_path):
    """The report's "images shown a / b, in both: c" are the engine's counts, which the
    figure states too; and they are right (brute force over the strips)."""
    r, images = images_result
    sel = _views.selection(r)
    html = r.report(tmp_path, inputs=images, png=False).read_text()
    stated = [tuple(map(int, m)) for m in re.findall(r"images shown (\d+) / (\d+), in both: (\d+)", html)]
    want = []
    for lv in sel["layers"]:
        for g in lv["groups"]:
            sa = {i for n in g["a"] for i in n["inputs"]}
            sb = {i for n in g["b"] for i in n["inputs"]}
            assert g["shared"] == {"a": len(sa), "b": len(sb), "both": len(sa & sb)}
            if sa and sb:
                want.append((len(sa), len(sb), len(sa & sb)))
    assert stated == want and len(want) > 0


def test_report_of_tokens_shows_contexts(tmp_path):
    rng = np.random.default_rng(0)
    n, t = 40, 30
    ids = rng.integers(0, 500, size=(n, t))
    base = rng.standard_normal((n, t, 4)).astype(np.float32)
    r = spanmatch.compare({"mlp": base}, {"mlp": base[:, :, ::-1].copy()}, layout="nhwc", top_inputs=3, simple=0.5)

    class Tok:
        def decode(self, tokens):
            return f" w{tokens[0]}"

    html = r.report(tmp_path / "tok", inputs=[{"input_ids": x} for x in ids], tokenizer=Tok(), png=False).read_text()
    nv = json.loads((tmp_path / "tok" / "results.json").read_text())["neuron_views"]
    assert nv["image_shape"] == [0, 0, 0] and all("png" not in v for v in nv["inputs"])
    top = r["mlp"].top_inputs["a"]
    i, p = top["indices"][0][0], top["positions"][0][0]
    ctx = next(v["context"] for v in nv["inputs"] if (v["index"], v["position"]) == (i, p))
    assert ctx["token"] == f" w{ids[i, p]}"
    assert ctx["before"] == [f" w{v}" for v in ids[i, max(0, p - 8) : p]]
    assert ctx["after"] == [f" w{v}" for v in ids[i, p + 1 : p + 9]]
    assert f"<b> w{ids[i, p]}</b>" in html and "tokens shown" in html
    # Without a tokenizer: the ids.
    html = r.report(tmp_path / "ids", inputs=ids, png=False).read_text()
    assert f"<b>{ids[i, p]}</b>" in html


def test_image_inputs_of_every_kind():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(3, 5, 7), dtype=np.uint8)
    want = rgb
    cases = [
        rgb,  # numpy CHW
        np.moveaxis(rgb, 0, -1),  # numpy HWC
        torch.from_numpy(rgb.astype(np.float32) / 255.0),  # tensor CHW in [0, 1]
        (torch.from_numpy(rgb), 4),  # tuple with a label
        PIL.fromarray(np.moveaxis(rgb, 0, -1)),  # PIL RGB
        {"image": PIL.fromarray(np.moveaxis(rgb, 0, -1)), "label": 4},  # a dict (HF datasets)
    ]
    for item in cases:
        pixels, label = _views.read_image(item, 0)
        np.testing.assert_array_equal(pixels, want)
        assert label in (None, 4)
    grey, _ = _views.read_image(torch.zeros(6, 6), 0)
    assert grey.shape == (1, 6, 6)
    # Normalised floats are stretched to 0..255.
    norm, _ = _views.read_image(np.array([[-1.0, 0.0], [1.0, 3.0]]), 0)
    assert norm[0].tolist() == [[0, 64], [128, 255]]
    with pytest.raises(ValueError, match="5 channels"):
        _views.read_image(np.zeros((5, 6, 6)), 7)


def test_large_images_become_thumbnails(tmp_path):
    a, b = _conv_pair(n=60)
    r = spanmatch.compare(a, b, top_inputs=2, simple=0.5)
    big = np.zeros((60, 3, 200, 130), dtype=np.uint8)
    big[:, 0, :100] = 255  # the top half red
    r.report(tmp_path, inputs=big, png=False)
    nv = json.loads((tmp_path / "results.json").read_text())["neuron_views"]
    img = _decode_png(nv["inputs"][0]["png"])
    assert img.shape == (50, 33, 3)  # 200 x 130 reduced by 4 (⌈200 / 64⌉)
    assert img[:25, :, 0].min() == 255 and img[25:, :, 0].max() == 0


# -- bad input ---------------------------------------------------------------------------------


def test_inputs_of_the_wrong_length(images_result, tmp_path):
    r, images = images_result
    with pytest.raises(ValueError, match="240"):
        r.report(tmp_path, inputs=images[:100])
    with pytest.raises(ValueError, match="241 inputs given, but the comparison saw 240"):
        r.report(tmp_path, inputs=np.concatenate([images, images[:1]]))


def test_inputs_without_top_inputs(tmp_path):
    a, b = planted(rows=50)
    r = spanmatch.compare(a, b, simple=0.5)
    with pytest.raises(ValueError, match=r"no layer of these results has top inputs.*top_inputs=8"):
        r.report(tmp_path, inputs=np.zeros((50, 4, 4)))
    with pytest.raises(ValueError, match="top_inputs=8"):
        r.plot(kind="neurons", inputs=np.zeros((50, 4, 4)))
    # Without inputs the report is written, without strips.
    html = r.report(tmp_path / "plain", png=False).read_text()
    assert 'class="strip"' not in html and "Simple matches" in html
    # top inputs without simple matches: the message says so.
    r = spanmatch.compare(a, b, top_inputs=3)
    with pytest.raises(ValueError, match="simple=0.5"):
        r.report(tmp_path, inputs=np.zeros((50, 4, 4)))
    with pytest.warns(UserWarning, match="no inputs= were given"):
        r.report(tmp_path / "warn", png=False)


def test_unknown_schema_version_is_named(images_result, tmp_path):
    r, _ = images_result
    d = r.to_dict()
    d["schema_version"] = 9
    path = tmp_path / "future.json"
    path.write_text(json.dumps(d))
    with pytest.raises(ValueError, match="schema_version 9 is not supported"):
        spanmatch.Result.from_json(path)


# -- the notebook view -------------------------------------------------------------------------


def test_repr_html_has_the_figure_and_the_verdict_column():
    a, b = planted(rows=300, noise=0.05, seed=1)
    a0, b0 = planted(rows=300, noise=0.5, seed=2)
    plain = spanmatch.compare(a, b)
    html = plain._repr_html_()
    assert html.count("<svg") == 1 and "Maximum match similarity" in html
    assert "verdict" not in html
    controlled = spanmatch.compare(a, b, baseline=(a0, b0), null="rotate")
    html = controlled._repr_html_()
    assert "verdict" in html and controlled["layer"].verdict in html
    assert "untrained" in html  # the baseline's series in the figure


def test_repr_html_is_fast_and_computes_nothing():
    layers = {f"l{i}": planted(rows=200, shared=20, private=10, seed=i) for i in range(15)}
    r = spanmatch.compare({k: v[0] for k, v in layers.items()}, {k: v[1] for k, v in layers.items()})
    before = r.to_dict()
    t = time.perf_counter()
    html = r._repr_html_()
    assert time.perf_counter() - t < 1.0
    assert r.to_dict() == before and "simple" not in json.dumps(before["comparisons"])
    assert html.count("l14") >= 2  # in the figure and in the table


# -- the neurons figure -------------------------------------------------------------------------


def test_plot_neurons_shows_the_report_groups(images_result):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r, images = images_result
    sel = _views.selection(r)
    conv = next(lv for lv in sel["layers"] if lv["layer"] == "conv")
    fig = r.plot(kind="neurons", layer="conv", inputs=images)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    heads = [t for t in texts if t.startswith(("Simple match", "One-to-one", "Unmatched"))]
    assert heads == [spanmatch.plot.group_title(g) for g in conv["groups"]]
    assert any("in both:" in h for h in heads)
    # Net A's neurons above net B's, in each group.
    labels = [t.split("\n")[0] for t in texts if re.match(r"[AB] #\d+", t)]
    g0 = conv["groups"][0]
    assert labels[: len(g0["a"]) + len(g0["b"])] == [f"A #{n['neuron']}" for n in g0["a"]] + [f"B #{n['neuron']}" for n in g0["b"]]
    # Each strip is the neuron's top images, side by side.
    strips = [ax.images[0].get_array() for ax in fig.axes if ax.images]
    first = np.concatenate([np.moveaxis(images[i], 0, -1) / 255.0 for i in g0["a"][0]["inputs"]], axis=1)
    assert strips[0].shape[0] == 10
    np.testing.assert_allclose(strips[0][:, :12], first[:, :12])
    plt.close(fig)
    with pytest.raises(ValueError, match="needs inputs="):
        r.plot(kind="neurons", layer="conv")
    with pytest.raises(ValueError, match="no such layer"):
        r.plot(kind="neurons", layer="nope", inputs=images)


# -- provenance --------------------------------------------------------------------------------


def test_provenance_is_recorded_and_extended():
    a, b = planted(rows=80)
    r = spanmatch.compare(
        a, b, provenance={"datasets": {"my-data": "ab" * 32}, "model": "resnet18", "inputs": 80}
    )
    p = r.to_dict()["provenance"]
    assert p["inputs"] == 80 and p["model"] == "resnet18"
    assert p["datasets"] == [{"name": "my-data", "sha256": "ab" * 32}]
    assert p["seeds"]["seed"] == 0 and "sse2" in p["cpu"]["features"]
    # The L1 data cache decides how CPU training rounds (docs/decisions.md): recorded where Linux
    # says it, as "<size>, <ways>-way".
    l1 = [d for d in glob.glob("/sys/devices/system/cpu/cpu0/cache/index*") if open(f"{d}/level").read().strip() == "1" and open(f"{d}/type").read().strip() == "Data"]
    if l1:
        size = open(f"{l1[0]}/size").read().strip()
        assert p["cpu"]["l1d"].startswith(size), p["cpu"]
    # It survives the round trip through the engine.
    assert spanmatch.Result(json.loads(json.dumps(r.to_dict()))).to_dict()["provenance"] == p
    with pytest.raises(ValueError, match="'cpu' is recorded by spanmatch"):
        spanmatch.compare(a, b, provenance={"cpu": "mine"})
    with pytest.raises(ValueError, match="datasets must be"):
        spanmatch.compare(a, b, provenance={"datasets": ["x"]})
