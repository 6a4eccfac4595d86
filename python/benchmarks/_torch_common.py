"""Shared pieces of the spanmatch.torch benchmarks: models, data, and running variants side by
side, each in a fresh subprocess (so that its peak memory, ru_maxrss, is its own), alternated
over repeats (so that a busy machine hurts every variant alike)."""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Sequence


# ----------------------------------------------------------------------------- models, data

VGG_CFGS = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}


def vgg(name: str = "vgg11", width: float = 0.5, seed: int = 0):
    """The CIFAR variant of VGG (3x3 convs, max-pools, classifier 512w-512w-10), every
    activation an ``nn.ReLU`` module, the paper's initialisation."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    layers, c = [], 3
    for v in VGG_CFGS[name]:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            w = int(v * width)
            layers += [nn.Conv2d(c, w, 3, padding=1), nn.ReLU(inplace=True)]
            c = w
    h = int(512 * width)
    model = nn.Sequential(
        nn.Sequential(*layers), nn.Flatten(), nn.Linear(c, h), nn.ReLU(inplace=True),
        nn.Linear(h, h), nn.ReLU(inplace=True), nn.Linear(h, 10),
    )
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
    return model.eval()


def cifar_loader(n: int, batch: int):
    """``n`` CIFAR-sized random inputs (3 x 32 x 32) in batches of ``batch``."""
    import torch

    g = torch.Generator().manual_seed(123)
    x = torch.randn(n, 3, 32, 32, generator=g)
    y = torch.zeros(n, dtype=torch.long)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=batch)


def gpt2(layers: int, d: int, mlp: int, seed: int):
    """A GPT-2 built from a config (random weights), ``layers`` blocks of width ``d``."""
    import torch
    import transformers

    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(
        vocab_size=50257, n_embd=d, n_layer=layers, n_head=max(1, d // 64), n_inner=mlp, n_positions=1024
    )
    return transformers.GPT2Model(cfg).eval()


def token_batches(tokens: int, seq: int, batch: int) -> List[Dict[str, Any]]:
    """Random token sequences of length ``seq`` (no padding), ``tokens`` in all."""
    import torch

    g = torch.Generator().manual_seed(7)
    n_seq = max(1, tokens // seq)
    ids = torch.randint(0, 50257, (n_seq, seq), generator=g)
    return [{"input_ids": ids[i : i + batch]} for i in range(0, n_seq, batch)]


def bare(model_a, model_b, data) -> None:
    """The two models' forward passes alone."""
    import torch

    with torch.inference_mode():
        for batch in data:
            for m in (model_a, model_b):
                if isinstance(batch, dict):
                    m(**batch)
                else:
                    m(batch[0] if isinstance(batch, (tuple, list)) else batch)


# ----------------------------------------------------------------------------- running variants


def timed(fn: Callable[[], Any]) -> Dict[str, Any]:
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    extra = fn() or {}
    rec = {"seconds": time.perf_counter() - t}
    rec["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rec["rss_before_mb"] = rss0 / 1024
    rec.update(extra)
    return rec


def spawn(script: str, variant: str, argv: Sequence[str]) -> Dict[str, Any]:
    """Runs ``script --one variant argv...`` in a fresh process; returns its JSON record."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    cmd = [sys.executable, script, "--one", variant, "--out", out, *argv]
    subprocess.run(cmd, check=True)
    with open(out) as f:
        rec = json.load(f)
    os.unlink(out)
    rec["variant"] = variant
    return rec


def run_side_by_side(script: str, variants: Sequence[str], argv: Sequence[str], repeats: int) -> Dict[str, List[Dict[str, Any]]]:
    recs: Dict[str, List[Dict[str, Any]]] = {v: [] for v in variants}
    for r in range(repeats):
        for v in variants:
            rec = spawn(script, v, argv)
            recs[v].append(rec)
            print(f"  run {r + 1}/{repeats} {v:18s} {rec['seconds']:8.1f} s  peak RSS {rec['maxrss_mb']:7.0f} MB", flush=True)
    return recs


def median(recs: Dict[str, List[Dict[str, Any]]], v: str, key: str = "seconds") -> float:
    return statistics.median(r[key] for r in recs[v])


def table(recs: Dict[str, List[Dict[str, Any]]], ref: str) -> None:
    print(f"  {'variant':18s} {'median s':>9s} {'x ' + ref:>10s} {'peak MB':>8s}")
    base = median(recs, ref)
    for v in recs:
        print(f"  {v:18s} {median(recs, v):9.1f} {median(recs, v) / base:10.2f} {median(recs, v, 'maxrss_mb'):8.0f}")


def machine() -> str:
    import torch

    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return (
        f"{os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} threads, "
        f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at the start"
    )
