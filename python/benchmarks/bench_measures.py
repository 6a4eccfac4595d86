"""All similarity measures of one layer pair from its statistics, against the numpy/scipy floor.

For each width N (default 512 1024 2048 4096) the statistics of structured ReLU data are built
(rows = 4N: a shared subspace of dimension N/2 mixed into both layers plus per-neuron noise,
through a ReLU). Then, alternating, ``REPEATS`` times each:

* spanmatch: ``Stats.measures`` with every measure name;
* the floor: numpy (LAPACK) and scipy doing the same factorisations from the same centred
  blocks — one ``eigh`` per side, the rotation ``B = Vxᵀ Cxy Vy``, ``eigh`` of the CCA Gram
  ``M Mᵀ`` (with vectors, for PWCCA) and its projection, ``eigvalsh`` of the SVCCA Gram (the
  leading directions that explain 99% of each side's variance, as the measure keeps; an earlier
  version kept half the directions, which under-counted it), Procrustes and shape Gram matrices, and two ``linear_sum_assignment`` (one-to-one, permutation
  Procrustes). Per-stage medians are printed.

The medians and their ratio (spanmatch / floor) are printed; the load on the machine is printed
too (timings on a shared machine are noisy: compare ratios from one run).

    python python/benchmarks/bench_measures.py [N ...] [--repeats R]

Needs numpy, scipy and the spanmatch package (``maturin develop --release``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Callable, Dict, List, Tuple

import numpy as np
from scipy.optimize import linear_sum_assignment

import spanmatch

ALL = [
    "cka",
    "cca",
    "svcca",
    "pwcca",
    "procrustes",
    "one_to_one",
    "soft_match",
    "perm_procrustes",
    "predictivity",
    "shape",
]


def relu_pair(n: int, seed: int = 7) -> spanmatch.Stats:
    """Statistics of two n-neuron ReLU layers sharing an n/2-dimensional subspace."""
    rng = np.random.default_rng(seed)
    rows, dim = 4 * n, max(n // 2, 1)
    mix_a, mix_b = rng.standard_normal((dim, n)), rng.standard_normal((dim, n))
    acc = spanmatch.Accumulator()
    for start in range(0, rows, 2048):
        b = min(2048, rows - start)
        basis = rng.standard_normal((b, dim))
        noise = np.sqrt(dim)
        xa = np.maximum(basis @ mix_a + noise * rng.standard_normal((b, n)), 0.0)
        xb = np.maximum(basis @ mix_b + noise * rng.standard_normal((b, n)), 0.0)
        acc.update(xa, xb)
    return acc.finish()


def centred_blocks(stats: spanmatch.Stats) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cxx, Cyy, Cxy from the statistics' joint Gram matrix, column sums and row count."""
    g, s, d = np.asarray(stats.gram), np.asarray(stats.sums), stats.rows
    c = g - np.outer(s, s) / d
    n1 = stats.n1
    return c[:n1, :n1], c[n1:, n1:], c[:n1, n1:]


def keep_99(ascending: np.ndarray) -> int:
    """How many leading eigenvalues (of an ascending list) make up 99% of their sum: SVCCA's
    rule (``SVCCA_KEEP_VARIANCE`` in the engine)."""
    desc = ascending[::-1]
    return int(min(np.searchsorted(np.cumsum(desc), 0.99 * desc.sum()) + 1, desc.size))


def floor(cxx: np.ndarray, cyy: np.ndarray, cxy: np.ndarray) -> Dict[str, float]:
    """Seconds of each factorisation stage, done with numpy/scipy."""
    out: Dict[str, float] = {}
    t = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        out[name] = now - t
        t = now

    lx, vx = np.linalg.eigh(cxx)
    ly, vy = np.linalg.eigh(cyy)
    lap("eigh")
    b = vx.T @ cxy @ vy
    lap("rotate")
    kx = int(np.sum(lx > 1e-10 * lx.max()))
    ky = int(np.sum(ly > 1e-10 * ly.max()))
    sx, sy = 1 / np.sqrt(lx[-kx:]), 1 / np.sqrt(ly[-ky:])
    m = b[-kx:, -ky:] * sx[:, None] * sy[None, :]
    rho2, u = np.linalg.eigh(m @ m.T)
    _ = (u.T * np.sqrt(lx[-kx:])) @ vx[:, -kx:].T
    lap("cca")
    # SVCCA: the leading directions explaining 99% of each side's variance (the measure's rule).
    ks, ls = keep_99(lx[-kx:]), keep_99(ly[-ky:])
    sv = m[-ks:, -ls:]
    np.linalg.eigvalsh(sv @ sv.T if ks <= ls else sv.T @ sv)
    lap("svcca")
    np.linalg.eigvalsh(cxy @ cxy.T)
    lap("procrustes")
    dx = 0.5 + 0.5 / np.sqrt(np.maximum(lx / lx.mean(), 1e-300))
    dy = 0.5 + 0.5 / np.sqrt(np.maximum(ly / ly.mean(), 1e-300))
    sh = b * dx[:, None] * dy[None, :]
    np.linalg.eigvalsh(sh @ sh.T)
    lap("shape")
    r = cxy / np.sqrt(np.outer(np.diag(cxx), np.diag(cyy)))
    linear_sum_assignment(r, maximize=True)
    lap("one_to_one")
    linear_sum_assignment(cxy, maximize=True)
    lap("perm_procrustes")
    return out


def timed(f: Callable[[], object]) -> float:
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[512, 1024, 2048, 4096])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}, cores {os.cpu_count()}")
    for n in args.sizes:
        t = time.perf_counter()
        stats = relu_pair(n)
        print(f"\n{n}+{n} neurons, {stats.rows} rows: statistics pass {time.perf_counter() - t:.2f} s")
        blocks = centred_blocks(stats)
        ours: List[float] = []
        theirs: List[float] = []
        stages: Dict[str, List[float]] = {}
        for _ in range(args.repeats):
            ours.append(timed(lambda: stats.measures(ALL)))
            t = time.perf_counter()
            laps = floor(*blocks)
            theirs.append(time.perf_counter() - t)
            for k, v in laps.items():
                stages.setdefault(k, []).append(v)
        for k, v in stages.items():
            print(f"  floor {k:16} {statistics.median(v):8.3f} s")
        a, b = statistics.median(ours), statistics.median(theirs)
        staged = sum(statistics.median(v) for v in stages.values())
        print(
            f"  spanmatch all measures {a:8.3f} s | numpy/scipy floor {b:8.3f} s "
            f"(sum of stage medians {staged:.3f} s) | ratio {a / b:.2f} ({a / staged:.2f})"
        )


if __name__ == "__main__":
    main()
