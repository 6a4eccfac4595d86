"""Result objects: what a comparison found, with numpy arrays, the one results schema
(docs/results-schema.md) and the CLI's tables."""

from __future__ import annotations

import copy
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from . import _native

__all__ = ["MaxMatch", "SimpleMatch", "Profile", "LayerResult", "Result"]


def _indices(values: Sequence[int]) -> np.ndarray:
    return np.asarray(list(values), dtype=np.int64)


def _thresholds(values: Sequence[Optional[float]]) -> np.ndarray:
    return np.asarray([math.nan if v is None else float(v) for v in values], dtype=np.float64)


@dataclass(frozen=True)
class MaxMatch:
    """The maximum ε-approximate match of a layer pair at one ε.

    Attributes:
        eps: the tolerance ε (sine of the largest angle allowed between a neuron's activation
            vector and the span of the other net's matched neurons).
        a: indices of net A's neurons in the match (increasing).
        b: indices of net B's neurons in the match (increasing).
        mms: maximum match similarity, ``(len(a) + len(b)) / (neurons_a + neurons_b)``.
    """

    eps: float
    a: np.ndarray
    b: np.ndarray
    mms: float

    def __repr__(self) -> str:
        return f"MaxMatch(eps={self.eps}, mms={self.mms:.4f}, a={self.a.tolist()}, b={self.b.tolist()})"


@dataclass(frozen=True)
class SimpleMatch:
    """A simple match: a group of neurons of each net that match and contain no smaller match
    with the same witness neuron.

    Attributes:
        a: indices of net A's neurons.
        b: indices of net B's neurons.
        count: how many (neuron, order) runs found it.
        sine: the largest sine between a live member and the span of the other net's live
            members (None when unknown).
    """

    a: np.ndarray
    b: np.ndarray
    count: int = 1
    sine: Optional[float] = None

    @property
    def size(self) -> int:
        """Number of neurons in the match, ``len(a) + len(b)``."""
        return int(len(self.a) + len(self.b))

    def __repr__(self) -> str:
        sine = "" if self.sine is None else f", sine={self.sine:.4f}"
        return f"SimpleMatch(a={self.a.tolist()}, b={self.b.tolist()}, count={self.count}{sine})"


@dataclass(frozen=True)
class Profile:
    """The ε-profile of a layer pair: every neuron's threshold.

    Neuron ``i`` of net A is in the maximum match at ε exactly when ``ε >= thresholds_a[i]``
    (NaN for a dead neuron dropped from matches).

    Attributes:
        thresholds_a: per neuron of A, the smallest ε at which it joins the maximum match.
        thresholds_b: the same for B.
        max_epsilon: the smallest ε at which every live neuron matches.
        dead_a: indices of A's dead (all-zero) neurons.
        dead_b: indices of B's dead neurons.
    """

    thresholds_a: np.ndarray
    thresholds_b: np.ndarray
    max_epsilon: float
    dead_a: np.ndarray
    dead_b: np.ndarray

    def mms(self, eps: float) -> float:
        """Maximum match similarity at ``eps``, from the thresholds alone."""
        n = len(self.thresholds_a) + len(self.thresholds_b)
        inside = np.sum(self.thresholds_a <= eps) + np.sum(self.thresholds_b <= eps)
        return float(inside) / n if n else 0.0


@dataclass
class LayerResult:
    """Everything found for one layer pair; built from one layer record of the results schema
    (docs/results-schema.md).

    Attributes:
        name: the layer's name (net A's).
        name_b: net B's layer name when it differs, else None.
        neurons_a, neurons_b: neurons of each layer (dead included).
        rows: rows (inputs, times positions for a convolutional layer, tokens for a token layer).
        dead_a, dead_b: indices of dead (all-zero) neurons.
        thresholds_a, thresholds_b: every neuron's threshold ε* (NaN for dropped dead neurons).
        max_epsilon: the smallest ε at which every live neuron matches.
        matches: the maximum match at each ε of the comparison.
        measures: the basis-invariant measures (``cka_linear``, ...), empty when none.
        simple: the simple matches, when asked for (a list of :class:`SimpleMatch`), else None.
        centered: the maximum matches of the mean-centred activations (``center=True``), else None.
        intervals: bootstrap intervals over chunks of inputs (``bootstrap=R``): a dict with
            ``level``, ``resamples``, ``chunks``, ``seed``, ``mms`` (one ``{"lo", "hi"}`` per ε)
            and ``cka_linear``; else None.
        null: the neuron-basis null (``null="rotate"``): per ε a dict with ``observed``, ``mean``,
            ``min``, ``max``, ``p_value`` and the rotated ``values``; else None.
        untrained: the untrained baseline (``baseline=``): a dict with ``mms`` (per ε),
            ``max_epsilon``, ``measures`` (its CKA, ...), ``centered_mms``, ``intervals`` and
            ``trained_minus_untrained`` (per ε); else None.
        verdict: ``"learned"``, ``"given"``, ``"subspace-only"`` or ``"none"`` at the main ε
            (docs/controls.md), when both the untrained baseline and the rotation null were
            computed; else None, and ``verdict_missing`` lists what is missing.
        verdict_missing: the controls the verdict lacks (``"baseline"``, ``"null"``).
        top_inputs: what every neuron responds to most (fronts that track it), else None.
        record: the JSON record this object was built from.
    """

    name: str
    name_b: Optional[str]
    neurons_a: int
    neurons_b: int
    rows: int
    dead_a: np.ndarray
    dead_b: np.ndarray
    thresholds_a: np.ndarray
    thresholds_b: np.ndarray
    max_epsilon: float
    matches: List[MaxMatch]
    measures: Dict[str, Any]
    simple: Optional[List[SimpleMatch]]
    record: Dict[str, Any] = field(repr=False)
    centered: Optional[List[MaxMatch]] = None
    null: Optional[List[Dict[str, Any]]] = None
    intervals: Optional[Dict[str, Any]] = None
    untrained: Optional[Dict[str, Any]] = None
    verdict: Optional[str] = None
    verdict_missing: List[str] = field(default_factory=list)
    top_inputs: Optional[Dict[str, Any]] = None

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> "LayerResult":
        """Builds a layer result from one layer record (``comparisons[i].layers[j]``)."""
        simple = record.get("simple")
        return cls(
            name=record["name"],
            name_b=record.get("name_b"),
            neurons_a=int(record["neurons_a"]),
            neurons_b=int(record["neurons_b"]),
            rows=int(record["rows"]),
            dead_a=_indices(record["dead_a"]),
            dead_b=_indices(record["dead_b"]),
            thresholds_a=_thresholds(record["thresholds_a"]),
            thresholds_b=_thresholds(record["thresholds_b"]),
            max_epsilon=float(record["max_epsilon"]),
            matches=[
                MaxMatch(float(m["eps"]), _indices(m["a"]), _indices(m["b"]), float(m["mms"]))
                for m in record["matches"]
            ],
            measures=dict(record.get("measures") or {}),
            simple=None
            if simple is None
            else [
                SimpleMatch(
                    _indices(m["a"]),
                    _indices(m["b"]),
                    int(m.get("count", 1)),
                    None if m.get("sine") is None else float(m["sine"]),
                )
                for m in simple["matches"]
            ],
            record=dict(record),
            centered=None
            if record.get("centered") is None
            else [
                MaxMatch(float(m["eps"]), _indices(m["a"]), _indices(m["b"]), float(m["mms"]))
                for m in record["centered"]["matches"]
            ],
            null=None if record.get("null") is None else list(record["null"]["per_eps"]),
            intervals=record.get("intervals"),
            untrained=record.get("untrained"),
            verdict=record.get("verdict"),
            verdict_missing=list(record.get("verdict_missing", ())),
            top_inputs=record.get("top_inputs"),
        )

    @property
    def eps(self) -> np.ndarray:
        """The ε values, in the order of :attr:`matches` and :attr:`mms`."""
        return np.asarray([m.eps for m in self.matches], dtype=np.float64)

    @property
    def mms(self) -> np.ndarray:
        """Maximum match similarity at each ε."""
        return np.asarray([m.mms for m in self.matches], dtype=np.float64)

    def match(self, eps: float) -> MaxMatch:
        """The maximum match at ``eps`` (one of the comparison's ε values)."""
        for m in self.matches:
            if m.eps == eps:
                return m
        raise KeyError(
            f"layer '{self.name}': ε = {eps} is not one of this result's ε values "
            f"{[m.eps for m in self.matches]}; use Stats.max_match for any ε"
        )

    @property
    def cka(self) -> Optional[float]:
        """Linear CKA (biased estimator), when it was computed."""
        v = self.measures.get("cka_linear")
        return None if v is None else float(v)

    @property
    def centered_mms(self) -> Optional[np.ndarray]:
        """mms of the mean-centred activations at each ε, when computed."""
        return None if self.centered is None else np.asarray([m.mms for m in self.centered], dtype=np.float64)

    @property
    def untrained_mms(self) -> Optional[np.ndarray]:
        """mms of the untrained baseline pair at each ε, when given."""
        return None if self.untrained is None else np.asarray(self.untrained["mms"], dtype=np.float64)

    def __repr__(self) -> str:
        mms = ", ".join(f"{m.eps:g}: {m.mms:.3f}" for m in self.matches)
        verdict = "" if self.verdict is None else f", verdict {self.verdict}"
        return (
            f"LayerResult('{self.name}', neurons {self.neurons_a}/{self.neurons_b}, "
            f"rows {self.rows}, mms {{{mms}}}, max_epsilon {self.max_epsilon:.4f}{verdict})"
        )


#: The schema written and read (docs/results-schema.md).
SCHEMA = "spanmatch-results"
#: Its version.
SCHEMA_VERSION = 3


def _is_current(d: Mapping[str, Any]) -> bool:
    return d.get("schema") == SCHEMA and d.get("schema_version") == SCHEMA_VERSION


class Result:
    """The result of a comparison: one :class:`LayerResult` per layer pair.

    ``to_dict()`` / ``to_json()`` write the one results schema of spanmatch (``"schema":
    "spanmatch-results"``, ``"schema_version": 3``; docs/results-schema.md), the same as
    ``spanmatch compare --json`` and ``spanmatch reproduce``'s results.json; ``repr(result)`` is
    the CLI's tables. Index it by position or by layer name: ``result["features.3"]`` (the
    layers of the primary comparison: the first of kind ``pair``).

    Attributes:
        layers: the layer results, in comparison order.
        eps: the ε values.
        options: the :class:`spanmatch.Options` the result was computed with.
        warnings: warnings raised while computing (also issued as Python warnings).
        cross: layer x layer results (``spanmatch.torch.compare(..., cross=True)``), else None.
        curves: per layer, the ε-profile curve ``[[ε, mms], ...]`` on a 0.01 grid, when computed
            (``curve=True``).
    """

    def __init__(
        self,
        report: Mapping[str, Any],
        tables: Optional[str] = None,
        warnings: Optional[Sequence[str]] = None,
        curves: Optional[Sequence[Sequence[Sequence[float]]]] = None,
        cross: Any = None,
    ) -> None:
        d = dict(report)
        if not _is_current(d):
            # An older or foreign file: the engine converts it, or names what it cannot read.
            text, tables, warns = _native.read_results(json.dumps(d))
            d = json.loads(text)
            warnings = warns if warnings is None else warnings
        self._report: Dict[str, Any] = copy.deepcopy(d)
        self._tables = tables
        comparisons = self._report.get("comparisons") or []
        primary = next((c for c in comparisons if c.get("kind") == "pair"), comparisons[0] if comparisons else None)
        records = [] if primary is None else primary["layers"]
        self.layers: List[LayerResult] = [LayerResult.from_record(r) for r in records]
        self.eps: Tuple[float, ...] = tuple(float(e) for e in self._report.get("eps", ()))
        self.warnings: List[str] = list(self._report.get("warnings", ()) if warnings is None else warnings)
        if curves is None and records and all(r.get("profile") for r in records):
            curves = [r["profile"] for r in records]
        self.curves = None if curves is None else [np.asarray(c, dtype=np.float64) for c in curves]
        if cross is None and isinstance(self._report.get("cross"), Mapping):
            from ._cross import CrossResult

            cross = CrossResult.from_dict(self._report["cross"])
        self.cross = cross

    @property
    def options(self) -> Any:
        """The :class:`spanmatch.Options` of the computation."""
        from ._options import Options

        return Options.from_dict(self._report.get("options", {}))

    @classmethod
    def from_json(cls, path: Union[str, "os.PathLike[str]"]) -> "Result":
        """Reads a results file of any accepted version: schema version 3 (written by
        :meth:`to_json`, ``spanmatch compare --json`` or ``spanmatch reproduce``) and the
        unversioned files of earlier spanmatch versions (converted). Any other version raises
        ``ValueError`` naming the version found and those supported."""
        with open(path, encoding="utf-8") as f:
            text = f.read()
        try:
            out, tables, warns = _native.read_results(text)
        except ValueError as e:
            raise ValueError(f"{os.fspath(path)}: {e}") from None
        return cls(json.loads(out), tables, warns)

    def to_dict(self) -> Dict[str, Any]:
        """The result as plain Python data, in the one results schema (version 3)."""
        d = copy.deepcopy(self._report)
        if self.cross is not None and hasattr(self.cross, "to_dict"):
            d["cross"] = self.cross.to_dict()
        return d

    def to_json(self, path: Union[str, "os.PathLike[str]"], indent: Optional[int] = 2) -> None:
        """Writes :meth:`to_dict` as JSON to ``path`` (``spanmatch report`` renders it)."""
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=indent)
            f.write("\n")

    @property
    def names(self) -> List[str]:
        """The layer names, in order."""
        return [l.name for l in self.layers]

    @property
    def mms(self) -> Dict[str, np.ndarray]:
        """Layer name -> mms at each ε."""
        return {l.name: l.mms for l in self.layers}

    @property
    def verdicts(self) -> Dict[str, Optional[str]]:
        """Layer name -> verdict at the main ε (None where its controls are missing)."""
        return {l.name: l.verdict for l in self.layers}

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[LayerResult]:
        return iter(self.layers)

    def __getitem__(self, key: Union[int, str]) -> LayerResult:
        if isinstance(key, str):
            for l in self.layers:
                if l.name == key:
                    return l
            raise KeyError(f"no layer named '{key}'; layers: {', '.join(self.names)}")
        return self.layers[key]

    def table(self) -> str:
        """The text tables of ``spanmatch compare``: matches, then measures and simple
        matches, then the controls at the main ε (mms [interval], centred, untrained, rotation
        null, verdict: only the columns whose controls were computed)."""
        if self._tables is None:
            self._tables = _native.read_results(json.dumps(self.to_dict()))[1]
        return self._tables

    def __repr__(self) -> str:
        return self.table().rstrip("\n")

    def _repr_html_(self) -> str:
        import html

        return f"<pre>{html.escape(self.table())}</pre>"

    def plot(self, kind: str = "layers", **kwargs: Any) -> Any:
        """Draws the result with matplotlib (``pip install spanmatch[plot]``).

        ``kind="layers"``: mms by layer, one line per ε (with the centred match, the untrained
        baseline and linear CKA when computed); ``kind="cross"``: heatmaps of a layer x layer
        comparison. Returns the figure.
        """
        from . import plot as _plot

        return _plot.plot_result(self, kind=kind, **kwargs)


