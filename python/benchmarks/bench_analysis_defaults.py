"""What the analysis defaults of round 3 cost, on statistics alone (no data pass).

Two changes of the one analysis path are timed against the alternative, alternated in one run:

* the centred match is on by default: ``Stats.result(center=True)`` against ``center=False``
  (one more ε-profile of the same size per layer pair);
* simple matches now carry their sines on every front: ``Stats.result(simple=ε)`` (simple matches
  with sines, plus the profile) against ``Stats.simple_matches(ε)`` (simple matches only, no sines)
  plus ``Stats.result()`` (the profile).

Layers: two ReLU layers of n + n neurons over ``rows`` rows sharing half their directions.
Prints the median of ``--repeats`` runs of each and the ratios, with the machine's load average.

    python python/benchmarks/bench_analysis_defaults.py --n 256 --rows 20000 --repeats 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Callable, Dict, List, Sequence

import numpy as np

import spanmatch


def layers(n: int, rows: int, seed: int = 0) -> spanmatch.Stats:
    rng = np.random.default_rng(seed)
    shared = rng.standard_normal((rows, n // 2))
    a = np.maximum(np.hstack([shared, rng.standard_normal((rows, n - n // 2))]), 0)
    b = np.maximum(np.hstack([shared @ rng.standard_normal((n // 2, n // 2)), rng.standard_normal((rows, n - n // 2))]), 0)
    return spanmatch.Accumulator().update(a, b).finish()


def alternate(fns: Dict[str, Callable[[], object]], repeats: int) -> Dict[str, float]:
    """Median wall time of each function, runs alternated (a, b, a, b, ...)."""
    times: Dict[str, List[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv: Sequence[str] = ()) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=256, help="neurons per side")
    p.add_argument("--rows", type=int, default=20_000)
    p.add_argument("--eps", type=float, default=0.8, help="ε of the simple matches (0.8: about 200 of them at the default size)")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv or None)
    st = layers(args.n, args.rows)
    print(f"{args.n}+{args.n} neurons, {args.rows} rows; load average {os.getloadavg()[0]:.1f}")
    t = alternate(
        {
            "center=True": lambda: st.result(center=True),
            "center=False": lambda: st.result(center=False),
        },
        args.repeats,
    )
    print(f"result(center=True) {t['center=True']:.3f} s, center=False {t['center=False']:.3f} s, "
          f"ratio {t['center=True'] / t['center=False']:.2f}")
    t = alternate(
        {
            "with sines": lambda: st.result(simple=args.eps, center=False),
            "without": lambda: (st.simple_matches(args.eps), st.result(center=False)),
        },
        args.repeats,
    )
    print(f"result(simple={args.eps}) with sines {t['with sines']:.3f} s, simple_matches + result "
          f"{t['without']:.3f} s, ratio {t['with sines'] / t['without']:.2f}")


if __name__ == "__main__":
    main()
