"""Speed of the Python front, side by side with the CLI and with numpy, in one run.

    python python/benchmarks/bench_python.py                 # 1,000,000 x (256 + 256), 3 repeats
    python python/benchmarks/bench_python.py --rows 200000   # smaller

Prints medians and ratios:
1. ``Accumulator.update`` on float32 numpy arrays vs the CLI's pass over the same data saved as
   .npy files and read from the page cache (``spanmatch bench-stats``: read + Gram), and vs
   numpy's own float64 Gram product of the joint matrix (``M.T @ M`` in blocks, the strongest
   plain-numpy alternative);
2. per-call overhead: 10,000 updates of 100 rows vs one update of 1,000,000 rows;
3. Dask: ``spanmatch.dask.compare`` on a LocalCluster of 2 worker processes vs the in-process
   Accumulator + analysis on the same data.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import spanmatch
import spanmatch.dask

ROOT = Path(__file__).resolve().parents[2]


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up: page faults, thread pools
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--neurons", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--cli", default=str(ROOT / "target" / "release" / "spanmatch"))
    p.add_argument("--skip-dask", action="store_true")
    args = p.parse_args()
    n, rows = args.neurons, args.rows
    rng = np.random.default_rng(0)
    print(f"data: {rows:,} rows x ({n} + {n}) neurons, float32 ({2 * rows * n * 4 / 1e9:.2f} GB)")
    a = rng.standard_normal((rows, n), dtype=np.float32)
    b = (a[:, ::-1] + rng.standard_normal((rows, n), dtype=np.float32)).astype(np.float32)

    # 1. Accumulator.update vs the CLI pass vs numpy.
    t_py = median_time(lambda: spanmatch.Accumulator().update(a, b), args.repeats)

    def numpy_gram() -> None:
        g = np.zeros((2 * n, 2 * n))
        step = max(1, (8 << 20) // (8 * 2 * n))
        for lo in range(0, rows, step):
            m = np.concatenate([a[lo : lo + step], b[lo : lo + step]], axis=1).astype(np.float64)
            g += m.T @ m

    t_np = median_time(numpy_gram, args.repeats)
    t_cli = None
    if Path(args.cli).is_file():
        with tempfile.TemporaryDirectory() as d:
            fa, fb = Path(d) / "a.npy", Path(d) / "b.npy"
            np.save(fa, a)
            np.save(fb, b)
            cmd = [args.cli, "bench-stats", "--a", str(fa), "--b", str(fb)]
            subprocess.run(cmd, check=True, capture_output=True)  # warm the page cache
            cli_times = []
            for _ in range(args.repeats):
                out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                m = re.search(r"read \+ Gram accumulation:\s+([0-9.]+) s", out)
                if m:
                    cli_times.append(float(m.group(1)))
            t_cli = statistics.median(cli_times) if cli_times else None
    print(f"Accumulator.update          {t_py:8.3f} s")
    if t_cli is not None:
        print(f"CLI pass (page cache)       {t_cli:8.3f} s   Python speed / CLI speed = {t_cli / t_py:.2f}x")
    else:
        print("CLI pass                    (binary not built: cargo build --release)")
    print(f"numpy f64 Gram, 8 MiB blocks{t_np:8.3f} s   spanmatch is {t_np / t_py:.2f}x numpy")

    # 2. Per-call overhead.
    small = 100
    k = min(10_000, rows // small)
    sa, sb = a[: k * small], b[: k * small]

    def many() -> None:
        acc = spanmatch.Accumulator()
        for i in range(k):
            acc.update(sa[i * small : (i + 1) * small], sb[i * small : (i + 1) * small])

    t_many = median_time(many, args.repeats)
    t_one = median_time(lambda: spanmatch.Accumulator().update(sa, sb), args.repeats)
    print(f"{k:,} updates of {small} rows  {t_many:8.3f} s   vs one update of {k * small:,} rows {t_one:.3f} s: {t_many / t_one:.2f}x")

    # 3. Dask on 2 local worker processes.
    if not args.skip_dask:
        import dask.array as da
        from distributed import Client, LocalCluster

        with LocalCluster(processes=True, n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, Client(cluster):
            chunk = max(1, rows // 16)
            xa = da.from_array(a, chunks=(chunk, -1))
            xb = da.from_array(b, chunks=(chunk, -1))
            xa, xb = xa.persist(), xb.persist()  # data already on the workers, as it would be
            t_dask = median_time(lambda: spanmatch.dask.compare(xa, xb), args.repeats)
        t_local = median_time(lambda: spanmatch.compare(a, b), args.repeats)
        print(f"dask.compare (2 workers)    {t_dask:8.3f} s   vs in-process compare {t_local:.3f} s: {t_dask / t_local:.2f}x")


if __name__ == "__main__":
    sys.exit(main())
