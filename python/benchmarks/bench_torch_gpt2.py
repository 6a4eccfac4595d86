"""A GPT-2-sized pair on the torch front (issue 21.5), side by side in one run.

Two GPT-2 models built from a config (random weights, seeds 0 and 1), every MLP activation
and every block output compared (``h.{i}.mlp.act`` and ``h.{i}`` for every block), on random token
sequences. Variants, each in a fresh subprocess, alternated over ``--repeats``: ``bare`` (the
two forward passes), ``f64`` (``compare``, float64 products), ``f32``
(``precision="float32"``); each with its peak memory (ru_maxrss). The memory the statistics
take (:func:`spanmatch.torch.estimate_memory`: per layer pair, in total, and what
``cross=True`` would need) is printed first.

Defaults are small (2 layers, d = 128, MLP 512, 2,000 tokens); ``--full`` is GPT-2 small
(12 layers, d = 768, MLP 3072) on 20,000 tokens (about 4 GB of statistics, and the analysis of
12 layer pairs of 3072 + 3072 neurons: tens of minutes on 2 cores).

    python python/benchmarks/bench_torch_gpt2.py
    python python/benchmarks/bench_torch_gpt2.py --full
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _torch_common as common  # noqa: E402

VARIANTS = ("bare", "f64", "f32")


def layers_of(n: int):
    return [f"h.{i}.mlp.act" for i in range(n)] + [f"h.{i}" for i in range(n)]


def one(args: argparse.Namespace) -> None:
    import torch

    a, b = common.gpt2(args.layers, args.d, args.mlp, 0), common.gpt2(args.layers, args.d, args.mlp, 1)
    data = common.token_batches(args.tokens, args.seq, args.batch)
    rec = {"tokens": args.tokens, "layers": args.layers, "d": args.d, "mlp": args.mlp, "threads": torch.get_num_threads()}

    def go():
        if args.one == "bare":
            common.bare(a, b, data)
            return {}
        import spanmatch.torch as smt

        r = smt.compare(a, b, data, layers=layers_of(args.layers), progress=False, center=False,
                        precision="float64" if args.one == "f64" else "float32")
        return {
            "names": r.names,
            "thresholds": {l.name: [l.thresholds_a.tolist(), l.thresholds_b.tolist()] for l in r.layers},
            "statistics_bytes": r.memory.total,
        }

    rec.update(common.timed(go))
    with open(args.out, "w") as f:
        json.dump(rec, f)


def estimate(args: argparse.Namespace) -> None:
    import spanmatch.torch as smt

    a, b = common.gpt2(args.layers, args.d, args.mlp, 0), common.gpt2(args.layers, args.d, args.mlp, 1)
    batch = common.token_batches(args.seq, args.seq, 1)[0]
    print(smt.estimate_memory(a, b, batch, layers=layers_of(args.layers)))
    c = smt.estimate_memory(a, b, batch, layers=layers_of(args.layers), cross=True, max_memory=1 << 62)
    print(f"  with cross=True: {common_fmt(c.total)} of statistics and blocks ({c.passes} pass)")


def common_fmt(n: float) -> str:
    from spanmatch.torch._plan import fmt_bytes

    return fmt_bytes(n)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--full", action="store_true", help="GPT-2 small on 20,000 tokens")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--d", type=int, default=128)
    p.add_argument("--mlp", type=int, default=512)
    p.add_argument("--tokens", type=int, default=2000)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--json", help="write every measurement there")
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.full:
        args.layers, args.d, args.mlp, args.tokens = 12, 768, 3072, 20_000
    if args.one:
        one(args)
        return
    print(
        f"GPT-2-shaped pair: {args.layers} layers, d = {args.d}, MLP {args.mlp}, {args.tokens} tokens "
        f"(sequences of {args.seq}, batches of {args.batch}); {common.machine()}"
    )
    estimate(args)
    argv = ["--layers", str(args.layers), "--d", str(args.d), "--mlp", str(args.mlp), "--tokens", str(args.tokens),
            "--seq", str(args.seq), "--batch", str(args.batch)]
    recs = common.run_side_by_side(__file__, args.variants.split(","), argv, args.repeats)
    print()
    common.table(recs, "bare" if "bare" in recs else next(iter(recs)))
    if {"f64", "f32"} <= set(recs):
        import numpy as np

        r64, r32 = recs["f64"][0], recs["f32"][0]
        d = max(
            float(np.nanmax(np.abs(np.array(r64["thresholds"][k][s], float) - np.array(r32["thresholds"][k][s], float))))
            for k in r64["thresholds"] for s in (0, 1)
        )
        print(f"  float32 products: largest threshold difference from float64 {d:.2e}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(recs, f, indent=1)


if __name__ == "__main__":
    main()
