"""What ``top_inputs=8`` costs on the torch front (issue 19.1), side by side in one run.

A VGG-11 pair (CIFAR variant, width 1/2), every ReLU, CIFAR-sized random inputs. Variants,
each in a fresh subprocess, alternated over ``--repeats``: ``bare`` (the two forward passes),
``plain`` (``compare``, ``center=False``), ``top`` (the same with ``top_inputs=k``). Target:
``top`` ≤ 1.10 x ``plain``.

    python python/benchmarks/bench_torch_top_inputs.py            # 1,000 inputs
    python python/benchmarks/bench_torch_top_inputs.py --full     # 10,000 inputs
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _torch_common as common  # noqa: E402

VARIANTS = ("bare", "plain", "top")


def one(args: argparse.Namespace) -> None:
    import torch
    from torch import nn

    a, b = common.vgg("vgg11", args.width, 0), common.vgg("vgg11", args.width, 1)
    data = common.cifar_loader(args.n, args.batch)
    rec = {"n": args.n, "batch": args.batch, "k": args.k, "threads": torch.get_num_threads()}

    def go():
        if args.one == "bare":
            common.bare(a, b, data)
            return {}
        import spanmatch.torch as smt

        kw = dict(layers=nn.ReLU, progress=False, center=False)
        if args.one == "top":
            kw["top_inputs"] = args.k
        r = smt.compare(a, b, data, **kw)
        return {"layers": r.names}

    rec.update(common.timed(go))
    with open(args.out, "w") as f:
        json.dump(rec, f)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--full", action="store_true", help="10,000 inputs (the issue's size)")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--width", type=float, default=0.5)
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--json", help="write every measurement there")
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.full:
        args.n = 10_000
    if args.one:
        one(args)
        return
    argv = ["--n", str(args.n), "--batch", str(args.batch), "--width", str(args.width), "--k", str(args.k)]
    print(f"VGG-11 (width {args.width}) pair, every ReLU, {args.n} inputs, batch {args.batch}; {common.machine()}")
    recs = common.run_side_by_side(__file__, VARIANTS, argv, args.repeats)
    print()
    common.table(recs, "bare")
    ratio = common.median(recs, "top") / common.median(recs, "plain")
    print(f"\n  top_inputs={args.k}: {ratio:.3f} x the plain compare ({100 * (ratio - 1):+.1f}%; target ≤ +10%)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(recs, f, indent=1)


if __name__ == "__main__":
    main()
