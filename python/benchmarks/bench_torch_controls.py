"""What the controls cost on the torch front (issue 18.7), side by side in one run.

A VGG-11 pair (CIFAR variant, width 1/2, seeds 0 and 1), every ReLU (8 conv + 2 dense layers,
all positions), CIFAR-sized random inputs. Variants, each in a fresh subprocess, alternated
over ``--repeats``:

* ``bare``: the two models' forward passes alone;
* ``plain``: ``compare`` with no control (``center=False``);
* ``controls``: the controls computed from the statistics: centred, rotation null
  (``--null-draws``), bootstrap (``--bootstrap`` resamples over ``--chunks`` chunks);
* ``baseline``: ``compare(baseline="reinit")``, no other control: the untrained pair's forward
  passes and statistics in the same pass.

Targets: (controls - plain) ≤ 0.3 x bare; baseline ≤ 2.2 x plain. Defaults are small (a few
minutes on 2 cores); ``--full`` uses the issue's 10,000 inputs.

    python python/benchmarks/bench_torch_controls.py            # 1,000 inputs
    python python/benchmarks/bench_torch_controls.py --full     # 10,000 inputs
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _torch_common as common  # noqa: E402

VARIANTS = ("bare", "plain", "controls", "baseline")


def one(args: argparse.Namespace) -> None:
    import torch
    from torch import nn

    a, b = common.vgg("vgg11", args.width, 0), common.vgg("vgg11", args.width, 1)
    data = common.cifar_loader(args.n, args.batch)
    rec = {"n": args.n, "batch": args.batch, "width": args.width, "threads": torch.get_num_threads()}

    def go():
        if args.one == "bare":
            common.bare(a, b, data)
            return {}
        import spanmatch.torch as smt

        kw = dict(layers=nn.ReLU, progress=False, center=False)
        if args.one == "controls":
            kw.update(center=True, null="rotate", null_draws=args.null_draws, bootstrap=args.bootstrap, chunks=args.chunks)
        elif args.one == "baseline":
            kw.update(baseline="reinit")
        r = smt.compare(a, b, data, **kw)
        return {"layers": r.names, "mms": {l.name: l.mms.tolist() for l in r.layers}}

    rec.update(common.timed(go))
    with open(args.out, "w") as f:
        json.dump(rec, f)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--full", action="store_true", help="10,000 inputs (the issue's size)")
    p.add_argument("--n", type=int, default=1000, help="inputs (default 1000)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--width", type=float, default=0.5, help="VGG-11 width multiplier (default 1/2)")
    p.add_argument("--null-draws", type=int, default=10)
    p.add_argument("--bootstrap", type=int, default=100)
    p.add_argument("--chunks", type=int, default=20)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--json", help="write every measurement there")
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.full:
        args.n = 10_000
    batches = -(-args.n // args.batch)
    if args.chunks > batches:  # a chunk is a run of whole batches
        print(f"(chunks {args.chunks} -> {batches}: only {batches} batches)")
        args.chunks = batches
    if args.one:
        one(args)
        return
    argv = ["--n", str(args.n), "--batch", str(args.batch), "--width", str(args.width), "--null-draws",
            str(args.null_draws), "--bootstrap", str(args.bootstrap), "--chunks", str(args.chunks)]
    print(f"VGG-11 (width {args.width}) pair, every ReLU, {args.n} inputs, batch {args.batch}; {common.machine()}")
    recs = common.run_side_by_side(__file__, args.variants.split(","), argv, args.repeats)
    print()
    common.table(recs, "bare")
    if {"bare", "plain", "controls"} <= set(recs):
        bare, plain, ctl = (common.median(recs, v) for v in ("bare", "plain", "controls"))
        print(
            f"\n  controls (centred, null x{args.null_draws}, bootstrap {args.bootstrap} over {args.chunks} chunks) add "
            f"{(ctl - plain) / bare:.2f} x the bare passes (target ≤ 0.3)"
        )
    if {"plain", "baseline"} <= set(recs):
        print(f"  baseline='reinit': {common.median(recs, 'baseline') / common.median(recs, 'plain'):.2f} x the plain compare (target ≤ 2.2)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(recs, f, indent=1)


if __name__ == "__main__":
    main()
