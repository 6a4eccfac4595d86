"""Scoring of the grounding benchmark (python/benchmarks/grounding.py), as the ReSi benchmark scores.

ReSi (Klabunde et al., "ReSi: A Comprehensive Benchmark for Representational Similarity
Measures", 2024; code: github.com/mklabunde/resi) grades a similarity measure by how well its
values follow a known ground truth. This module holds our own implementation of its three
scores, written from its published code (``repsim/benchmark/measure_quality_metrics.py`` and the
experiment classes) and checked against values computed with that code
(python/tests/fixtures/resi_scoring.json, test_grounding.py):

* **group separation** (:func:`group_separation`): for each group, the area under the
  precision-recall curve (average precision, as ``sklearn.metrics.average_precision_score``)
  of the in-group pairs (positives) against the pairs between that group and every other
  group (negatives); the mean over groups. A distance ``d`` is first mapped to
  ``(max - d) / max`` (``max`` over both lists; 5e-5 when it is 0). 1 is ideal; chance is about
  the share of in-group pairs.
* **layer monotonicity** (:func:`monotonicity`): inside one net, for each layer, the Spearman
  correlation between the similarity to every later layer and the layer distance (forward),
  and the same over every earlier layer (backward), negated for similarities; the mean of all
  of them, undefined ones (fewer than two layers, ties only) left out. +1 is ideal.
* **grounding by prediction** (:func:`prediction`): the Spearman correlation, over all pairs of
  nets, between the similarity (negated, so that it reads as a distance) and a difference in
  behaviour (absolute accuracy difference, Jensen-Shannon divergence of the outputs, share of
  differing predictions). +1 is ideal.

Plus what ReSi does not give: percentile bootstrap intervals over the seeds (nets are resampled
with replacement, the same draws for every measure) and the benchmark's self-test
(:func:`self_test`): a measure of random numbers scores at chance, a measure that falls strictly
with layer distance scores +1 on monotonicity.

Pure numpy; NaN marks an undefined value everywhere (a measure that is ``None`` for a pair).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable, Dict, Hashable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

__all__ = [
    "DISTANCE_ZERO_MAX",
    "average_precision",
    "auprc",
    "rankdata",
    "spearman",
    "group_separation",
    "monotonicity_net",
    "monotonicity",
    "prediction",
    "Interval",
    "bootstrap_groups",
    "bootstrap_nets",
    "bootstrap_pairs",
    "in_group_fraction",
    "random_auprc",
    "self_test",
]

#: ReSi's stand-in for the largest distance when every distance is 0 (avoids dividing by 0).
DISTANCE_ZERO_MAX = 5e-5

Net = Hashable
PairValue = Callable[[Net, Net], float]


# ---------------------------------------------------------------------------------------------
# Primitives


def average_precision(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Average precision of binary labels ``y_true`` (1 = positive) ranked by ``y_score``.

    The step-wise area under the precision-recall curve, with one threshold per distinct score
    (ties form one step): ``AP = Σ_k (R_k - R_{k-1}) P_k``, which is what
    ``sklearn.metrics.average_precision_score`` computes (same order of operations, so the
    results agree to round-off). No positives: NaN (sklearn warns and returns a meaningless
    value; ReSi never gets there because a group's in-group list is never empty).
    """
    y_true = np.asarray(y_true, dtype=np.float64).reshape(-1)
    y_score = np.asarray(y_score, dtype=np.float64).reshape(-1)
    if y_true.shape != y_score.shape:
        raise ValueError(f"average_precision: {y_true.shape[0]} labels but {y_score.shape[0]} scores")
    if y_true.size == 0 or not np.any(y_true == 1):
        return float("nan")
    order = np.argsort(y_score, kind="mergesort")[::-1]
    s = y_score[order]
    t = y_true[order]
    distinct = np.where(np.diff(s))[0]
    ends = np.r_[distinct, t.size - 1]
    tps = np.cumsum(t, dtype=np.float64)[ends]
    fps = 1 + ends - tps
    predicted = tps + fps
    precision = np.zeros_like(tps)
    np.divide(tps, predicted, out=precision, where=(predicted != 0))
    recall = tps / tps[-1]
    # Reversed (recall decreasing) with the end point (recall 0, precision 1), as sklearn.
    precision = np.hstack((precision[::-1], 1.0))
    recall = np.hstack((recall[::-1], 0.0))
    return float(-np.sum(np.diff(recall) * precision[:-1]))


def auprc(in_group: Sequence[float], cross_group: Sequence[float], larger_is_more_similar: bool) -> float:
    """ReSi's AUPRC of one group: in-group values are the positives, cross-group the negatives.

    Distances (``larger_is_more_similar=False``) are mapped to ``(max - d) / max`` first, ``max``
    the largest value of both lists (``DISTANCE_ZERO_MAX`` if that is 0). NaN values are then
    left out; none left: NaN.
    """
    a = np.asarray(in_group, dtype=np.float64).reshape(-1)
    b = np.asarray(cross_group, dtype=np.float64).reshape(-1)
    if not larger_is_more_similar:
        # As ReSi: Python's max of the two lists' maxima. A NaN in the in-group list makes it
        # NaN (every mapped value NaN, the result NaN); a NaN only in the cross-group list is
        # passed over by max(). Callers drop undefined values first, so neither happens here.
        maxima = [float(np.max(v)) for v in (a, b) if v.size]
        if not maxima:
            return float("nan")
        top = max(maxima)
        if top == 0:
            top = DISTANCE_ZERO_MAX
        a = np.asarray([float(-v + top) / top for v in a], dtype=np.float64)
        b = np.asarray([float(-v + top) / top for v in b], dtype=np.float64)
    y_true = np.concatenate([np.ones_like(a), np.zeros_like(b)])
    y_score = np.concatenate([a, b])
    keep = ~np.isnan(y_score)
    if not keep.any():
        return float("nan")
    return average_precision(y_true[keep], y_score[keep])


def rankdata(x: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties get the mean of their ranks (scipy's ``rankdata(method="average")``)."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    sorter = np.argsort(x, kind="mergesort")
    inv = np.empty(sorter.size, dtype=np.intp)
    inv[sorter] = np.arange(sorter.size, dtype=np.intp)
    xs = x[sorter]
    obs = np.r_[True, xs[1:] != xs[:-1]]
    dense = obs.cumsum()[inv]
    count = np.r_[np.nonzero(obs)[0], len(obs)]
    return 0.5 * (count[dense] + count[dense - 1] + 1)


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation as ``scipy.stats.spearmanr`` gives it for two 1-D inputs:
    NaN when either input is constant (which includes a single value) or holds a NaN."""
    a = np.asarray(x, dtype=np.float64).reshape(-1)
    b = np.asarray(y, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"spearman: {a.size} and {b.size} values")
    if a.size == 0 or np.all(a[0] == a) or np.all(b[0] == b):
        return float("nan")
    if np.isnan(a).any() or np.isnan(b).any():
        return float("nan")
    r = np.corrcoef(np.vstack([rankdata(a), rankdata(b)]), rowvar=True)
    return float(r[1, 0])


# ---------------------------------------------------------------------------------------------
# The three scores


def _value(table: PairValue, a: Net, b: Net) -> float:
    v = table(a, b)
    return float("nan") if v is None else float(v)


def group_separation(groups: Sequence[Sequence[Net]], value: PairValue, larger_is_more_similar: bool) -> float:
    """ReSi's group-separation AUPRC: the mean over groups of :func:`auprc` of the group's
    in-group pairs (every unordered pair of its nets) against its pairs with every net of the
    other groups. ``value(a, b)`` is the measure of a pair (NaN or None: undefined, left out).
    A group with no defined in-group or no defined cross-group value makes the score NaN."""
    scores = []
    for i, group in enumerate(groups):
        others = [n for j, g in enumerate(groups) if j != i for n in g]
        inside = [_value(value, a, b) for a, b in itertools.combinations(group, 2)]
        cross = [_value(value, a, b) for a, b in itertools.product(group, others)]
        inside = [v for v in inside if not np.isnan(v)]
        cross = [v for v in cross if not np.isnan(v)]
        if not inside or not cross:
            return float("nan")
        scores.append(auprc(inside, cross, larger_is_more_similar))
    return float(np.mean(scores))


def in_group_fraction(groups: Sequence[Sequence[Net]]) -> float:
    """Mean over groups of the share of in-group pairs among that group's pairs: what the
    AUPRC of a measure that ranks pairs at random is close to."""
    fractions = []
    for i, group in enumerate(groups):
        k = len(group)
        others = sum(len(g) for j, g in enumerate(groups) if j != i)
        inside = k * (k - 1) // 2
        fractions.append(inside / (inside + k * others))
    return float(np.mean(fractions))


def random_auprc(groups: Sequence[Sequence[Net]]) -> float:
    """The expected group-separation AUPRC of a measure that orders pairs at random (no ties):
    the mean over groups of ``E[AP] = (P-1)/(N-1) + H_N (N-P) / (N(N-1))`` for ``P`` in-group
    pairs among ``N`` (``H_N`` the harmonic number). It is above the in-group fraction ``P/N``
    for small ``N`` (0.219 against 0.167 for 3 groups of 5 nets): the first ranked positive
    weighs a whole ``1/P`` of the average."""
    values = []
    for i, group in enumerate(groups):
        k = len(group)
        others = sum(len(g) for j, g in enumerate(groups) if j != i)
        p = k * (k - 1) // 2
        n = p + k * others
        if p == 0 or n < 2:
            values.append(float("nan"))
            continue
        h = float(np.sum(1.0 / np.arange(1, n + 1)))
        values.append((p - 1) / (n - 1) + h * (n - p) / (n * (n - 1)))
    return float(np.mean(values))


def monotonicity_net(table: np.ndarray, larger_is_more_similar: bool) -> float:
    """ReSi's layer-monotonicity correlation of one net.

    ``table[i, j]`` is the measure between layers ``i`` and ``j`` (in the net's order; the
    diagonal is not read). For each source layer the Spearman correlation of its values against
    the layer distance, once over the later layers and once over the earlier ones, negated for
    similarities; the mean of the defined ones (NaN if none). As in ReSi, an undefined value
    (NaN) makes its source layer's correlation undefined (a failed comparison is stored as NaN
    there), and a correlation over fewer than two layers or over tied values is undefined.
    """
    t = np.asarray(table, dtype=np.float64)
    n = t.shape[0]
    if t.shape != (n, n):
        raise ValueError(f"monotonicity: expected a square table, got shape {t.shape}")
    corrs: List[float] = []
    for direction in ("forward", "backward"):
        for src in range(n):
            targets = range(src + 1, n) if direction == "forward" else range(0, src)
            sims, dists = [], []
            for tgt in targets:
                sims.append(t[src, tgt])
                dists.append(abs(tgt - src))
            c = spearman(sims, dists) if sims else float("nan")
            if larger_is_more_similar:
                c = -1 * c
            corrs.append(c)
    arr = np.asarray(corrs, dtype=np.float64)
    if np.all(np.isnan(arr)):
        return float("nan")
    return float(np.nanmean(arr))


def monotonicity(tables: Sequence[np.ndarray], larger_is_more_similar: bool) -> float:
    """The mean of :func:`monotonicity_net` over nets (undefined nets left out)."""
    values = np.asarray([monotonicity_net(t, larger_is_more_similar) for t in tables], dtype=np.float64)
    if values.size == 0 or np.all(np.isnan(values)):
        return float("nan")
    return float(np.nanmean(values))


def prediction(
    nets: Sequence[Net], value: PairValue, behaviour: PairValue, larger_is_more_similar: bool
) -> float:
    """ReSi's grounding by prediction: Spearman correlation, over every unordered pair of
    distinct ``nets``, of the representational measure (negated when it is a similarity) with
    the behavioural difference (larger = more different). Pairs where either is undefined are
    left out."""
    rep, fun = [], []
    for a, b in itertools.combinations(nets, 2):
        if a == b:
            continue
        rep.append(_value(value, a, b))
        fun.append(_value(behaviour, a, b))
    r = np.asarray(rep, dtype=np.float64)
    f = np.asarray(fun, dtype=np.float64)
    keep = ~(np.isnan(r) | np.isnan(f))
    r, f = r[keep], f[keep]
    if r.size == 0:
        return float("nan")
    if larger_is_more_similar:
        r = -1 * r
    return spearman(r, f)


# ---------------------------------------------------------------------------------------------
# Bootstrap over seeds


@dataclass(frozen=True)
class Interval:
    """A score with its percentile bootstrap interval over seeds.

    Attributes:
        score: the score on all nets.
        lo, hi: the interval's ends (NaN when no resample gave a defined score).
        level: the interval's coverage (0.95).
        resamples: resamples drawn.
        valid: resamples that gave a defined score (a resample whose group holds one net only
            has no in-group pair, for example).
    """

    score: float
    lo: float
    hi: float
    level: float
    resamples: int
    valid: int

    def as_dict(self) -> Dict[str, float]:
        """The fields as a JSON-ready dict (NaN becomes None)."""
        f = lambda v: None if v is None or np.isnan(v) else float(v)  # noqa: E731
        return {
            "score": f(self.score),
            "lo": f(self.lo),
            "hi": f(self.hi),
            "level": self.level,
            "resamples": self.resamples,
            "valid": self.valid,
        }


def _interval(score: float, values: Sequence[float], level: float) -> Interval:
    v = np.asarray(values, dtype=np.float64)
    ok = v[~np.isnan(v)]
    if ok.size == 0:
        return Interval(score, float("nan"), float("nan"), level, len(v), 0)
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(ok, [tail, 100 - tail])
    return Interval(score, float(lo), float(hi), level, len(v), int(ok.size))


def _draws(rng: np.random.Generator, sizes: Sequence[int], resamples: int) -> List[List[np.ndarray]]:
    return [[rng.integers(0, k, size=k) for k in sizes] for _ in range(resamples)]


def bootstrap_groups(
    groups: Sequence[Sequence[Net]],
    values: Mapping[str, PairValue],
    larger: Mapping[str, bool],
    resamples: int,
    seed: int,
    level: float = 0.95,
) -> Dict[str, Interval]:
    """:func:`group_separation` of every measure with a bootstrap over seeds: each group's nets
    are resampled with replacement (independently per group, the same draws for every measure);
    a net drawn twice is not paired with itself."""
    rng = np.random.default_rng(seed)
    draws = _draws(rng, [len(g) for g in groups], resamples)
    out = {}
    for name, value in values.items():
        score = group_separation(groups, value, larger[name])
        boot = []
        for d in draws:
            resampled = [[g[i] for i in idx] for g, idx in zip(groups, d)]
            boot.append(_group_separation_multiset(resampled, value, larger[name]))
        out[name] = _interval(score, boot, level)
    return out


def _pairs_of_multiset(items: Sequence[Net]) -> List[Tuple[Net, Net]]:
    return [(a, b) for a, b in itertools.combinations(items, 2) if a != b]


def _group_separation_multiset(groups: Sequence[Sequence[Net]], value: PairValue, larger: bool) -> float:
    scores = []
    for i, group in enumerate(groups):
        others = [n for j, g in enumerate(groups) if j != i for n in g]
        inside = [_value(value, a, b) for a, b in _pairs_of_multiset(group)]
        cross = [_value(value, a, b) for a, b in itertools.product(group, others)]
        inside = [v for v in inside if not np.isnan(v)]
        cross = [v for v in cross if not np.isnan(v)]
        if not inside or not cross:
            return float("nan")
        scores.append(auprc(inside, cross, larger))
    return float(np.mean(scores))


def bootstrap_nets(
    per_net: Mapping[str, Sequence[float]], resamples: int, seed: int, level: float = 0.95
) -> Dict[str, Interval]:
    """The mean of per-net scores (monotonicity) with a bootstrap over nets (the same draws for
    every measure; undefined nets left out of each mean)."""
    rng = np.random.default_rng(seed)
    sizes = {len(v) for v in per_net.values()}
    if len(sizes) > 1:
        raise ValueError(f"bootstrap_nets: measures have different numbers of nets: {sorted(sizes)}")
    k = sizes.pop() if sizes else 0
    draws = [rng.integers(0, k, size=k) for _ in range(resamples)] if k else []
    out = {}
    for name, values in per_net.items():
        v = np.asarray(values, dtype=np.float64)
        mean = lambda x: float("nan") if x.size == 0 or np.all(np.isnan(x)) else float(np.nanmean(x))  # noqa: E731
        out[name] = _interval(mean(v), [mean(v[d]) for d in draws], level)
    return out


def bootstrap_pairs(
    nets: Sequence[Net],
    values: Mapping[str, PairValue],
    behaviour: PairValue,
    larger: Mapping[str, bool],
    resamples: int,
    seed: int,
    level: float = 0.95,
) -> Dict[str, Interval]:
    """:func:`prediction` of every measure with a bootstrap over nets (resampled with
    replacement; the pairs are those of distinct nets among the draws, duplicates kept)."""
    rng = np.random.default_rng(seed)
    draws = [rng.integers(0, len(nets), size=len(nets)) for _ in range(resamples)]
    out = {}
    for name, value in values.items():
        score = prediction(nets, value, behaviour, larger[name])
        boot = [_prediction_multiset([nets[i] for i in d], value, behaviour, larger[name]) for d in draws]
        out[name] = _interval(score, boot, level)
    return out


def _prediction_multiset(nets: Sequence[Net], value: PairValue, behaviour: PairValue, larger: bool) -> float:
    pairs = _pairs_of_multiset(nets)
    r = np.asarray([_value(value, a, b) for a, b in pairs], dtype=np.float64)
    f = np.asarray([_value(behaviour, a, b) for a, b in pairs], dtype=np.float64)
    keep = ~(np.isnan(r) | np.isnan(f))
    r, f = r[keep], f[keep]
    if r.size == 0:
        return float("nan")
    return spearman(-1 * r if larger else r, f)


# ---------------------------------------------------------------------------------------------
# Self-test


def self_test(
    groups: Sequence[Sequence[Net]] = tuple(tuple(f"g{g}s{s}" for s in range(5)) for g in range(3)),
    layers: int = 6,
    nets: int = 10,
    draws: int = 200,
    seed: int = 0,
) -> Dict[str, float]:
    """The benchmark's own check of its scoring, on its design (groups of nets, layers per net,
    nets for prediction): returns

    * ``random_auprc``: the mean group-separation AUPRC of ``draws`` measures of independent
      uniform random numbers, with ``expected_random_auprc`` (:func:`random_auprc`, what it
      should be close to) and ``in_group_fraction``;
    * ``random_monotonicity``, ``random_prediction``: the mean monotonicity and prediction
      scores of random measures (should be close to 0);
    * ``synthetic_monotonicity``, ``synthetic_monotonicity_distance``: the monotonicity score
      of a similarity that falls strictly with layer distance and of the matching distance
      (both exactly +1);
    * ``synthetic_auprc``: group separation of a similarity that is larger inside every group
      (exactly 1);
    * ``synthetic_prediction``: prediction score of a similarity that falls strictly with the
      behavioural difference (exactly +1).
    """
    rng = np.random.default_rng(seed)
    all_nets = [n for g in groups for n in g]
    r_auprc, r_mono, r_pred = [], [], []
    pred_nets = list(range(nets))
    behaviour_table = {(a, b): rng.random() for a, b in itertools.combinations(pred_nets, 2)}
    behaviour = lambda a, b: behaviour_table[(min(a, b), max(a, b))]  # noqa: E731
    for _ in range(draws):
        table = {frozenset(p): rng.random() for p in itertools.combinations(all_nets, 2)}
        r_auprc.append(group_separation(groups, lambda a, b: table[frozenset((a, b))], True))
        t = rng.random((layers, layers))
        t = (t + t.T) / 2
        r_mono.append(monotonicity_net(t, True))
        rep = {p: rng.random() for p in itertools.combinations(pred_nets, 2)}
        r_pred.append(prediction(pred_nets, lambda a, b: rep[(min(a, b), max(a, b))], behaviour, True))
    idx = np.arange(layers)
    falling = 1.0 / (1.0 + np.abs(idx[:, None] - idx[None, :]))
    group_of = {n: i for i, g in enumerate(groups) for n in g}
    planted = lambda a, b: 1.0 if group_of[a] == group_of[b] else 0.5  # noqa: E731
    tracked = lambda a, b: 1.0 - behaviour(a, b)  # noqa: E731
    return {
        "random_auprc": float(np.mean(r_auprc)),
        "expected_random_auprc": random_auprc(groups),
        "in_group_fraction": in_group_fraction(groups),
        "random_monotonicity": float(np.mean(r_mono)),
        "random_prediction": float(np.mean(r_pred)),
        "synthetic_monotonicity": monotonicity_net(falling, True),
        "synthetic_monotonicity_distance": monotonicity_net(1.0 - falling, False),
        "synthetic_auprc": group_separation(groups, planted, True),
        "synthetic_prediction": prediction(pred_nets, tracked, behaviour, True),
    }


def optional_float(v: Optional[float]) -> float:
    """None -> NaN, anything else -> float."""
    return float("nan") if v is None else float(v)
