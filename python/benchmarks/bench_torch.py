"""Benchmark of spanmatch.torch.compare against bare forward passes and torch_cka.

Two measurements, each variant in a fresh subprocess (so that peak memory, ru_maxrss, is its
own):

* ResNet-18 pair (torchvision, random init, seeds 0 and 1), every ReLU module output (17
  layers: the BasicBlock's ``relu`` runs twice), CIFAR-sized random inputs: bare forward
  passes of both models; ``spanmatch.torch.compare``; ``torch_cka``'s ``CKA(...).compare``
  on the same models, ReLU modules and data.
* VGG-16 (width 1, CIFAR variant: 13 convs, classifier 512-512-10) pair, all 15 ReLU layers,
  all coordinates, all ε: bare forward passes vs ``spanmatch.torch.compare``.

Defaults are small (a few minutes on 2 cores); ``--full`` uses the sizes of the issue
(10,000 inputs each).

    python python/benchmarks/bench_torch.py            # small
    python python/benchmarks/bench_torch.py --full     # 10,000 inputs
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _torch_common as common  # noqa: E402


# ----------------------------------------------------------------------------- models, data


def vgg16(width: float = 1.0, seed: int = 0):
    """VGG-16, CIFAR variant, the paper's initialisation (``_torch_common.vgg``)."""
    return common.vgg("vgg16", width, seed)


def resnet18(seed: int):
    import torch
    import torchvision

    torch.manual_seed(seed)
    return torchvision.models.resnet18(num_classes=10)


def loader(n: int, batch: int):
    import torch

    g = torch.Generator().manual_seed(123)
    x = torch.randn(n, 3, 32, 32, generator=g)
    y = torch.zeros(n, dtype=torch.long)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=batch)


def models(net: str):
    return (resnet18(0), resnet18(1)) if net == "resnet18" else (vgg16(seed=0), vgg16(seed=1))


# ----------------------------------------------------------------------------- one variant


def one(variant: str, net: str, n: int, batch: int, out: str) -> None:
    """Runs one variant in this (fresh) process and writes its numbers as JSON."""
    import torch
    from torch import nn

    a, b = models(net)
    data = loader(n, batch)
    a.eval()
    b.eval()
    rec = {"variant": variant, "net": net, "n": n, "batch": batch, "threads": torch.get_num_threads()}
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    if variant == "bare":
        with torch.inference_mode():
            for x, _ in data:
                a(x)
                b(x)
    elif variant in ("spanmatch", "spanmatch_f32", "spanmatch_torchgram", "spanmatch_engine32"):
        import spanmatch.torch as smt
        from spanmatch.torch import _accumulate

        if variant == "spanmatch_torchgram":  # the float64 torch products a GPU runs, on the CPU
            _accumulate.NATIVE_CPU = False
        if variant == "spanmatch_engine32":  # float32 products in the engine (ssyrk), not torch
            _accumulate.NATIVE_CPU_F32 = True

        r = smt.compare(
            a, b, data, layers=nn.ReLU, progress=False,
            precision="float32" if variant in ("spanmatch_f32", "spanmatch_engine32") else "float64",
        )
        rec["layers"] = r.names
        rec["mms"] = {l.name: l.mms.tolist() for l in r.layers}
        rec["cka"] = {l.name: l.measures.get("cka_linear") for l in r.layers}
        rec["cka_debiased"] = {l.name: l.measures.get("cka_linear_debiased") for l in r.layers}
        rec["thresholds"] = {l.name: [l.thresholds_a.tolist(), l.thresholds_b.tolist()] for l in r.layers}
    elif variant == "torch_cka":
        import warnings

        from torch_cka import CKA

        names = [n_ for n_, m in a.named_modules() if isinstance(m, nn.ReLU)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cka = CKA(a, b, model1_name="A", model2_name="B", model1_layers=names, model2_layers=names, device="cpu")
            with torch.inference_mode():
                cka.compare(data)
        m = cka.export()["CKA"].numpy()
        rec["layers"] = names
        rec["cka_diag"] = {n_: float(m[i, i]) for i, n_ in enumerate(names)}
    else:
        raise ValueError(variant)
    rec["seconds"] = time.perf_counter() - t
    rec["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rec["rss_before_mb"] = rss0 / 1024
    with open(out, "w") as f:
        json.dump(rec, f)


def spawn(variant: str, net: str, n: int, batch: int) -> dict:
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    cmd = [sys.executable, __file__, "--one", variant, "--net", net, "--n", str(n), "--batch", str(batch), "--out", out]
    subprocess.run(cmd, check=True)
    with open(out) as f:
        rec = json.load(f)
    os.unlink(out)
    return rec


# ----------------------------------------------------------------------------- report


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--full", action="store_true", help="the issue's sizes: 10,000 inputs for both nets")
    p.add_argument("--resnet-n", type=int, default=2000, help="inputs for the ResNet-18 pair (default 2000)")
    p.add_argument("--vgg-n", type=int, default=1000, help="inputs for the VGG-16 pair (default 1000)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--repeats", type=int, default=1, help="runs of each variant (median reported)")
    p.add_argument("--nets", default="resnet18,vgg16")
    p.add_argument("--no-torch-cka", action="store_true")
    p.add_argument("--f32", action="store_true", help="also precision='float32'")
    p.add_argument("--torchgram", action="store_true", help="also the torch float64 products (the GPU path) on the CPU")
    p.add_argument("--engine32", action="store_true", help="also float32 products in the engine (ssyrk) instead of torch")
    p.add_argument("--json", help="write every measurement there")
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--net", help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        one(args.one, args.net, args.n, args.batch, args.out)
        return
    if args.full:
        args.resnet_n = args.vgg_n = 10_000
    all_recs = []
    for net in args.nets.split(","):
        if net == "resnet18" and importlib.util.find_spec("torchvision") is None:
            print("resnet18: skipped, torchvision is not installed (pip install torchvision)", flush=True)
            continue
        n = args.resnet_n if net == "resnet18" else args.vgg_n
        variants = ["bare", "spanmatch"]
        if args.f32:
            variants.append("spanmatch_f32")
        if args.torchgram:
            variants.append("spanmatch_torchgram")
        if args.engine32:
            variants.append("spanmatch_engine32")
        if net == "resnet18" and not args.no_torch_cka:
            variants.append("torch_cka")
        recs = {v: [] for v in variants}
        for _ in range(args.repeats):
            for v in variants:  # interleaved, so that a busy machine hurts every variant alike
                r = spawn(v, net, n, args.batch)
                recs[v].append(r)
                print(f"{net:9s} {v:14s} n={n:6d} {r['seconds']:8.1f} s  peak RSS {r['maxrss_mb']:7.0f} MB", flush=True)
        bare = statistics.median(r["seconds"] for r in recs["bare"])
        print(f"\n{net}: {n} inputs, batch {args.batch}, {recs['bare'][0]['threads']} threads")
        print(f"  {'variant':14s} {'median s':>9s} {'x bare':>7s} {'peak MB':>8s}")
        for v in variants:
            med = statistics.median(r["seconds"] for r in recs[v])
            mem = statistics.median(r["maxrss_mb"] for r in recs[v])
            print(f"  {v:14s} {med:9.1f} {med / bare:7.2f} {mem:8.0f}")
        if "torch_cka" in recs and "spanmatch" in recs:
            sm, tc = recs["spanmatch"][0], recs["torch_cka"][0]
            print("  CKA, last call of each ReLU module (torch_cka keeps the last):")
            print(f"  {'module':18s} {'ours (biased)':>14s} {'ours (debiased)':>16s} {'torch_cka':>10s}")
            for name, v in tc["cka_diag"].items():
                ours = [k for k in sm["cka"] if k == name or k.startswith(name + "#")][-1]
                print(f"  {ours:18s} {sm['cka'][ours]:14.6f} {sm['cka_debiased'][ours]:16.6f} {v:10.6f}")
        for v32 in ("spanmatch_f32", "spanmatch_engine32"):
            if v32 not in recs:
                continue
            a64, a32 = recs["spanmatch"][0], recs[v32][0]
            d = max(
                float(np.nanmax(np.abs(np.array(a64["thresholds"][k][s], float) - np.array(a32["thresholds"][k][s], float))))
                for k in a64["thresholds"] for s in (0, 1)
            )
            same = all(a64["mms"][k] == a32["mms"][k] for k in a64["mms"])
            print(f"  {v32}: largest threshold difference from float64: {d:.2e}; mms at every ε identical: {same}")
        print()
        all_recs.extend(r for v in variants for r in recs[v])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(all_recs, f, indent=1)


if __name__ == "__main__":
    main()
