"""Layer x layer results: every layer of net A against every layer of net B."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

__all__ = ["CrossResult"]


def _nan_to_none(a: np.ndarray) -> Any:
    """Nested lists with NaN as None (JSON has no NaN)."""
    if a.ndim == 0:
        v = float(a)
        return None if np.isnan(v) else v
    return [_nan_to_none(x) for x in a]


@dataclass
class CrossResult:
    """Layer x layer comparison of two nets (``spanmatch.torch.compare(..., cross=True)``).

    Entry ``[i, j]`` compares layer ``layers_a[i]`` of net A with layer ``layers_b[j]`` of net
    B on the same rows. With ``pool="mean"``/``"max"`` every entry is compared on one row per
    input (``view[i, j]`` says which view); without it, pairs whose rows differ (e.g.
    convolutional layers of different spatial sizes) are NaN and ``comparable[i, j]`` is False.

    Attributes:
        layers_a: net A's layer names (rows of the matrices).
        layers_b: net B's layer names (columns).
        eps: the ε values (first axis of :attr:`mms`).
        mms: maximum match similarity, shape ``[len(eps), len(layers_a), len(layers_b)]``.
        cka: linear CKA (biased estimator, as in Kornblith et al. 2019), ``[nA, nB]``.
        cka_debiased: linear CKA with the debiased HSIC estimator, ``[nA, nB]``.
        max_epsilon: the smallest ε at which every live neuron of the pair matches, ``[nA, nB]``.
        rows: rows of each pair (0 where not comparable), ``[nA, nB]``.
        label_a, label_b: the two models' names (axis labels of the figures).
        view: ``[nA, nB]`` how each pair was compared: ``"full"`` (every row: inputs times
            positions, or tokens), ``"mean"`` / ``"max"`` (one row per input, pooled over
            positions and tokens), None where not compared; None when not recorded.
        measures: every scalar measure computed per pair, name -> ``[nA, nB]`` (NaN where not
            compared or undefined): ``cka_linear`` and ``cka_linear_debiased`` (the same
            matrices as :attr:`cka` and :attr:`cka_debiased`) and the fields of the other
            requested measures (``one_to_one``, ``soft_match``, ``predictivity_ab``, ``shape``,
            ``cca_mean_rho``, ... as in a layer record's ``measures``).
    """

    layers_a: List[str]
    layers_b: List[str]
    eps: Tuple[float, ...]
    mms: np.ndarray
    cka: np.ndarray
    cka_debiased: np.ndarray
    max_epsilon: np.ndarray
    rows: np.ndarray
    label_a: str = "a"
    label_b: str = "b"
    extra: Dict[str, Any] = field(default_factory=dict, repr=False)
    view: Optional[np.ndarray] = field(default=None, repr=False)
    measures: Dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        m = dict(self.measures)
        m.setdefault("cka_linear", self.cka)
        m.setdefault("cka_linear_debiased", self.cka_debiased)
        self.measures = m

    @property
    def comparable(self) -> np.ndarray:
        """``[nA, nB]`` booleans: whether the two layers have the same rows."""
        return self.rows > 0

    def mms_at(self, eps: float) -> np.ndarray:
        """The ``[nA, nB]`` mms matrix at one of the result's ε values."""
        for k, e in enumerate(self.eps):
            if e == eps:
                return self.mms[k]
        raise KeyError(f"ε = {eps} is not one of this result's ε values {list(self.eps)}")

    def best_match(self, measure: str = "cka") -> Dict[str, Optional[str]]:
        """For each layer of A, the layer of B with the largest ``cka`` (or ``cka_debiased``,
        ``mms@<ε>``, or any name in :attr:`measures`; for a distance such as ``soft_match``
        the largest is the least similar)."""
        m = self._matrix(measure)
        out: Dict[str, Optional[str]] = {}
        for i, name in enumerate(self.layers_a):
            row = m[i]
            out[name] = None if np.all(np.isnan(row)) else self.layers_b[int(np.nanargmax(row))]
        return out

    def _matrix(self, measure: str) -> np.ndarray:
        if measure == "cka":
            return self.cka
        if measure == "cka_debiased":
            return self.cka_debiased
        if measure.startswith("mms@"):
            return self.mms_at(float(measure[4:]))
        if measure in self.measures:
            return self.measures[measure]
        raise ValueError(
            f"measure '{measure}': use 'cka', 'cka_debiased', 'mms@<ε>' or one of {', '.join(self.measures)}"
        )

    def to_dict(self) -> Dict[str, Any]:
        """Plain Python data (NaN written as None), stored under ``"cross"`` by ``Result.to_dict``
        (docs/results-schema.md); the measures other than linear CKA go under ``"measures"``."""
        others = {k: v for k, v in self.measures.items() if k not in ("cka_linear", "cka_linear_debiased")}
        return {
            "label_a": self.label_a,
            "label_b": self.label_b,
            "layers_a": list(self.layers_a),
            "layers_b": list(self.layers_b),
            "eps": list(self.eps),
            "mms": _nan_to_none(self.mms),
            "cka_linear": _nan_to_none(self.cka),
            "cka_linear_debiased": _nan_to_none(self.cka_debiased),
            "max_epsilon": _nan_to_none(self.max_epsilon),
            "rows": self.rows.astype(int).tolist(),
            **({} if self.view is None else {"view": [[None if v is None else str(v) for v in row] for row in self.view]}),
            **(
                {}
                if not others
                else {"measures": {k: _nan_to_none(np.asarray(v, dtype=np.float64)) for k, v in others.items()}}
            ),
        }

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "CrossResult":
        """The inverse of :meth:`to_dict` (None read back as NaN)."""

        def arr(v: Any) -> np.ndarray:
            return np.array(v, dtype=np.float64)  # None -> nan

        return cls(
            layers_a=list(d["layers_a"]),
            layers_b=list(d["layers_b"]),
            eps=tuple(float(e) for e in d["eps"]),
            mms=arr(d["mms"]),
            cka=arr(d["cka_linear"]),
            cka_debiased=arr(d["cka_linear_debiased"]),
            max_epsilon=arr(d["max_epsilon"]),
            rows=np.asarray(d["rows"], dtype=np.int64),
            label_a=str(d.get("label_a", "a")),
            label_b=str(d.get("label_b", "b")),
            view=None if d.get("view") is None else np.array(d["view"], dtype=object),
            measures={str(k): arr(v) for k, v in (d.get("measures") or {}).items()},
        )

    def __repr__(self) -> str:
        return (
            f"CrossResult({self.label_a} {len(self.layers_a)} layers x {self.label_b} "
            f"{len(self.layers_b)} layers, eps={list(self.eps)}, "
            f"{int(self.comparable.sum())} comparable pairs)"
        )
