"""spanmatch.plot: the figures have the panels, lines and labels they should (Agg backend)."""

from __future__ import annotations

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import spanmatch  # noqa: E402
from spanmatch._cross import CrossResult  # noqa: E402

from conftest import planted  # noqa: E402


@pytest.fixture
def result():
    acts_a, acts_b = {}, {}
    for k, name in enumerate(["conv1", "conv2", "fc"]):
        a, b = planted(rows=200, shared=4, private=3, noise=0.02 * k, seed=k)
        acts_a[name], acts_b[name] = a, b
    r = spanmatch.compare(acts_a, acts_b, eps=(0.1, 0.3, 0.5))
    layers_a = ["conv1", "conv2", "fc"]
    layers_b = ["c1", "c2", "c3", "out"]
    rng = np.random.default_rng(0)
    mms = rng.uniform(0, 1, size=(3, 3, 4))
    mms[:, 0, 3] = np.nan
    r.cross = CrossResult(
        layers_a=layers_a,
        layers_b=layers_b,
        eps=(0.1, 0.3, 0.5),
        mms=mms,
        cka=rng.uniform(0, 1, size=(3, 4)),
        cka_debiased=rng.uniform(0, 1, size=(3, 4)),
        max_epsilon=rng.uniform(0, 1, size=(3, 4)),
        rows=np.full((3, 4), 200),
        label_a="ResNet (seed 0)",
        label_b="ResNet (seed 1)",
    )
    yield r
    plt.close("all")


def image_axes(fig):
    return [ax for ax in fig.axes if ax.images and ax.get_visible() and ax.get_label() != "<colorbar>"]


def test_cross_heatmaps(result, tmp_path):
    path = tmp_path / "cross.png"
    fig = result.plot(kind="cross", path=path)
    panels = image_axes(fig)
    assert len(panels) == 4  # three ε and CKA
    assert [ax.get_title() for ax in panels] == ["mms, ε = 0.1", "mms, ε = 0.3", "mms, ε = 0.5", "linear CKA"]
    for ax in panels:
        assert [t.get_text() for t in ax.get_yticklabels()] == ["conv1", "conv2", "fc"]
        assert [t.get_text() for t in ax.get_xticklabels()] == ["c1", "c2", "c3", "out"]
        assert "ResNet (seed 0)" in ax.get_ylabel() and "ResNet (seed 1)" in ax.get_xlabel()
    # The CKA panel shows the CKA matrix; NaN entries are masked (blank).
    np.testing.assert_allclose(np.asarray(panels[3].images[0].get_array()), result.cross.cka)
    assert panels[0].images[0].get_array().mask[0, 3]
    assert path.stat().st_size > 10_000
    assert plt.imread(str(path)).ndim == 3


def test_cross_subset_and_no_cka(result):
    fig = result.plot(kind="cross", eps=[0.3], cka=False)
    assert len(image_axes(fig)) == 1
    with pytest.raises(ValueError, match="not one of"):
        result.plot(kind="cross", eps=[0.7])


def test_layers_figure(result, tmp_path):
    path = tmp_path / "layers.png"
    fig = result.plot(path=path)
    (ax,) = fig.axes
    labels = [l.get_label() for l in ax.get_lines()]
    # The centred match (on by default) is its own series at the main ε (0.5).
    assert labels == ["mms, ε = 0.1", "mms, ε = 0.3", "mms, ε = 0.5", "centred mms, ε = 0.5", "linear CKA"]
    assert ax.get_lines()[-1].get_linestyle() == "--"
    assert ax.get_lines()[3].get_linestyle() == "-."
    np.testing.assert_allclose(ax.get_lines()[1].get_ydata(), [l.mms[1] for l in result.layers])
    np.testing.assert_allclose(ax.get_lines()[3].get_ydata(), [l.centered[2].mms for l in result.layers])
    np.testing.assert_allclose(ax.get_lines()[4].get_ydata(), [l.cka for l in result.layers])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["conv1", "conv2", "fc"]
    assert path.stat().st_size > 10_000


def test_errors(result):
    with pytest.raises(ValueError, match="kind"):
        result.plot(kind="pie")
    result.cross = None
    with pytest.raises(ValueError, match="cross=True"):
        result.plot(kind="cross")
