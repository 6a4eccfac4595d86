"""spanmatch against the paper's own algorithm, side by side in one run.

The paper's maximum-match algorithm works on the activations themselves: repeat "drop every neuron
of A whose vector is farther than ε (sine) from the span of B's remaining vectors, then the same for
B" until nothing changes, each round a least-squares projection of one side onto the other. Its
authors ran it in numpy. This script implements that algorithm in numpy in two ways and times
both against spanmatch on the same arrays, in the same process:

* ``gram``: the strongest numpy form: one pass over the rows computes the Gram matrix of
  [A | B] (``M.T @ M``), then every round projects with it (``numpy.linalg.lstsq`` on the Gram
  blocks, robust to rank deficiency), so the rounds cost the same whatever the number of rows;
* ``lstsq``: each round solves the least-squares problems on the activations themselves with
  ``numpy.linalg.lstsq``, the literal description (full workload only: it is slow).

Every ε is a separate run of the rounds, as in the paper's code.
spanmatch: ``spanmatch.compare(a, b, eps=...)``: one pass over the rows into Gram statistics, then
the ε-profile (every ε at once). The mms values are checked to agree.

Two workloads (the issues' "13x at 256+256/10k rows" and "69x on the sampled protocol at 512+512"):

* ``full``: fully connected layers, N rows x (n + n) neurons, all 5 ε;
* ``sampled``: the reference protocol for conv layers: draw 10,000 coordinates (rows) 16 times and
  average mms over the draws; spanmatch's compatibility mode (``spanmatch compare --sample-columns
  10000 --repeats 16``) does the same draws inside its one pass (run through the CLI here, with the
  arrays saved as .npy).

    python python/benchmarks/bench_authors.py                     # 256+256 x 10,000 rows; sampled 512+512
    python python/benchmarks/bench_authors.py --n 512 --rows 20000
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
from typing import List, Sequence, Tuple

import numpy as np

EPS = (0.15, 0.2, 0.25, 0.3, 0.5)
DEAD_TOL = 1e-12


def relu_layers(rows: int, n: int, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Two ReLU layers sharing a low-rank signal (rank n/4) plus independent parts: a realistic
    mix of matched and unmatched neurons."""
    rng = np.random.default_rng(seed)
    k = max(n // 4, 1)
    shared = rng.standard_normal((rows, k))
    a = shared @ rng.standard_normal((k, n)) + 0.7 * rng.standard_normal((rows, n))
    b = shared @ rng.standard_normal((k, n)) + 0.7 * rng.standard_normal((rows, n))
    return np.maximum(a, 0).astype(np.float32), np.maximum(b, 0).astype(np.float32)


def _sines(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Sine of each column of x to the span of y's columns (least squares on the activations)."""
    if y.shape[1] == 0:
        return np.ones(x.shape[1])
    coef, *_ = np.linalg.lstsq(y, x, rcond=None)
    res = x - y @ coef
    return np.linalg.norm(res, axis=0) / np.linalg.norm(x, axis=0)


def _gram_sines(g: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """The same sines from the Gram matrix g of [A | B]: sin^2(x) = 1 - g_xY G_YY^+ g_Yx / g_xx."""
    if len(ys) == 0:
        return np.ones(len(xs))
    gyy = g[np.ix_(ys, ys)]
    gyx = g[np.ix_(ys, xs)]
    coef, *_ = np.linalg.lstsq(gyy, gyx, rcond=None)
    proj = np.einsum("ij,ij->j", gyx, coef)
    return np.sqrt(np.clip(1.0 - proj / np.diag(g)[xs], 0.0, 1.0))


def paper_mms(a: np.ndarray, b: np.ndarray, eps: Sequence[float], method: str) -> List[float]:
    """The paper's maximum match by rounds of projections (dead neurons dropped, counted in the
    denominator), one run of the rounds per ε. ``method``: ``lstsq`` projects the activations;
    ``gram`` computes the Gram matrix of [A | B] once (one pass over the rows) and projects with
    it (the same sines, independent of the number of rows)."""
    n1, n2 = a.shape[1], b.shape[1]
    if method == "gram":
        m = np.hstack([a, b]).astype(np.float64)
        g = m.T @ m
        norms = np.sqrt(np.diag(g))
        sines = lambda xs, ys: _gram_sines(g, xs, ys)  # noqa: E731
    else:
        m = np.hstack([a, b]).astype(np.float64)
        norms = np.linalg.norm(m, axis=0)
        sines = lambda xs, ys: _sines(m[:, xs], m[:, ys])  # noqa: E731
    out = []
    for e in eps:
        ia = np.flatnonzero(norms[:n1] > DEAD_TOL)
        ib = n1 + np.flatnonzero(norms[n1:] > DEAD_TOL)
        while len(ia) and len(ib):
            keep_a = ia[sines(ia, ib) <= e]
            keep_b = ib[sines(ib, keep_a) <= e] if len(keep_a) else ib[:0]
            if len(keep_a) == len(ia) and len(keep_b) == len(ib):
                break
            ia, ib = keep_a, keep_b
        if not (len(ia) and len(ib)):
            ia, ib = ia[:0], ib[:0]
        out.append((len(ia) + len(ib)) / (n1 + n2))
    return out


def timed(fn, repeats: int):
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def full(rows: int, n: int, repeats: int) -> dict:
    import spanmatch

    a, b = relu_layers(rows, n, 0)
    t_ours, res = timed(lambda: spanmatch.compare(a, b, eps=EPS, center=False), repeats)
    ours = [float(m) for m in res["layer"].mms]
    out = {"workload": f"full {n}+{n} x {rows} rows, 5 eps", "spanmatch_s": t_ours}
    for method in ("gram", "lstsq"):
        t, mms = timed(lambda: paper_mms(a, b, EPS, method), repeats if method == "gram" else 1)
        out[f"paper_{method}_s"] = t
        out[f"ratio_{method}"] = t / t_ours
        out[f"mms_agree_{method}"] = bool(np.allclose(mms, ours, atol=1.5 / (2 * n)))
    out["mms"] = ours
    return out


def sampled(rows: int, n: int, columns: int, draws: int, repeats: int, exe: str) -> dict:
    a, b = relu_layers(rows, n, 1)
    rng = np.random.default_rng(7)
    samples = [rng.choice(rows, size=columns, replace=False) for _ in range(draws)]

    def paper(method: str) -> List[float]:
        runs = np.array([paper_mms(a[s], b[s], EPS, method) for s in samples])
        return [float(v) for v in runs.mean(axis=0)]

    out = {"workload": f"sampled protocol {n}+{n}, {rows} rows, {draws} draws of {columns}, 5 eps"}
    with tempfile.TemporaryDirectory() as tmp:
        pa, pb = os.path.join(tmp, "a.npy"), os.path.join(tmp, "b.npy")
        np.save(pa, a)
        np.save(pb, b)
        jp = os.path.join(tmp, "r.json")
        cmd = [exe, "compare", pa, pb, "--eps", ",".join(map(str, EPS)), "--sample-columns",
               str(columns), "--repeats", str(draws), "--json", jp, "--measures", "match", "--no-center"]

        def ours() -> dict:
            subprocess.run(cmd, check=True, capture_output=True)
            with open(jp, encoding="utf-8") as f:
                return json.load(f)

        t_ours, report = timed(ours, repeats)
    out["spanmatch_cli_s"] = t_ours
    layer = report["comparisons"][0]["layers"][0]
    out["spanmatch_sampled_mms"] = layer.get("sampled", {}).get("mms_mean")
    for method in ("gram",):
        t, mms = timed(lambda: paper(method), 1)
        out[f"paper_{method}_s"] = t
        out[f"ratio_{method}"] = t / t_ours
        out[f"paper_{method}_mms"] = mms
    return out


def main(argv: Sequence[str] = ()) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=256, help="neurons per side, full workload")
    p.add_argument("--rows", type=int, default=10_000, help="rows, full workload")
    p.add_argument("--sampled-n", type=int, default=512, help="neurons per side, sampled protocol")
    p.add_argument("--sampled-rows", type=int, default=100_000, help="rows (coordinates) of the conv layer")
    p.add_argument("--draws", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3, help="timing repeats (median) of the fast variants")
    p.add_argument("--skip-sampled", action="store_true")
    p.add_argument("--exe", default=os.environ.get("SPANMATCH_BIN", "target/release/spanmatch"))
    args = p.parse_args(list(argv) or None)
    print(json.dumps(full(args.rows, args.n, args.repeats), indent=1), flush=True)
    if not args.skip_sampled:
        print(json.dumps(sampled(args.sampled_rows, args.sampled_n, 10_000, args.draws, 1, args.exe), indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
