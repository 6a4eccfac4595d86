"""Step 7, the analysis: the finished statistics go to the engine, once.

:func:`analyse` is the only call from the torch front into ``spanmatch._api.analyse`` (the one
analysis of every front, ``spanmatch_engine::analysis::analyse_pair``): the per-layer pairs with
every control (centred, rotation null, bootstrap intervals from the chunks' statistics, simple
matches, the untrained baseline and the verdict) and the layer x layer entries (every requested
measure, no controls) both go through it.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from .. import _api
from .._api import Stats
from .._options import Options
from .._result import Result

#: Measure fields that are settings of a measure, not values (left out of the cross matrices).
_SETTINGS = ("predictivity_alpha", "shape_alpha")


def analyse(
    stats: Mapping[str, Stats],
    options: Options,
    *,
    names_b: Optional[Mapping[str, str]] = None,
    shapes: Optional[Mapping[str, Tuple[Sequence[int], Sequence[int]]]] = None,
    label_a: str = "a",
    label_b: str = "b",
    chunks: Optional[Mapping[str, Sequence[Stats]]] = None,
    baseline: Optional[Mapping[str, Stats]] = None,
    baseline_chunks: Optional[Mapping[str, Sequence[Stats]]] = None,
    extras: Optional[Mapping[str, Mapping[str, Any]]] = None,
    progress: Optional[Callable[[str, int, int], Any]] = None,
    provenance: Optional[Mapping[str, Any]] = None,
) -> Result:
    """The :class:`Result` of finished statistics: one layer per entry of ``stats``.

    ``chunks``: per layer, the statistics of consecutive chunks of the inputs (the bootstrap);
    ``baseline`` (and ``baseline_chunks``): the untrained pair's statistics per layer;
    ``extras``: per layer, blocks added to the layer's record (``top_inputs``, ``pool``);
    ``progress``: the simple matches' progress callback (``_api.analyse``);
    ``provenance``: added to the result's provenance (``inputs``: inputs seen over every rank).
    """
    return _api.analyse(
        stats,
        options,
        names_b=names_b,
        shapes=shapes,
        label_a=label_a,
        label_b=label_b,
        chunks=chunks or None,
        baseline=baseline or None,
        baseline_chunks=baseline_chunks or None,
        extras=extras or None,
        front="torch",
        progress=progress,
        provenance=provenance,
    )


def cross_options(options: Options) -> Options:
    """The options of the layer x layer entries: the maximum match at every ε and every
    requested measure (linear CKA always), no controls (centred, null, bootstrap, simple
    matches, curve)."""
    measures = tuple(dict.fromkeys(("cka",) + tuple(options.measures)))
    return options.replace(
        measures=measures, center=False, null=None, bootstrap=None, simple=None, curve=False, witnesses=None
    )


def analyse_cross(
    stats: Mapping[str, Stats], options: Options
) -> Dict[str, Tuple[List[float], float, Dict[str, float]]]:
    """Layer x layer entries: per name, (mms at each ε, max ε, every scalar measure field, e.g.
    ``cka_linear``, ``cka_linear_debiased``, ``one_to_one``; NaN where undefined)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = analyse(stats, cross_options(options))
    out: Dict[str, Tuple[List[float], float, Dict[str, float]]] = {}
    for layer in res.layers:
        values = {
            k: _num(v)
            for k, v in layer.measures.items()
            if k not in _SETTINGS and (v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)))
        }
        for k in ("cka_linear", "cka_linear_debiased"):
            values.setdefault(k, math.nan)
        out[layer.name] = ([float(m) for m in layer.mms], float(layer.max_epsilon), values)
    return out


def _num(v: Any) -> float:
    return math.nan if v is None else float(v)
