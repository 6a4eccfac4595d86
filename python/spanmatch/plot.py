"""Figures of a comparison with matplotlib (``pip install spanmatch[plot]``).

``plot_result(result)`` (also ``result.plot()``): mms by layer, one line per ε, linear CKA
dashed. ``plot_result(result, kind="cross")`` (``result.plot(kind="cross")``): the layer x layer
heatmaps of ``spanmatch.torch.compare(..., cross=True)``, one panel per ε and one for CKA; rows
are model A's layers, columns model B's. ``plot_result(result, kind="neurons", layer=...,
inputs=dataset)``: what matched neurons respond to (:func:`plot_neurons`).
"""

from __future__ import annotations

import math
import os
from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = ["plot_result", "plot_layers", "plot_cross", "plot_neurons"]


def _pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "spanmatch.plot needs matplotlib: pip install 'spanmatch[plot]' (or matplotlib)"
        ) from e
    return plt


def _save(fig: Any, path: Optional[Union[str, "os.PathLike[str]"]], dpi: int) -> None:
    if path is not None:
        fig.savefig(os.fspath(path), dpi=dpi, bbox_inches="tight")


def plot_result(result: Any, kind: str = "layers", **kwargs: Any) -> Any:
    """Draws a :class:`spanmatch.Result`; returns the matplotlib figure.

    Args:
        result: the result of ``spanmatch.compare`` or ``spanmatch.torch.compare``.
        kind: ``"layers"`` (mms by layer, :func:`plot_layers`), ``"cross"`` (layer x layer
            heatmaps, :func:`plot_cross`; needs ``cross=True``) or ``"neurons"`` (what matched
            neurons respond to, :func:`plot_neurons`; needs ``top_inputs`` and ``inputs=``).
        **kwargs: passed on (``eps=``, ``path=``, ``title=``, ``layer=``, ``inputs=``, ...).
    """
    if kind == "layers":
        return plot_layers(result, **kwargs)
    if kind == "cross":
        return plot_cross(result, **kwargs)
    if kind == "neurons":
        return plot_neurons(result, **kwargs)
    raise ValueError(
        f"kind: '{kind}'; use 'layers' (mms by layer), 'cross' (layer x layer heatmaps) or 'neurons' "
        "(what matched neurons respond to)"
    )


def plot_layers(
    result: Any,
    eps: Optional[Sequence[float]] = None,
    cka: bool = True,
    ax: Any = None,
    title: Optional[str] = None,
    path: Optional[Union[str, "os.PathLike[str]"]] = None,
    dpi: int = 150,
    centered: bool = True,
    untrained: bool = True,
) -> Any:
    """mms by layer: one line per ε (markers); at the main ε the centred match (dash-dot
    purple diamonds) and the untrained baseline (dotted grey) as their own series when they were
    computed; linear CKA dashed black.

    Args:
        result: a :class:`spanmatch.Result`.
        eps: the ε values to draw (default: all of the result's).
        cka: also draw linear CKA (when the result has it).
        centered: also draw the centred match at the main ε (when computed).
        untrained: also draw the untrained baseline at the main ε (when given).
        ax: draw into this Axes (default: a new figure).
        title: the figure title (default: "A vs B").
        path: also save the figure there (PNG, PDF, SVG, ...).
    """
    plt = _pyplot()
    if not result.layers:
        raise ValueError("plot: the result has no layers")
    if ax is None:
        width = max(6.0, 0.45 * len(result.layers) + 2.5)
        fig, ax = plt.subplots(figsize=(width, 4.2))
    else:
        fig = ax.figure
    names = [l.name if not l.name_b else f"{l.name} / {l.name_b}" for l in result.layers]
    x = np.arange(len(names))
    all_eps = list(result.eps) or [m.eps for m in result.layers[0].matches]
    chosen = list(all_eps) if eps is None else [float(e) for e in eps]
    for e in chosen:
        if e not in all_eps:
            raise ValueError(f"plot: ε = {e} is not one of the result's ε values {all_eps}")
    cmap = plt.get_cmap("viridis")
    for n, e in enumerate(chosen):
        k = all_eps.index(e)
        y = [l.matches[k].mms for l in result.layers]
        color = cmap(n / max(1, len(chosen) - 1) * 0.9)
        ax.plot(x, y, marker="o", ms=4, lw=1.5, color=color, label=f"mms, ε = {e:g}")
    main = _main_eps(result, all_eps)
    if centered and main is not None and any(l.centered is not None for l in result.layers):
        k = all_eps.index(main)
        y = [np.nan if l.centered is None else l.centered[k].mms for l in result.layers]
        ax.plot(x, y, ls="-.", marker="D", ms=4, lw=1.5, color="#762a83", label=f"centred mms, ε = {main:g}")
    if untrained and main is not None and any(l.untrained is not None for l in result.layers):
        k = all_eps.index(main)
        y = [np.nan if l.untrained is None else float(l.untrained["mms"][k]) for l in result.layers]
        ax.plot(x, y, ls=":", marker="o", mfc="none", ms=4, lw=1.5, color="0.45", label=f"untrained, ε = {main:g}")
    if cka:
        vals = [l.measures.get("cka_linear") for l in result.layers]
        if any(v is not None for v in vals):
            y = [np.nan if v is None else float(v) for v in vals]
            ax.plot(x, y, ls="--", color="black", lw=1.5, label="linear CKA")
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=45 if len(names) > 4 else 0, ha="right" if len(names) > 4 else "center")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("layer")
    ax.set_ylabel("similarity")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", loc="best")
    d = result.to_dict()
    file_a, file_b = d.get("label_a"), d.get("label_b")
    if title is None and file_a and file_b:
        title = f"{file_a} vs {file_b}"
    if title:
        ax.set_title(title)
    fig.tight_layout()
    _save(fig, path, dpi)
    return fig


def _main_eps(result: Any, all_eps: Sequence[float]) -> Optional[float]:
    """The main ε of the result's options (0.5 when among the ε values, else the largest)."""
    if not all_eps:
        return None
    main = result.to_dict().get("options", {}).get("main_eps")
    if main is not None and main in all_eps:
        return float(main)
    return 0.5 if 0.5 in all_eps else float(max(all_eps))


def plot_cross(
    result: Any,
    eps: Optional[Sequence[float]] = None,
    cka: bool = True,
    ncols: Optional[int] = None,
    cmap: str = "magma",
    annotate: Optional[bool] = None,
    title: Optional[str] = None,
    path: Optional[Union[str, "os.PathLike[str]"]] = None,
    dpi: int = 150,
) -> Any:
    """Layer x layer heatmaps: one panel per ε (mms) and one for linear CKA.

    Rows are model A's layers, columns model B's, each axis labelled with its model's name (the
    rows' name and layer names on the first column of panels only, so that no label runs into
    the panel to its left). Pairs that cannot be compared (different rows) are left blank
    (grey).

    Args:
        result: a :class:`spanmatch.Result` with ``result.cross`` (``cross=True``), or a
            :class:`spanmatch.torch.CrossResult`.
        eps: the ε values to draw (default: all).
        cka: add the linear CKA panel.
        ncols: panels per row (default: up to 3).
        cmap: the colour map (values in [0, 1]).
        annotate: write the values in the cells (default: when both sides have at most 12
            layers).
        title: the figure title.
        path: also save the figure there.
    """
    plt = _pyplot()
    cross = getattr(result, "cross", None)
    if cross is None and hasattr(result, "layers_a"):
        cross = result
    if cross is None:
        raise ValueError(
            "plot: the result has no layer x layer part; run spanmatch.torch.compare(..., cross=True)"
        )
    all_eps = list(cross.eps)
    chosen = list(all_eps) if eps is None else [float(e) for e in eps]
    panels = []
    for e in chosen:
        if e not in all_eps:
            raise ValueError(f"plot: ε = {e} is not one of the result's ε values {all_eps}")
        panels.append((f"mms, ε = {e:g}", cross.mms[all_eps.index(e)]))
    if cka:
        panels.append(("linear CKA", cross.cka))
    if not panels:
        raise ValueError("plot: nothing to draw (no ε and cka=False)")
    na, nb = len(cross.layers_a), len(cross.layers_b)
    if ncols is None:
        ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    cell = 0.42
    pw = max(3.2, nb * cell + 1.8)
    ph = max(3.0, na * cell + 1.6)
    fig, axes = plt.subplots(nrows, ncols, figsize=(pw * ncols, ph * nrows), squeeze=False)
    if annotate is None:
        annotate = na <= 12 and nb <= 12
    base = plt.get_cmap(cmap)
    cm = base.with_extremes(bad="#d9d9d9") if hasattr(base, "with_extremes") else base.copy()
    if not hasattr(base, "with_extremes"):  # matplotlib < 3.4
        cm.set_bad("#d9d9d9")
    image = None
    for p, (name, m) in enumerate(panels):
        ax = axes[p // ncols][p % ncols]
        data = np.ma.masked_invalid(np.asarray(m, dtype=float))
        image = ax.imshow(data, vmin=0.0, vmax=1.0, cmap=cm, origin="upper", aspect="auto")
        ax.set_title(name)
        ax.set_xticks(np.arange(nb))
        ax.set_xticklabels(cross.layers_b, rotation=60, ha="right", fontsize="small")
        ax.set_yticks(np.arange(na))
        ax.set_xlabel(f"{cross.label_b}: layers")
        if p % ncols == 0:
            ax.set_yticklabels(cross.layers_a, fontsize="small")
            ax.set_ylabel(f"{cross.label_a}: layers")
        else:
            ax.set_yticklabels([])
        if annotate:
            for i in range(na):
                for j in range(nb):
                    v = m[i, j]
                    if np.isfinite(v):
                        ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                                color="white" if v < 0.6 else "black")
    for p in range(len(panels), nrows * ncols):
        axes[p // ncols][p % ncols].set_visible(False)
    fig.suptitle(title or f"{cross.label_a} vs {cross.label_b}: layer x layer")
    fig.tight_layout()
    if image is not None:
        fig.colorbar(image, ax=[a for row in axes for a in row if a.get_visible()], shrink=0.8)
    _save(fig, path, dpi)
    return fig


_KIND_TITLES = {"simple": "Simple match", "one_to_one": "One-to-one match", "unmatched": "Unmatched (contrast)"}


def group_title(group: Any, noun: str = "inputs") -> str:
    """The heading of one group of neurons, as in the report: what it is, its size and sine, and
    how many inputs appear in net A's strips, net B's and both (``group["shared"]``, counted by
    the engine for the report and this figure alike)."""
    kind = group["kind"]
    parts = [_KIND_TITLES.get(kind, kind)]
    if kind == "simple":
        parts.append(f"{group['size_a']} neurons of A + {group['size_b']} of B")
    if group.get("sine") is not None:
        parts.append(f"largest sine {group['sine']:.3f}")
    sh = group.get("shared")
    if sh and sh["a"] and sh["b"]:
        parts.append(f"{noun} shown {sh['a']} / {sh['b']}, in both: {sh['both']}")
    return " · ".join(parts)


def _mosaic(images: Sequence[np.ndarray], k: int, gap: int = 1) -> np.ndarray:
    """One strip: up to ``k`` CHW uint8 images side by side (padded to the largest), HWC float."""
    h = max(im.shape[1] for im in images)
    w = max(im.shape[2] for im in images)
    out = np.ones((h, k * (w + gap) - gap, 3), dtype=np.float64)
    for j, im in enumerate(images[:k]):
        x = im.astype(np.float64) / 255.0
        if x.shape[0] == 1:
            x = np.repeat(x, 3, axis=0)
        out[: x.shape[1], j * (w + gap) : j * (w + gap) + x.shape[2]] = np.moveaxis(x, 0, -1)
    return out


def plot_neurons(
    result: Any,
    layer: Union[str, int, None] = None,
    inputs: Any = None,
    tokenizer: Any = None,
    kinds: Sequence[str] = ("simple", "one_to_one", "unmatched"),
    seed: Optional[int] = None,
    title: Optional[str] = None,
    path: Optional[Union[str, "os.PathLike[str]"]] = None,
    dpi: int = 150,
) -> Any:
    """What matched neurons of one layer respond to: for the groups the report shows (the
    largest simple matches, the one-to-one matches with the smallest sines, and one unmatched
    neuron of each net for contrast; the engine chooses them), each neuron's top inputs in a
    row, strongest first, net A's neurons above net B's. Images come from ``inputs[i]``; token
    models show each top token in bold within the 8 tokens on each side (decoded with
    ``tokenizer``, else as ids). Each group's heading states how many inputs appear in A's
    strips, B's, and both, as the report does.

    Args:
        result: a :class:`spanmatch.Result` with ``top_inputs`` (``top_inputs=8`` when comparing)
            and simple matches (``simple=0.5``).
        layer: the layer's name or position (default: the first with groups to show).
        inputs: the inputs the comparison saw, in the same order (see
            :meth:`spanmatch.Result.report`).
        tokenizer: decodes token ids (a Hugging Face tokenizer, or a function id -> text).
        kinds: which groups to draw (``"simple"``, ``"one_to_one"``, ``"unmatched"``).
        seed: seed of the draw of the unmatched neurons (default: the result's seed).
        title: the figure title.
        path: also save the figure there.

    Raises:
        ValueError: a result without ``top_inputs`` or simple matches (the message says how to
            get them), no ``inputs``, ``inputs`` of the wrong length, an unknown layer.
    """
    from . import _views

    plt = _pyplot()
    sel = _views.selection(result, seed)
    if inputs is None:
        raise ValueError(
            "plot(kind='neurons') needs inputs=: the dataset the comparison saw, in the same order "
            "(inputs[i] an image, or token ids)"
        )
    names = [lv["layer"] for lv in sel["layers"]]
    if layer is None:
        chosen = next((lv for lv in sel["layers"] if lv["groups"]), sel["layers"][0])
    elif isinstance(layer, int):
        if not -len(result.layers) <= layer < len(result.layers):
            raise ValueError(f"layer: position {layer}, but the result has {len(result.layers)} layers")
        want = result.layers[layer].name
        if want not in names:
            raise ValueError(f"layer '{want}' has no top inputs or no simple matches; layers with them: {', '.join(names)}")
        chosen = sel["layers"][names.index(want)]
    else:
        if layer not in names:
            raise ValueError(f"layer '{layer}': no such layer with top inputs and simple matches; layers: {', '.join(names)}")
        chosen = sel["layers"][names.index(layer)]
    groups = [g for g in chosen["groups"] if g["kind"] in kinds]
    # Only this layer's inputs are read.
    keys = {
        (int(i), None if not n.get("positions") else int(p))
        for g in groups
        for n in g["a"] + g["b"]
        for i, p in zip(n["inputs"], n.get("positions") or [None] * len(n["inputs"]))
    }
    layer_sel = {"inputs": [{"index": i, "position": p} for i, p in sorted(keys, key=lambda t: (t[0], -1 if t[1] is None else t[1]))]}
    _views.check_inputs(result, inputs, _views.largest_index(sel))
    _, _, drawn = _views.gather(layer_sel, inputs, tokenizer)
    text = any(p is not None for _, p in keys)
    noun = "tokens" if text else "inputs"
    k = max([len(n["inputs"]) for g in groups for n in g["a"] + g["b"]] + [1])
    rows: List[Tuple[str, Any]] = []
    for g in groups:
        rows.append(("head", g))
        for net in ("a", "b"):
            if not g[net]:
                rows.append(("empty", net.upper()))
            for n in g[net]:
                rows.append((net.upper(), n))
    if not rows:
        rows.append(("none", None))
    heights = [0.32 if r[0] in ("head", "empty", "none") else (0.2 * k + 0.1 if text else 0.62) for r in rows]
    width = 11.0 if text else max(6.0, 0.62 * k + 1.6)
    height = sum(heights) * 1.15 + 0.6
    fig = plt.figure(figsize=(width, height))
    gs = fig.add_gridspec(
        len(rows), 1, height_ratios=heights, hspace=0.15, top=1.0 - 0.5 / height, bottom=0.1 / height,
        left=0.12 if not text else 0.1, right=0.98,
    )
    for r, (what, item) in enumerate(rows):
        ax = fig.add_subplot(gs[r, 0])
        ax.set_axis_off()
        if what == "head":
            ax.text(0.0, 0.2, group_title(item, noun), fontsize=9, fontweight="bold", transform=ax.transAxes)
        elif what == "empty":
            ax.text(0.0, 0.5, f"net {item}: every live neuron is matched", fontsize=8, color="0.4", transform=ax.transAxes)
        elif what == "none":
            ax.text(0.0, 0.5, "no match at this ε in this layer", fontsize=9, transform=ax.transAxes)
        else:
            n = item
            thr = "none" if n.get("threshold") is None else f"{n['threshold']:.3f}"
            label = f"{what} #{n['neuron']}\nε* {thr}"
            positions = n.get("positions") or [None] * len(n["inputs"])
            if text:
                ax.text(-0.01, 1.0, label, fontsize=7.5, ha="right", va="top", family="monospace", transform=ax.transAxes)
                for j, (i, p) in enumerate(zip(n["inputs"], positions)):
                    before, token, after = drawn[(int(i), None if p is None else int(p))]
                    y = 1.0 - (j + 0.5) / max(1, k)
                    # A space when nothing precedes: the token is placed after this text's box.
                    t1 = ax.text(0.0, y, "".join(before).replace("\n", " ") or " ", fontsize=7, family="monospace", va="center", transform=ax.transAxes)
                    t2 = ax.annotate(token.replace("\n", " "), xy=(1, 0), xycoords=t1, va="bottom", fontsize=7, family="monospace",
                                     fontweight="bold", bbox=dict(boxstyle="square,pad=0.05", fc="#ffe08a", ec="none"))
                    ax.annotate("".join(after).replace("\n", " "), xy=(1, 0), xycoords=t2, va="bottom", fontsize=7, family="monospace")
            else:
                ims = [drawn[(int(i), None)][0] for i in n["inputs"]]
                if ims:
                    strip = _mosaic(ims, k)
                    ax.imshow(strip, interpolation="nearest", aspect="equal")
                    ax.set_xlim(-0.5, strip.shape[1] - 0.5)
                ax.text(-0.01, 0.5, label, fontsize=7.5, ha="right", va="center", family="monospace", transform=ax.transAxes)
    eps = sel.get("eps")
    fig.suptitle(
        title or f"{chosen['layer']}: what matched neurons respond to (ε = {eps:g}; top {k} {noun} per neuron, A above B)",
        fontsize=10,
    )
    _save(fig, path, dpi)
    return fig
