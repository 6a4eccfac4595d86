"""Step 7, the analysis: the finished statistics go to the engine, once.

:func:`analyse` is the only call from the torch front into ``spanmatch._api.analyse``: the
per-layer pairs with every control (centred, rotation null, bootstrap intervals from the
chunks' statistics, simple matches, the untrained baseline) and the layer x layer entries
(mms and CKA only) both go through it.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from .. import _api
from .._api import Stats
from .._result import Result


@dataclass(frozen=True)
class Settings:
    """The analysis options of one comparison (the fields of ``spanmatch.Options`` the torch
    front passes on)."""

    eps: Tuple[float, ...]
    measures: Tuple[str, ...] = ("cka",)
    dead: str = "drop"
    tol: Optional[float] = None
    simple: Optional[float] = None
    center: bool = True
    null: Optional[str] = None
    null_draws: int = 10
    seed: int = 0
    bootstrap: Optional[int] = None
    extra: Dict[str, Any] = field(default_factory=dict)


def analyse(
    stats: Mapping[str, Stats],
    settings: Settings,
    *,
    names_b: Optional[Mapping[str, str]] = None,
    shapes: Optional[Mapping[str, Tuple[Sequence[int], Sequence[int]]]] = None,
    label_a: str = "a",
    label_b: str = "b",
    chunks: Optional[Mapping[str, Sequence[Stats]]] = None,
    baseline: Optional[Mapping[str, Stats]] = None,
    baseline_chunks: Optional[Mapping[str, Sequence[Stats]]] = None,
    extras: Optional[Mapping[str, Mapping[str, Any]]] = None,
) -> Result:
    """The :class:`Result` of finished statistics: one layer per entry of ``stats``.

    ``chunks``: per layer, the statistics of consecutive chunks of the inputs (the bootstrap);
    ``baseline`` (and ``baseline_chunks``): the untrained pair's statistics per layer;
    ``extras``: per layer, blocks added to the layer's record (``top_inputs``, ``pool``).
    """
    result = _api.analyse(
        stats,
        eps=settings.eps,
        measures=settings.measures,
        dead=settings.dead,
        tol=settings.tol,
        simple=settings.simple,
        names_b=names_b,
        shapes=shapes,
        label_a=label_a,
        label_b=label_b,
        center=settings.center,
        null=settings.null,
        null_draws=settings.null_draws,
        seed=settings.seed,
        bootstrap=settings.bootstrap,
        chunks=chunks,
    )
    if baseline is None and not extras:
        return result
    # Until the engine takes the baseline statistics itself: the untrained pair analysed on its
    # own (mms at every ε, CKA, centred, intervals), attached to each layer's record.
    report = result.to_dict()
    if baseline is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            untrained = _api.analyse(
                baseline,
                eps=settings.eps,
                measures=("cka",),
                dead=settings.dead,
                tol=settings.tol,
                names_b=names_b,
                shapes=shapes,
                center=settings.center,
                seed=settings.seed,
                bootstrap=settings.bootstrap,
                chunks=baseline_chunks,
            )
        for rec, u in zip(report["layers"], untrained.layers):
            block: Dict[str, Any] = {
                "mms": [float(m) for m in u.mms],
                "max_epsilon": _num(u.max_epsilon),
                "cka_linear": _num(u.measures.get("cka_linear")),
                "cka_linear_debiased": _num(u.measures.get("cka_linear_debiased")),
            }
            if u.centered is not None:
                block["centered_mms"] = [float(m.mms) for m in u.centered]
            if u.intervals is not None:
                block["intervals"] = u.intervals
            rec["untrained"] = block
            rec["trained_minus_untrained"] = [float(m["mms"]) - v for m, v in zip(rec["matches"], block["mms"])]
    for rec in report["layers"]:
        rec.update(dict((extras or {}).get(rec["name"], {})))
    return Result(report, result.table(), result.warnings)


def _num(v: Any) -> Optional[float]:
    if v is None:
        return None
    f = float(v)
    return None if math.isnan(f) else f


def analyse_cross(
    stats: Mapping[str, Stats], settings: Settings
) -> Dict[str, Tuple[List[float], float, float, float]]:
    """Layer x layer entries: per name, (mms at each ε, max ε, linear CKA, debiased CKA)."""
    plain = Settings(eps=settings.eps, dead=settings.dead, tol=settings.tol, center=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = analyse(stats, plain)
    out: Dict[str, Tuple[List[float], float, float, float]] = {}
    for layer in res.layers:
        cka = layer.measures.get("cka_linear")
        cka_d = layer.measures.get("cka_linear_debiased")
        out[layer.name] = (
            [float(m) for m in layer.mms],
            float(layer.max_epsilon),
            math.nan if cka is None else float(cka),
            math.nan if cka_d is None else float(cka_d),
        )
    return out
