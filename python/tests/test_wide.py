"""Wide layers (issue 21) through ``Stats``: the ε-profile computed once and reused by
``max_match``, and targeted simple matches (``neurons_a`` / ``neurons_b``)."""

from __future__ import annotations

import time
from typing import List, Set, Tuple

import numpy as np
import pytest

import spanmatch


def blocks(n_blocks: int = 30, rows: int = 400, noise: float = 0.01, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """Blocks of dimension 1..4 shared by the two nets, with noise: many small simple matches."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for k in range(n_blocks):
        d = 1 + (k * 7 + 3) % 4
        basis = rng.standard_normal((rows, d))
        xs.append(basis @ rng.standard_normal((d, d)))
        ys.append(basis @ rng.standard_normal((d, d)))
    a = np.concatenate(xs, axis=1)
    b = np.concatenate(ys, axis=1)
    return a + noise * rng.standard_normal(a.shape), b + noise * rng.standard_normal(b.shape)


def as_sets(matches: List[spanmatch.SimpleMatch]) -> Set[Tuple[Tuple[int, ...], Tuple[int, ...]]]:
    return {(tuple(m.a.tolist()), tuple(m.b.tolist())) for m in matches}


def test_targeted_simple_matches_are_the_full_search_restricted() -> None:
    a, b = blocks()
    s = spanmatch.Accumulator().update(a, b).finish()
    full = s.simple_matches(0.25)
    assert len(full) > 10
    mm = s.max_match(0.25)
    outside = sorted(set(range(a.shape[1])) - set(mm.a.tolist()))
    assert outside, "the case needs a neuron outside the maximum match"
    for na, nb in [([0], []), ([], [5]), ([3, 17, outside[0]], [2])]:
        got = s.simple_matches(0.25, neurons_a=na, neurons_b=nb)
        # The matches found are the full search's; each asked neuron of the maximum match is in
        # one of them, a neuron outside it in none.
        assert as_sets(got) <= as_sets(full)
        for i in na:
            assert any(i in m.a for m in got) == (i in mm.a)
        for j in nb:
            assert any(j in m.b for m in got) == (j in mm.b)
        assert len(got) <= len(na) + len(nb)
    # Asking about every neuron gives the full search.
    every = s.simple_matches(0.25, neurons_a=range(a.shape[1]), neurons_b=range(b.shape[1]))
    assert as_sets(every) == as_sets(full)


def test_unknown_witness_neurons_are_clear_errors() -> None:
    a, b = blocks(n_blocks=8)
    a[:, 2] = 0.0  # a dead neuron
    s = spanmatch.Accumulator().update(a, b).finish()
    with pytest.raises(ValueError, match=r"neuron index 999 is out of range for side A"):
        s.simple_matches(0.25, neurons_a=[999])
    with pytest.raises(ValueError, match=r"out of range for side B"):
        s.simple_matches(0.25, neurons_b=[b.shape[1]])
    with pytest.raises(ValueError, match=r"neuron A2 is dead"):
        s.simple_matches(0.25, neurons_a=[2])
    # Under the literal definition a dead neuron is its own simple match.
    got = s.simple_matches(0.25, dead="match", neurons_a=[2])
    assert [(m.a.tolist(), m.b.tolist()) for m in got] == [([2], [])]


def test_max_match_reuses_the_profile() -> None:
    rng = np.random.default_rng(5)
    latent = rng.standard_normal((2400, 60))
    a = np.maximum(latent @ rng.standard_normal((60, 600)) / 8 + 0.3 * rng.standard_normal((2400, 600)), 0)
    b = np.maximum(latent @ rng.standard_normal((60, 600)) / 8 + 0.3 * rng.standard_normal((2400, 600)), 0)
    s = spanmatch.Accumulator().update(a, b).finish()
    t0 = time.perf_counter()
    p = s.profile()
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    matches = [s.max_match(e) for e in np.linspace(0, 1, 21)]
    after = time.perf_counter() - t0
    for m in matches:
        assert m.a.tolist() == np.flatnonzero(p.thresholds_a <= m.eps).tolist()
        assert m.b.tolist() == np.flatnonzero(p.thresholds_b <= m.eps).tolist()
    # 21 maximum matches from the stored profile cost far less than one profile.
    assert after < first, (first, after)
    # Other options get their own profile.
    assert s.max_match(0.5, tol=1e-4).mms == pytest.approx(p.mms(0.5), abs=0.05)
