"""The floor under ``spanmatch.torch.compare`` on a CPU: the statistics' products alone.

For each layer pair of the models of ``bench_torch.py`` (two VGG-16 or two ResNet-18, every
ReLU output), one batch of real activations is captured, and the Gram products of that pair
are timed in isolation (no forward pass running, so no thread competition): the engine's
float64 accumulator (OpenBLAS ``dsyrk``, the default of ``spanmatch.torch.compare`` on a CPU),
its float32 products (``ssyrk``, summed in float64), and torch's float32 matrix product (MKL
``sgemm`` on a channels-last copy). The per-batch times, scaled to N inputs, are the least the
statistics can cost; with the bare forward passes over the same N inputs (timed here too) they
bound the ratio ``compare / bare passes`` from below:

    floor ratio = 1 + (products over N inputs) / (bare passes over N inputs)

Nothing else of a call is counted (hooks, gathers for the analysis, the ε-profiles), so a real
call is slower than its floor.

    python python/benchmarks/bench_gram_floor.py                 # VGG-16 and ResNet-18
    python python/benchmarks/bench_gram_floor.py --net vgg16 --n 10000
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Callable, Dict, List

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_torch import loader, models  # noqa: E402


def best(f: Callable[[], None], repeats: int) -> float:
    """Median wall time of ``repeats`` calls after one warm-up call."""
    f()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def capture(net: str, batch: int) -> List[tuple]:
    """One batch through both models: (name, output of A, output of B) for every ReLU call."""
    import torch
    from torch import nn

    a, b = models(net)
    x = next(iter(loader(batch, batch)))[0]
    outs: Dict[str, List[torch.Tensor]] = {"a": [], "b": []}
    names: List[str] = []
    hooks = []
    for side, model in (("a", a), ("b", b)):
        model.eval()
        for name, m in model.named_modules():
            if isinstance(m, nn.ReLU):
                def fn(_m, _i, out, side=side, name=name):
                    outs[side].append(out.detach().clone())
                    if side == "a":
                        names.append(name)
                hooks.append(m.register_forward_hook(fn))
    with torch.inference_mode():
        a(x)
        b(x)
    for h in hooks:
        h.remove()
    return list(zip(names, outs["a"], outs["b"]))


def bare(net: str, n: int, batch: int) -> float:
    import torch

    a, b = models(net)
    a.eval()
    b.eval()
    data = loader(n, batch)
    with torch.inference_mode():  # warm-up (first-call allocations), not timed
        x = next(iter(data))[0]
        a(x)
        b(x)
    t = time.perf_counter()
    with torch.inference_mode():
        for x, _ in data:
            a(x)
            b(x)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--net", choices=["vgg16", "resnet18", "both"], default="both")
    ap.add_argument("--n", type=int, default=10000, help="inputs the projection is for (default 10000)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--bare-n", type=int, default=1280, help="inputs for timing the bare passes (scaled to --n)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import torch

    import spanmatch

    nets = ["vgg16", "resnet18"] if args.net == "both" else [args.net]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; batch {args.batch}; "
          f"projected to {args.n} inputs")
    for net in nets:
        layers = capture(net, args.batch)
        scale = args.n / args.batch
        tot = {"engine f64": 0.0, "engine f32": 0.0, "torch f32": 0.0}
        flops = 0.0
        print(f"\n{net}: {len(layers)} layer pairs")
        print(f"{'layer':<20} {'rows':>8} {'n1+n2':>6} {'engine f64':>11} {'engine f32':>11} {'torch f32':>10}  (ms per batch)")
        for name, xa, xb in layers:
            va = xa.movedim(1, -1) if xa.dim() > 2 else xa
            vb = xb.movedim(1, -1) if xb.dim() > 2 else xb
            c = int(va.shape[-1]) + int(vb.shape[-1])
            rows = va.numel() // int(va.shape[-1])
            flops += rows * c * c  # multiply-adds of the full joint Gram per batch

            # Batches of fewer than 512 rows wait for a 512-row block (as in compare): time k
            # updates, one block product, and count a k-th of it per batch.
            k = max(1, -(-512 // rows))

            def engine(precision: str) -> Callable[[], None]:
                acc = spanmatch.Accumulator("nhwc", precision=precision)

                def run() -> None:
                    for _ in range(k):
                        acc.update(va, vb)

                return run

            def torch32() -> None:
                j = torch.cat([va.reshape(rows, -1), vb.reshape(rows, -1)], dim=1)
                (j.T @ j).to(torch.float64)

            t64 = best(engine("float64"), args.repeats) / k
            t32 = best(engine("float32"), args.repeats) / k
            tt = best(torch32, args.repeats)
            tot["engine f64"] += t64
            tot["engine f32"] += t32
            tot["torch f32"] += tt
            print(f"{name:<20} {rows:>8} {c:>6} {1e3 * t64:>11.1f} {1e3 * t32:>11.1f} {1e3 * tt:>10.1f}")
        tb = bare(net, args.bare_n, args.batch) * args.n / args.bare_n
        print(f"bare forward passes of both models: {tb:.1f} s for {args.n} inputs "
              f"(timed on {args.bare_n})")
        print(f"joint Gram multiply-adds: {flops * scale / 1e12:.2f} T for {args.n} inputs")
        for k, v in tot.items():
            s = v * scale
            print(f"  {k:<11} products {s:6.1f} s  -> floor ratio {1 + s / tb:.2f}x the bare passes")


if __name__ == "__main__":
    main()
