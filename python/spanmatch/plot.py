"""Figures of a comparison with matplotlib (``pip install spanmatch[plot]``).

``plot_result(result)`` (also ``result.plot()``): mms by layer, one line per ε, linear CKA
dashed. ``plot_result(result, kind="cross")`` (``result.plot(kind="cross")``): the layer x layer
heatmaps of ``spanmatch.torch.compare(..., cross=True)``, one panel per ε and one for CKA; rows
are model A's layers, columns model B's.
"""

from __future__ import annotations

import math
import os
from typing import Any, Optional, Sequence, Union

import numpy as np

__all__ = ["plot_result", "plot_layers", "plot_cross"]


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
        kind: ``"layers"`` (mms by layer, :func:`plot_layers`) or ``"cross"`` (layer x layer
            heatmaps, :func:`plot_cross`; needs ``cross=True``).
        **kwargs: passed on (``eps=``, ``path=``, ``title=``, ...).
    """
    if kind == "layers":
        return plot_layers(result, **kwargs)
    if kind == "cross":
        return plot_cross(result, **kwargs)
    raise ValueError(f"kind: '{kind}'; use 'layers' (mms by layer) or 'cross' (layer x layer heatmaps)")


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

    Rows are model A's layers, columns model B's, each axis labelled with its model's name.
    Pairs that cannot be compared (different rows) are left blank (grey).

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
        ax.set_yticklabels(cross.layers_a, fontsize="small")
        ax.set_xlabel(f"{cross.label_b}: layers")
        ax.set_ylabel(f"{cross.label_a}: layers")
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
