"""Wide layers (issue 21) through the Python ``Accumulator`` / ``Stats`` API, side by side with
numpy doing the floor factorisations in the same run.

    python python/benchmarks/bench_wide.py                          # 1024, 2048, 3072, 4096
    python python/benchmarks/bench_wide.py --sizes 1024 2048 --repeats 3
    python python/benchmarks/bench_wide.py --skip simple witness measures
    python python/benchmarks/bench_wide.py --simple-cap 120 --witness-cap 300

Data ("structured ReLU", seeded): rows = 4 x neurons; both nets read a shared latent subspace of
rank neurons/8 through their own random mixing (unit-variance signal), plus independent noise
whose standard deviation is drawn per neuron, uniformly between 0.1 and 1.9 times 0.3, then a
ReLU. (The same recipe as ``crates/spanmatch-core/examples/wide_timing.rs``, not the same random
numbers.)

Per size it prints the median of ``--repeats`` runs (single runs for the capped parts) of:

* the statistics pass (``Accumulator().update(a, b).finish()``) against numpy's float64 Gram
  product of the joint matrix (``m.T @ m``);
* the ε-profile (``Stats.profile()``, on a fresh ``Stats`` each time, copied before the clock
  starts), ``max_match(0.25)`` on a fresh ``Stats`` (it computes the profile) and after the profile (read from it), against numpy
  doing the profile's factorisations of each side: Cholesky of the side's Gram block, the two
  triangular solves with the other side's columns (scipy when installed, ``numpy.linalg.solve``
  otherwise) and the inverse of the Gram block;
* every measure ``Stats.measures`` accepts, against numpy's ``eigh`` of each side's centred Gram
  block plus the singular values and the full SVD of an n x n matrix (the floor the issue names;
  ``--skip floor`` leaves it out, it takes a minute at 4096);
* all simple matches at ε = 0.5, in a child process stopped after ``--simple-cap`` seconds;
* one witness query (``Stats.simple_matches(0.5, neurons_a=[k])``), in a child process stopped
  after ``--witness-cap`` seconds.

Processes: numpy's BLAS (the data's generation, the floor) runs in child processes, so that the
process timing spanmatch runs nothing else; the data goes from the generating child to the
others through .npy files in a temporary directory. (An earlier version timed the copy of the
statistics, ``fresh``, with the profile: at 4096 + 4096 that copy alone added about 4 s.)

Times are wall clock on whatever else the machine runs: say the load when quoting them.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import tempfile
import time
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

import spanmatch

try:  # Optional: only the floor's triangular solves use it.
    from scipy.linalg import solve_triangular as _solve_triangular
except ImportError:  # pragma: no cover - depends on the environment
    _solve_triangular = None


def relu_layers(n: int, seed: int = 21, rank_div: float = 8.0, noise: float = 0.3) -> Tuple[np.ndarray, np.ndarray]:
    """The structured ReLU layer pair of ``n + n`` neurons (see the module docstring)."""
    rng = np.random.default_rng(seed)
    rows = 4 * n
    rank = max(int(n / rank_div), 1)
    latent = rng.standard_normal((rows, rank))
    out = []
    for _ in range(2):
        z = latent @ (rng.standard_normal((rank, n)) / np.sqrt(rank))
        sigma = noise * (0.1 + 1.8 * rng.uniform(size=n))
        z += rng.standard_normal((rows, n)) * sigma
        np.maximum(z, 0.0, out=z)
        out.append(z)
    return out[0], out[1]


def timed(fn: Callable[[], object], repeats: int) -> Tuple[float, object]:
    """Median wall time of ``repeats`` calls, and the last result."""
    times, result = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def fresh(stats: spanmatch.Stats) -> spanmatch.Stats:
    """A copy of the statistics without any profile computed on it yet."""
    return spanmatch.Stats.from_flat(stats.to_flat())


def timed_fresh(stats: spanmatch.Stats, fn: Callable[[spanmatch.Stats], object], repeats: int) -> Tuple[float, object]:
    """Median wall time of ``repeats`` calls of ``fn`` on a fresh copy of ``stats`` each (the
    copy made before the clock starts: at 4096 + 4096 it alone takes seconds), and the last
    result."""
    times, result = [], None
    for _ in range(repeats):
        s = fresh(stats)
        t = time.perf_counter()
        result = fn(s)
        times.append(time.perf_counter() - t)
        del s
    return statistics.median(times), result


def side_floor(g: np.ndarray, n: int) -> None:
    """numpy doing the profile's factorisations for both sides of the joint Gram matrix."""
    for lo, hi, olo, ohi in ((0, n, n, 2 * n), (n, 2 * n, 0, n)):
        gmm = g[lo:hi, lo:hi]
        gmq = g[lo:hi, olo:ohi]
        low = np.linalg.cholesky(gmm)
        if _solve_triangular is not None:
            p = _solve_triangular(low, gmq, lower=True)
            _solve_triangular(low.T, p, lower=False)
            linv = _solve_triangular(low, np.eye(n), lower=True)
        else:
            p = np.linalg.solve(low, gmq)
            np.linalg.solve(low.T, p)
            linv = np.linalg.inv(low)
        linv.T @ linv


def measures_floor(g: np.ndarray, n: int, rows: int, sums: np.ndarray) -> Dict[str, float]:
    """numpy's eigh of each side's centred Gram block, singular values and full SVD of an
    n x n block: the factorisations the measures need."""
    c = g - np.outer(sums, sums) / rows
    out: Dict[str, float] = {}
    t = time.perf_counter()
    np.linalg.eigh(c[:n, :n])
    np.linalg.eigh(c[n:, n:])
    out["eigh x2"] = time.perf_counter() - t
    t = time.perf_counter()
    np.linalg.svd(c[:n, n:], compute_uv=False)
    out["singular values"] = time.perf_counter() - t
    t = time.perf_counter()
    np.linalg.svd(c[:n, n:])
    out["full SVD"] = time.perf_counter() - t
    t = time.perf_counter()
    np.linalg.cholesky(c[:n, :n] + 1e-9 * np.trace(c[:n, :n]) / n * np.eye(n))
    out["Cholesky"] = time.perf_counter() - t
    return out


def _generate(n: int, folder: str) -> None:
    """Child: writes the layer pair of ``n + n`` neurons to ``folder`` (a.npy, b.npy)."""
    a, b = relu_layers(n)
    np.save(os.path.join(folder, "a.npy"), a)
    np.save(os.path.join(folder, "b.npy"), b)


def _floor(n: int, folder: str, repeats: int, skip: List[str], queue: "mp.Queue[Dict[str, object]]") -> None:
    """Child: numpy's floor of every part, on the pair in ``folder``."""
    a, b = np.load(os.path.join(folder, "a.npy")), np.load(os.path.join(folder, "b.npy"))
    rows = a.shape[0]
    m = np.concatenate([a, b], axis=1)
    del a, b
    out: Dict[str, object] = {}
    out["pass"], g = timed(lambda: m.T @ m, repeats)
    sums = m.sum(axis=0)
    del m
    if "profile" not in skip:
        out["profile"], _ = timed(lambda: side_floor(g, n), repeats)
    if "measures" not in skip and "floor" not in skip:
        out["measures"] = measures_floor(g, n, rows, sums)
    queue.put(out)


def in_child(target: Callable[..., None], *args: object, answers: bool = False) -> Optional[Dict[str, object]]:
    """Runs ``target(*args)`` in a spawned child process. With ``answers``, ``target`` takes a
    queue as its last argument and puts one dict on it, which is returned."""
    ctx = mp.get_context("spawn")
    queue: "mp.Queue[Dict[str, object]]" = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue) if answers else args)
    proc.start()
    out = queue.get() if answers else None
    proc.join()
    if proc.exitcode != 0:
        raise RuntimeError(f"{target.__name__} child failed (exit code {proc.exitcode})")
    return out


def _child(kind: str, n: int, k: int, queue: "mp.Queue[Tuple[str, float, str]]") -> None:
    a, b = relu_layers(n)
    stats = spanmatch.Accumulator().update(a, b).finish()
    del a, b
    queue.put(("ready", 0.0, ""))
    t = time.perf_counter()
    if kind == "simple":
        found = stats.simple_matches(0.5)
        what = f"{len(found)} matches, largest {max((m.size for m in found), default=0)}"
    else:
        mm = stats.max_match(0.5)
        if mm.a.size == 0:
            queue.put((kind, 0.0, "empty maximum match at 0.5"))
            return
        neuron = int(mm.a[k % mm.a.size])
        t = time.perf_counter()
        found = stats.simple_matches(0.5, neurons_a=[neuron])
        what = f"A{neuron}: match of {found[0].size if found else 0} neurons"
    queue.put((kind, time.perf_counter() - t, what))


def capped(kind: str, n: int, cap: float, k: int = 0) -> str:
    """Runs a simple-match computation in a child process, stopped after ``cap`` seconds."""
    ctx = mp.get_context("spawn")
    queue: "mp.Queue[Tuple[str, float, str]]" = ctx.Queue()
    proc = ctx.Process(target=_child, args=(kind, n, k, queue))
    start = time.perf_counter()
    proc.start()
    # The child regenerates the data and runs the pass first; the cap starts when it is ready.
    try:
        queue.get(timeout=3600)
    except Exception:  # queue.Empty, or the child died
        proc.terminate()
        proc.join()
        return f"failed before the computation (exit code {proc.exitcode})"
    ready = time.perf_counter()
    proc.join(cap)
    if proc.is_alive():
        proc.terminate()
        proc.join()
        return f"> {cap:.0f} s (stopped after {time.perf_counter() - ready:.0f} s)"
    if queue.empty():
        return f"failed (exit code {proc.exitcode})"
    _, seconds, what = queue.get()
    return f"{seconds:.2f} s ({what}; setup {ready - start:.0f} s)"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 3072, 4096])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--skip",
        nargs="*",
        default=[],
        choices=["profile", "measures", "floor", "simple", "witness"],
        help="parts to leave out",
    )
    p.add_argument("--simple-cap", type=float, default=600.0, help="seconds before all simple matches are stopped")
    p.add_argument("--witness-cap", type=float, default=300.0, help="seconds before the witness query is stopped")
    args = p.parse_args()
    skip = set(args.skip)
    names: List[str] = list(spanmatch._native.measure_names())
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"spanmatch {spanmatch.__version__}, numpy {np.__version__}, {os.cpu_count()} CPUs, load {load:.2f}")
    print(f"medians of {args.repeats}; measures: {', '.join(names)}")
    for n in args.sizes:
        with tempfile.TemporaryDirectory(prefix="bench-wide-") as folder:
            in_child(_generate, n, folder)
            a, b = np.load(os.path.join(folder, "a.npy")), np.load(os.path.join(folder, "b.npy"))
            rows = a.shape[0]
            print(f"\n== {n} + {n} neurons, {rows} rows ==")
            t_pass, stats = timed(lambda: spanmatch.Accumulator().update(a, b).finish(), args.repeats)
            del a, b
            if "profile" not in skip:
                t_prof, prof = timed_fresh(stats, lambda s: s.profile(), args.repeats)
                t_mm, mm = timed_fresh(stats, lambda s: s.max_match(0.25), args.repeats)
                stats.profile()
                t_mm_after, _ = timed(lambda: stats.max_match(0.25), max(args.repeats, 10))
            if "measures" not in skip:
                t_meas, values = timed_fresh(stats, lambda s: s.measures(names), 1)
            floor = in_child(_floor, n, folder, args.repeats, sorted(skip), answers=True) or {}
        t_np = float(floor["pass"])  # type: ignore[arg-type]
        print(f"statistics pass          {t_pass:8.2f} s   numpy m.T @ m {t_np:8.2f} s   ratio {t_pass / t_np:5.2f}")
        if "profile" not in skip:
            t_floor = float(floor["profile"])  # type: ignore[arg-type]
            print(
                f"ε-profile                {t_prof:8.2f} s   numpy floor (per side: Cholesky, 2 triangular solves, inverse) "
                f"{t_floor:8.2f} s   ratio {t_prof / t_floor:5.2f}"
            )
            print(f"max_match(0.25) alone    {t_mm:8.2f} s   after the profile {t_mm_after * 1e3:8.3f} ms")
            print(f"  max_epsilon {prof.max_epsilon:.4f}, mms(0.25) {mm.mms:.3f}, mms(0.5) {prof.mms(0.5):.3f}")
        if "measures" not in skip:
            shown = ", ".join(f"{k} {v:.4f}" for k, v in values.items() if isinstance(v, float))[:160]
            line = f"all measures             {t_meas:8.2f} s"
            if "measures" in floor:
                parts_t: Dict[str, float] = floor["measures"]  # type: ignore[assignment]
                parts = "  ".join(f"{k} {v:.2f} s" for k, v in parts_t.items())
                eig_svd = parts_t["eigh x2"] + parts_t["singular values"]
                line += f"   numpy: {parts}   ratio to eigh x2 + singular values {t_meas / eig_svd:5.2f}"
            print(line)
            print(f"  {shown}")
        if "simple" not in skip:
            print(f"simple matches at 0.5    {capped('simple', n, args.simple_cap)}")
        if "witness" not in skip:
            print(f"one witness at 0.5       {capped('witness', n, args.witness_cap)}")
        del stats


if __name__ == "__main__":
    main()
