"""What the report of a result costs (issue 19: ``report()`` under 10 s for 15 layers).

A result of 15 layer pairs (widths 64 to 512, ``--rows`` inputs, simple matches at ε = 0.5 and
``top_inputs=8``, computed once, not timed) is reported with ``Result.report`` from a torch
``TensorDataset`` of CIFAR-sized float images (3 x 32 x 32), as a user's dataset would give them.
Timed, alternated in one run (median of ``--repeats``):

* ``report(inputs=...)``: the whole call: the engine's choice of neurons, reading every image
  shown from the dataset, the PNG thumbnails, the page, results.json and the PNG figures;
* ``report(inputs=..., png=False)``: the same without the PNG figures;
* ``spanmatch report results.json`` (the CLI on the results.json the first call wrote, the same
  renderer without Python): what the Python side adds;
* ``_repr_html_``: the notebook view of the same result.

    python python/benchmarks/bench_report.py --rows 10000 --repeats 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Sequence

import numpy as np

import spanmatch

WIDTHS = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512, 512, 512]


def build(rows: int, seed: int = 0) -> spanmatch.Result:
    """15 dense ReLU layer pairs sharing a quarter of their directions neuron by neuron (one-to-one
    simple matches), a quarter up to a mixing (larger simple matches), the rest private."""
    rng = np.random.default_rng(seed)
    acts_a, acts_b = {}, {}
    for i, n in enumerate(WIDTHS):
        q = n // 4
        s1 = np.maximum(rng.standard_normal((rows, q)), 0)
        s2 = rng.standard_normal((rows, q))
        mix = rng.standard_normal((q, q))
        a = np.hstack([s1, np.maximum(s2, 0), np.maximum(rng.standard_normal((rows, n - 2 * q)), 0)])
        b = np.hstack([s1[:, rng.permutation(q)] * 1.5, np.maximum(s2 @ mix, 0), np.maximum(rng.standard_normal((rows, n - 2 * q)), 0)])
        acts_a[f"layer{i:02d}"], acts_b[f"layer{i:02d}"] = a.astype(np.float32), b.astype(np.float32)
    return spanmatch.compare(acts_a, acts_b, top_inputs=8, simple=0.5, eps=(0.25, 0.5))


def alternate(fns: Dict[str, Callable[[], object]], repeats: int) -> Dict[str, float]:
    """Median wall time of each function, runs alternated (a, b, c, a, b, c, ...)."""
    times: Dict[str, List[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv: Sequence[str] = ()) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=10_000, help="inputs")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--cli", default=os.environ.get("SPANMATCH_BIN", "target/release/spanmatch"), help="the spanmatch binary")
    args = p.parse_args(argv or None)
    import torch

    t = time.perf_counter()
    result = build(args.rows)
    print(f"result: {len(result)} layers, {args.rows} inputs, computed in {time.perf_counter() - t:.1f} s (not timed below)")
    g = torch.Generator().manual_seed(0)
    dataset = torch.utils.data.TensorDataset(torch.rand(args.rows, 3, 32, 32, generator=g), torch.arange(args.rows) % 10)
    out = Path(tempfile.mkdtemp(prefix="bench_report_"))
    result.report(out / "warm", inputs=dataset)
    shown = len(spanmatch._views.selection(result)["inputs"])
    size = (out / "warm" / "report.html").stat().st_size
    print(f"images shown: {shown}; report.html {size / 1e6:.2f} MB; load average {os.getloadavg()[0]:.1f}")
    have_cli = Path(args.cli).is_file()
    fns: Dict[str, Callable[[], object]] = {
        "report(inputs=...)": lambda: result.report(out / "a", inputs=dataset),
        "report(inputs=..., png=False)": lambda: result.report(out / "b", inputs=dataset, png=False),
    }
    if have_cli:
        fns["spanmatch report (CLI)"] = lambda: subprocess.run(
            [args.cli, "report", str(out / "warm" / "results.json"), "--out", str(out / "c")], check=True, capture_output=True
        )
    fns["_repr_html_"] = result._repr_html_
    med = alternate(fns, args.repeats)
    base = med["report(inputs=...)"]
    for k, v in med.items():
        print(f"{k:34s} median {v:7.3f} s   ratio to report(inputs=...) {v / base:5.2f}")
    if not have_cli:
        print(f"(the CLI was not found at {args.cli}; build it with cargo build --release)", file=sys.stderr)
    print(f"target: report() under 10 s for 15 layers: {'met' if base < 10 else 'NOT met'} ({base:.2f} s)")


if __name__ == "__main__":
    main()
