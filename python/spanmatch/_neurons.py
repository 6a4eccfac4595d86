"""Neuron-level output of the neuron-matching measures, as numpy arrays: the one-to-one
(Hungarian) pairs and the semi-matching, the soft-matching transport plan and the permutation of
permutation Procrustes. Built from a layer record's ``measures`` (docs/results-schema.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import numpy as np

__all__ = ["NeuronPairs", "OneToOne", "SoftMatch", "PermProcrustes"]


def _int_array(values: Sequence[Any], shape: tuple) -> np.ndarray:
    return np.asarray(values, dtype=np.int64).reshape(shape)


@dataclass(frozen=True)
class NeuronPairs:
    """Pairs of neurons, one of each layer, with the correlation of their activations.

    Attributes:
        pairs: ``[k, 2]`` int64 array of ``(a, b)`` neuron indices (net A's, net B's).
        correlations: ``[k]`` float64 array, the correlation of each pair over the rows.
    """

    pairs: np.ndarray
    correlations: np.ndarray

    @classmethod
    def from_records(cls, records: Sequence[Mapping[str, Any]]) -> "NeuronPairs":
        """From the schema's ``[{"a", "b", "correlation"}, ...]``."""
        return cls(
            _int_array([(int(p["a"]), int(p["b"])) for p in records], (len(records), 2)),
            np.asarray([float(p["correlation"]) for p in records], dtype=np.float64),
        )

    @property
    def a(self) -> np.ndarray:
        """Net A's neuron of each pair."""
        return self.pairs[:, 0]

    @property
    def b(self) -> np.ndarray:
        """Net B's neuron of each pair."""
        return self.pairs[:, 1]

    @property
    def mean(self) -> float:
        """Mean correlation of the pairs (NaN when there is none)."""
        return float(self.correlations.mean()) if len(self.correlations) else float("nan")

    def __len__(self) -> int:
        return int(self.pairs.shape[0])

    def __repr__(self) -> str:
        return f"NeuronPairs({len(self)} pairs, mean correlation {self.mean:.4f})"


@dataclass(frozen=True)
class OneToOne:
    """The one-to-one matching of neuron correlations (Li et al. 2016): the Hungarian assignment
    of the ``min(n1', n2')`` live neurons that maximises the total correlation, and the
    semi-matching (each neuron's most correlated partner in the other layer).

    Attributes:
        pairs: ``[k, 2]`` int64 array of the assigned ``(a, b)`` pairs, sorted by ``a``.
        correlations: ``[k]`` the correlation of each pair.
        mean: mean correlation of the pairs (the measure ``one_to_one``).
        semi_match: the semi-matching measure (mean best-partner correlation, both directions
            averaged), or None when undefined.
        best_in_b: for each live neuron of A, its most correlated neuron of B.
        best_in_a: for each live neuron of B, its most correlated neuron of A.
        constant_a, constant_b: neurons without variance (dead or constant), left out.
        partner_inside: of the neurons of the maximum span match at the main ε, how many have
            their one-to-one partner in the match too (None when unknown).
        match_neurons: the neurons of that maximum match (None when unknown).
    """

    pairs: np.ndarray
    correlations: np.ndarray
    mean: float
    semi_match: Optional[float]
    best_in_b: NeuronPairs
    best_in_a: NeuronPairs
    constant_a: np.ndarray
    constant_b: np.ndarray
    partner_inside: Optional[int] = None
    match_neurons: Optional[int] = None

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Optional["OneToOne"]:
        """From a layer record, or None when ``one_to_one`` was not computed (or undefined)."""
        m = record.get("measures") or {}
        neurons = m.get("neurons") or {}
        if m.get("one_to_one") is None or neurons.get("one_to_one") is None:
            return None
        pairs = NeuronPairs.from_records(neurons["one_to_one"])
        inside = record.get("one_to_one_in_match") or {}
        return cls(
            pairs=pairs.pairs,
            correlations=pairs.correlations,
            mean=float(m["one_to_one"]),
            semi_match=None if m.get("semi_match") is None else float(m["semi_match"]),
            best_in_b=NeuronPairs.from_records(neurons.get("best_in_b") or []),
            best_in_a=NeuronPairs.from_records(neurons.get("best_in_a") or []),
            constant_a=_int_array(neurons.get("constant_a", []), (-1,)),
            constant_b=_int_array(neurons.get("constant_b", []), (-1,)),
            partner_inside=None if "partner_inside" not in inside else int(inside["partner_inside"]),
            match_neurons=None if "match_neurons" not in inside else int(inside["match_neurons"]),
        )

    def partner_of_a(self, a: int) -> Optional[int]:
        """Net B's neuron assigned to neuron ``a`` of net A (None when it has none)."""
        hit = np.nonzero(self.pairs[:, 0] == a)[0]
        return None if len(hit) == 0 else int(self.pairs[hit[0], 1])

    def partner_of_b(self, b: int) -> Optional[int]:
        """Net A's neuron assigned to neuron ``b`` of net B (None when it has none)."""
        hit = np.nonzero(self.pairs[:, 1] == b)[0]
        return None if len(hit) == 0 else int(self.pairs[hit[0], 0])

    def __len__(self) -> int:
        return int(self.pairs.shape[0])

    def __repr__(self) -> str:
        inside = (
            ""
            if self.partner_inside is None
            else f", {self.partner_inside}/{self.match_neurons} span-match neurons with their partner inside"
        )
        return f"OneToOne({len(self)} pairs, mean correlation {self.mean:.4f}{inside})"


@dataclass(frozen=True)
class SoftMatch:
    """The soft-matching distance (Khosla & Williams 2023): optimal transport between the
    standardised neurons of the two layers, uniform marginals.

    Attributes:
        distance: the soft-matching distance, in [0, 2] (0 = the same neurons up to order).
        correlation: the correlation carried by the optimal plan, ``1 - distance² / 2``.
        plan: the optimal transport plan as a dense ``[neurons_a, neurons_b]`` float64 array
            (masses summing to 1; rows and columns of constant neurons are zero), when it was
            asked for (``transport_plan=True``), else None.
    """

    distance: float
    correlation: Optional[float]
    plan: Optional[np.ndarray]

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Optional["SoftMatch"]:
        """From a layer record, or None when ``soft_match`` was not computed (or undefined)."""
        m = record.get("measures") or {}
        if m.get("soft_match") is None:
            return None
        entries = (m.get("neurons") or {}).get("soft_plan")
        plan = None
        if entries is not None:
            plan = np.zeros((int(record["neurons_a"]), int(record["neurons_b"])), dtype=np.float64)
            for e in entries:
                plan[int(e["a"]), int(e["b"])] += float(e["mass"])
        corr = m.get("soft_match_correlation")
        return cls(float(m["soft_match"]), None if corr is None else float(corr), plan)

    def __repr__(self) -> str:
        plan = "" if self.plan is None else f", plan {self.plan.shape[0]}x{self.plan.shape[1]}"
        return f"SoftMatch(distance {self.distance:.4f}{plan})"


@dataclass(frozen=True)
class PermProcrustes:
    """Permutation Procrustes (Williams et al. 2021): the distance between the centred,
    normalised layers after the best permutation of neurons.

    Attributes:
        distance: ``min_P ||X P - Y||_F`` of the normalised data, in [0, 2].
        angular: its angular form in radians (netrep's ``PermutationMetric``), or None.
        permutation: ``[k, 2]`` int64 array of the ``(a, b)`` pairs of the permutation, sorted by
            ``a`` (``min(neurons_a, neurons_b)`` pairs).
    """

    distance: float
    angular: Optional[float]
    permutation: np.ndarray

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Optional["PermProcrustes"]:
        """From a layer record, or None when ``perm_procrustes`` was not computed (or undefined)."""
        m = record.get("measures") or {}
        if m.get("perm_procrustes") is None:
            return None
        perm = (m.get("neurons") or {}).get("permutation") or []
        ang = m.get("perm_procrustes_angular")
        return cls(
            float(m["perm_procrustes"]),
            None if ang is None else float(ang),
            _int_array([tuple(p) for p in perm], (len(perm), 2)),
        )

    def __repr__(self) -> str:
        return f"PermProcrustes(distance {self.distance:.4f}, {len(self.permutation)} pairs)"
