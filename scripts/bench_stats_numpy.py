#!/usr/bin/env python3
"""Baseline for the statistics pass: numpy reading two .npy activation files in row blocks,
converting each block to float64 and accumulating G += M.T @ M (M = [X_block | Y_block]).

    python3 scripts/bench_stats_numpy.py make --rows 1000000 --neurons 256 --out /tmp/big
    python3 scripts/bench_stats_numpy.py run /tmp/big/a.npy /tmp/big/b.npy [--f32]

`make` writes two float32 [rows, neurons] files (ReLU of a shared latent part plus noise).
`run` prints the wall time of the pass (median of --repeats) and the threads numpy's BLAS used.
"""
import argparse
import os
import statistics
import time

import numpy as np


def make(args):
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(0)
    k = max(1, args.neurons // 2)
    mix_a = rng.standard_normal((k, args.neurons)).astype(np.float32)
    mix_b = rng.standard_normal((k, args.neurons)).astype(np.float32)
    shape = (args.rows, args.neurons)
    fa = np.lib.format.open_memmap(os.path.join(args.out, "a.npy"), "w+", np.float32, shape)
    fb = np.lib.format.open_memmap(os.path.join(args.out, "b.npy"), "w+", np.float32, shape)
    step = 65536
    for s in range(0, args.rows, step):
        e = min(args.rows, s + step)
        z = rng.standard_normal((e - s, k)).astype(np.float32)
        fa[s:e] = np.maximum(z @ mix_a + 2 * rng.standard_normal((e - s, args.neurons), dtype=np.float32), 0)
        fb[s:e] = np.maximum(z @ mix_b + 2 * rng.standard_normal((e - s, args.neurons), dtype=np.float32), 0)
    fa.flush()
    fb.flush()
    print(f"wrote {args.out}/a.npy and b.npy: {shape} float32 each")


def run(args):
    a = np.load(args.a, mmap_mode="r")
    b = np.load(args.b, mmap_mode="r")
    dtype = np.float32 if args.f32 else np.float64
    n = a.shape[1] + b.shape[1]
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        g = np.zeros((n, n), dtype)
        for s in range(0, a.shape[0], args.block_rows):
            e = min(a.shape[0], s + args.block_rows)
            m = np.hstack([a[s:e], b[s:e]]).astype(dtype)
            g += m.T @ m
        times.append(time.perf_counter() - t)
    try:
        from threadpoolctl import threadpool_info
        blas = [(i.get("internal_api"), i.get("num_threads")) for i in threadpool_info()]
    except ImportError:
        blas = "threadpoolctl not installed"
    print(f"numpy {'f32' if args.f32 else 'f64'} stats pass over {a.shape[0]} rows x {n} neurons: "
          f"median {statistics.median(times):.2f} s of {args.repeats} (all: {[round(x, 2) for x in times]}); BLAS {blas}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("--rows", type=int, default=1_000_000)
    m.add_argument("--neurons", type=int, default=256)
    m.add_argument("--out", required=True)
    r = sub.add_parser("run")
    r.add_argument("a")
    r.add_argument("b")
    r.add_argument("--block-rows", type=int, default=2048)
    r.add_argument("--repeats", type=int, default=3)
    r.add_argument("--f32", action="store_true")
    args = p.parse_args()
    make(args) if args.cmd == "make" else run(args)


if __name__ == "__main__":
    main()
