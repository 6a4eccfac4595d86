"""What the measures cost in ``spanmatch reproduce``: its analysis time (``timings.match_seconds``
of results.json: every comparison's match, measures and controls, after the one extraction pass)
with each ``--measures`` set, runs alternated in one process tree on the same cached checkpoints.

The nets are trained once (first run; ``reproduce`` reuses finished checkpoints in ``--out``),
then every set is run ``--repeats`` times in turn (cka, set 2, set 3, cka, ...). The analysis of
``reproduce`` computes, per layer, the trained pairs' measures with their bootstrap (``--bootstrap``
resamples) and the rotation null (``--null-draws``), the untrained pairs' measures with their
bootstrap, and the self and shuffled-null comparisons' measures: the measures are computed about
``pairs x (2 + 2 x resamples + draws) + 3`` times per layer.

Without ``--data-dir`` the data is a generated Fashion-MNIST-format set (a class decides where a
bright bar sits; ``--train`` training and ``--test`` test images), so the nets are real nets of
the default shape; the analysis time depends on the layer widths, the test images (rows) only
through the statistics pass, which ``match_seconds`` does not include.

    python python/benchmarks/bench_reproduce_measures.py --repeats 3
    python python/benchmarks/bench_reproduce_measures.py --sets cka "cka,one_to_one" all --bootstrap 200

Prints the median analysis time of each set, its ratio to the first set, and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def binary() -> Path:
    env = os.environ.get("SPANMATCH_BIN")
    p = Path(env) if env else ROOT / "target" / "release" / "spanmatch"
    if not p.is_file():
        sys.exit(f"{p}: build it first (cargo build --release -p spanmatch) or set SPANMATCH_BIN")
    return p


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def make_split(directory: Path, prefix: str, n: int, seed: int) -> None:
    """Images whose class decides where a bright bar sits (a column and a row), plus noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    yy, xx = np.mgrid[0:28, 0:28]
    images = rng.integers(0, 60, size=(n, 28, 28))
    for c in range(10):
        bar = (xx // 3 == c) | (yy // 3 == (c + 3) % 10)
        images[labels == c] += 180 * bar
    write_idx(directory / f"{prefix}-images-idx3-ubyte", np.minimum(images, 255))
    write_idx(directory / f"{prefix}-labels-idx1-ubyte", labels)


def run(spanmatch: Path, out: Path, data: Path, measures: str, extra: List[str]) -> Dict[str, float]:
    cmd = [str(spanmatch), "reproduce", "--out", str(out), "--data-dir", str(data), "--measures", measures, *extra]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    wall = time.perf_counter() - t
    timings = json.loads((out / "results.json").read_text())["timings"]
    return {"match": float(timings["match_seconds"]), "wall": wall}


def main(argv: Sequence[str] = ()) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sets", nargs="+", default=["cka", "cka,one_to_one", "cka,one_to_one,soft_match,perm_procrustes", "all"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--data-dir", type=Path, help="a Fashion-MNIST directory (default: generated data)")
    p.add_argument("--train", type=int, default=3000, help="training images of the generated data")
    p.add_argument("--test", type=int, default=10000, help="test images of the generated data")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--bootstrap", type=int, default=200)
    p.add_argument("--null-draws", type=int, default=5)
    p.add_argument("--out", type=Path, help="output directory (kept; default: a temporary one)")
    args = p.parse_args(argv or None)
    spanmatch = binary()
    with tempfile.TemporaryDirectory(prefix="spanmatch-bench-") as tmp:
        data = args.data_dir
        if data is None:
            data = Path(tmp) / "data"
            data.mkdir()
            make_split(data, "train", args.train, 1)
            make_split(data, "t10k", args.test, 2)
        out = args.out or Path(tmp) / "out"
        extra = [
            "--epochs", str(args.epochs), "--bootstrap", str(args.bootstrap),
            "--null-draws", str(args.null_draws), "--top-inputs", "0",
        ]
        t = time.perf_counter()
        run(spanmatch, out, data, args.sets[0], extra)
        print(f"first run (training the nets, then one analysis): {time.perf_counter() - t:.0f} s")
        times: Dict[str, List[float]] = {s: [] for s in args.sets}
        walls: Dict[str, List[float]] = {s: [] for s in args.sets}
        for _ in range(args.repeats):
            for s in args.sets:
                r = run(spanmatch, out, data, s, extra)
                times[s].append(r["match"])
                walls[s].append(r["wall"])
        first = statistics.median(times[args.sets[0]])
        print(
            f"reproduce analysis time (match + measures + controls), median of {args.repeats}; "
            f"--bootstrap {args.bootstrap} --null-draws {args.null_draws}; load average {os.getloadavg()[0]:.1f}"
        )
        print(f"{'--measures':48s} {'analysis s':>10s} {'ratio':>7s} {'whole run s':>12s}")
        for s in args.sets:
            m = statistics.median(times[s])
            print(f"{s:48s} {m:10.1f} {m / first:7.2f} {statistics.median(walls[s]):12.1f}")


if __name__ == "__main__":
    main()
