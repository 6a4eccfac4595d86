"""Which number to read: the ReSi grounding tests for the span match and the standard measures,
offline, on Fashion-MNIST (issue 22).

One command trains small CNNs in PyTorch from fixed seeds (cached), takes their activations on
test images once per net, feeds every pair of nets (and the same pair at initialisation) through
one spanmatch accumulator, and scores every measure with ReSi's tests (grounding_scoring.py):

* ``monotonicity``: inside one net, similarity should fall with layer distance (all 6 layers;
  conv layers mean-pooled over positions, so that every layer has one row per image);
* ``label_randomization``: nets trained with 0 %, 50 % and 100 % random labels (groups);
* ``augmentation``: nets trained with Gaussian input noise of three strengths (groups),
  compared on clean test images;
* ``shortcut``: nets trained with a bright 3x3 patch at a class-specific position in a share
  0, 0.75 or 1 of the training images (else at a random one of the 10 positions; groups),
  compared on test images with the patch at a random position;
* ``prediction_accuracy`` / ``prediction_jsd`` / ``prediction_disagreement``: over the pairs of
  10 nets trained alike from different seeds, the correlation of last-layer similarity with the
  difference in test accuracy, the Jensen-Shannon divergence of the outputs and the share of
  differing predictions.

Usage::

    python python/benchmarks/grounding.py                 # full: 50 nets, writes out/grounding/
    python python/benchmarks/grounding.py --quick         # 2 seeds per group, fewer images
    python python/benchmarks/grounding.py --tests monotonicity,shortcut
    python python/benchmarks/grounding.py --rescore out/grounding/similarities.json
    python python/benchmarks/grounding.py --self-test     # the scoring's own check, no nets

The trained nets are cached (``--cache``, default ``$XDG_CACHE_HOME/spanmatch/grounding`` or
``~/.cache/spanmatch/grounding``, one folder per mode), so a re-run only scores. A cache written
by another version of the training code or settings is an error that says what differs;
``--rebuild`` deletes it and trains again.

Writes ``--out`` (default ``out/grounding/grounding.json``: for every measure and test the score,
its 95 % bootstrap interval over seeds and n) and next to it ``similarities.json`` (every pair's
values, what ``--rescore`` reads), and, when asked, a figure (``--figure``) and a Markdown table
(``--markdown``).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import gzip
import hashlib
import inspect
import itertools
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import grounding_scoring as gs  # noqa: E402

#: Version of the cache layout and of the training recipe; bump on any change that alters the
#: trained weights (the digest of the training code below catches edits that forget to).
CACHE_VERSION = 1

#: Version of the JSON written by this script.
RESULTS_VERSION = 1

TESTS: Tuple[str, ...] = (
    "monotonicity",
    "label_randomization",
    "augmentation",
    "shortcut",
    "prediction_accuracy",
    "prediction_jsd",
    "prediction_disagreement",
)
GROUP_TESTS = ("label_randomization", "augmentation", "shortcut")
PREDICTION_TESTS = ("prediction_accuracy", "prediction_jsd", "prediction_disagreement")

DATA_DIR = Path("/usr/share/datasets/fashion-mnist")
DATA_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
#: Fashion-MNIST's pixel mean and standard deviation (of x / 255 over the training set).
PIXEL_MEAN, PIXEL_STD = 0.2860, 0.3530

LAYERS: Tuple[str, ...] = ("conv1", "conv2", "conv3", "conv4", "fc1", "fc2")
#: The layer compared by the group and prediction tests (ReSi: the last representation).
LAST_LAYER = "fc2"

#: Top-left corners of the 10 class-specific cue positions (a 3x3 patch of value 255): the top
#: and bottom border rows of the 28x28 image, where Fashion-MNIST is mostly dark.
CUE_POSITIONS: Tuple[Tuple[int, int], ...] = tuple((r, c) for r in (1, 24) for c in (1, 7, 13, 19, 24))
CUE_SIZE = 3

#: Seeds of the fixed data choices (not of the nets).
TRAIN_SUBSET_SEED = 0
REP_SUBSET_SEED = 1
CUE_TEST_SEED = 2

#: The ε values of mms (spanmatch.DEFAULT_EPS).
EPS: Tuple[float, ...] = (0.15, 0.2, 0.25, 0.3, 0.5)


# ---------------------------------------------------------------------------------------------
# Settings


@dataclass(frozen=True)
class Settings:
    """Everything that decides the numbers. ``training`` fields decide the cached nets."""

    mode: str
    seeds: int  # nets per group of a group test
    standard_nets: int  # nets trained alike (monotonicity, prediction, the 0 % label group)
    train_images: int
    epochs: int
    batch: int
    lr: float
    widths: Tuple[int, ...]  # conv1..conv4, fc1, fc2
    label_levels: Tuple[float, ...]  # random-label shares besides 0 (0 reuses the standard nets)
    noise_levels: Tuple[float, ...]  # input-noise standard deviations, on pixels in [0, 1]
    cue_levels: Tuple[float, ...]  # probability of the class-specific cue position
    threads: int
    rep_images: int
    bootstrap: int
    bootstrap_seed: int = 0

    def training(self) -> Dict[str, Any]:
        """The settings that decide the trained weights (the cache's key)."""
        keys = ("train_images", "epochs", "batch", "lr", "widths", "threads")
        return {k: _jsonable(getattr(self, k)) for k in keys}


FULL = Settings(
    mode="full",
    seeds=5,
    standard_nets=10,
    train_images=30000,
    epochs=2,
    batch=128,
    lr=1e-3,
    widths=(16, 32, 64, 64, 128, 64),
    label_levels=(0.5, 1.0),
    noise_levels=(0.1, 0.4, 1.0),
    cue_levels=(0.0, 0.75, 1.0),
    threads=1,
    rep_images=5000,
    bootstrap=1000,
)
QUICK = dataclasses.replace(
    FULL, mode="quick", seeds=2, standard_nets=3, train_images=4000, epochs=1, rep_images=1000, bootstrap=200
)


def _jsonable(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    return v


@dataclass(frozen=True)
class NetSpec:
    """One net: its name, seed and training condition."""

    name: str
    seed: int
    label_noise: float = 0.0
    input_noise: float = 0.0
    cue_prob: Optional[float] = None  # None: no cue in training

    def as_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


def _fmt(x: float) -> str:
    return f"{x:g}"


def standard_net(k: int) -> NetSpec:
    return NetSpec(f"std-s{k}", seed=k)


def design(settings: Settings, tests: Sequence[str]) -> Dict[str, Any]:
    """The nets and groups of every selected test. Seeds are unique per net (each group draws
    from its own range), so no two nets share an initialisation; the 0 % random-label group is
    the first ``seeds`` standard nets (ReSi's design: its 0 % group is the normally trained
    models), so the label test reuses nets of the monotonicity and prediction tests."""
    out: Dict[str, Any] = {}
    std = [standard_net(k) for k in range(settings.standard_nets)]
    if "monotonicity" in tests:
        out["monotonicity"] = {"nets": std, "layers": list(LAYERS), "context": "clean"}
    if "label_randomization" in tests:
        groups = [std[: settings.seeds]]
        for i, f in enumerate(settings.label_levels):
            groups.append([NetSpec(f"label{_fmt(f)}-s{k}", 1000 * (i + 1) + k, label_noise=f) for k in range(settings.seeds)])
        out["label_randomization"] = {
            "groups": groups,
            "levels": [0.0, *settings.label_levels],
            "context": "clean",
            "layer": LAST_LAYER,
        }
    if "augmentation" in tests:
        groups = [
            [NetSpec(f"noise{_fmt(s)}-s{k}", 3000 + 1000 * i + k, input_noise=s) for k in range(settings.seeds)]
            for i, s in enumerate(settings.noise_levels)
        ]
        out["augmentation"] = {"groups": groups, "levels": list(settings.noise_levels), "context": "clean", "layer": LAST_LAYER}
    if "shortcut" in tests:
        groups = [
            [NetSpec(f"cue{_fmt(p)}-s{k}", 6000 + 1000 * i + k, cue_prob=p) for k in range(settings.seeds)]
            for i, p in enumerate(settings.cue_levels)
        ]
        out["shortcut"] = {"groups": groups, "levels": list(settings.cue_levels), "context": "cue", "layer": LAST_LAYER}
    if any(t in tests for t in PREDICTION_TESTS):
        out["prediction"] = {"nets": std, "context": "clean", "layer": LAST_LAYER}
    if len(std) < 3 and "prediction" in out:
        raise ValueError("the prediction tests need at least 3 standard nets")
    if settings.seeds < 2 and any(t in out for t in GROUP_TESTS):
        raise ValueError("the group tests need at least 2 seeds per group")
    return out


def nets_of(plan: Mapping[str, Any]) -> List[NetSpec]:
    """Every net the plan needs, once, in a fixed order."""
    seen: Dict[str, NetSpec] = {}
    for spec in plan.values():
        for n in spec.get("nets", []):
            seen.setdefault(n.name, n)
        for g in spec.get("groups", []):
            for n in g:
                seen.setdefault(n.name, n)
    return list(seen.values())


# ---------------------------------------------------------------------------------------------
# Data


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzip) as a uint8 array."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 8:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: {data.size} bytes of data, the header says {dims}")
    return data.reshape(dims)


def load_fashion_mnist(root: Path = DATA_DIR) -> Dict[str, np.ndarray]:
    """The four Fashion-MNIST arrays; a missing file is a FileNotFoundError that names the path
    and the Debian package that installs it."""
    out = {}
    for key, name in DATA_FILES.items():
        p = Path(root) / name
        if not p.is_file():
            raise FileNotFoundError(
                f"Fashion-MNIST not found: {p} is missing. Install the Debian package "
                f"dataset-fashion-mnist (apt-get install dataset-fashion-mnist), or pass --data DIR "
                f"with the four IDX .gz files ({', '.join(DATA_FILES.values())})"
            )
        out[key] = read_idx(p)
    return out


def add_cue(images: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """A copy of ``images`` ([N, 28, 28] uint8) with a 3x3 patch of 255 at ``CUE_POSITIONS[k]``
    for image i, ``k = positions[i]``."""
    out = images.copy()
    for k, (r, c) in enumerate(CUE_POSITIONS):
        sel = positions == k
        out[sel, r : r + CUE_SIZE, c : c + CUE_SIZE] = 255
    return out


def training_set(data: Mapping[str, np.ndarray], settings: Settings, net: NetSpec) -> Tuple[np.ndarray, np.ndarray]:
    """The images and labels ``net`` trains on: a fixed subset of the training set (the same for
    every net), with the net's random labels and cue."""
    idx = np.random.default_rng(TRAIN_SUBSET_SEED).permutation(len(data["train_labels"]))[: settings.train_images]
    x = data["train_images"][idx]
    y = data["train_labels"][idx].astype(np.int64)
    if net.label_noise > 0:
        rng = np.random.default_rng([net.seed, 1])
        k = int(round(net.label_noise * len(y)))
        which = rng.choice(len(y), size=k, replace=False)
        y = y.copy()
        y[which] = rng.integers(0, 10, size=k)
    if net.cue_prob is not None:
        rng = np.random.default_rng([net.seed, 2])
        at_class = rng.random(len(y)) < net.cue_prob
        pos = np.where(at_class, y, rng.integers(0, len(CUE_POSITIONS), size=len(y)))
        x = add_cue(x, pos)
    return x, y


def to_input(images: np.ndarray) -> Any:
    """uint8 images [N, 28, 28] -> normalised float32 tensor [N, 1, 28, 28]."""
    import torch

    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    return (x - PIXEL_MEAN) / PIXEL_STD


def representation_images(data: Mapping[str, np.ndarray], settings: Settings, context: str) -> np.ndarray:
    """The test images the representations are taken on: a fixed subset of ``rep_images``;
    for ``context == "cue"`` with the patch at a random position."""
    idx = np.random.default_rng(REP_SUBSET_SEED).permutation(len(data["test_labels"]))[: settings.rep_images]
    x = data["test_images"][idx]
    if context == "cue":
        pos = np.random.default_rng(CUE_TEST_SEED).integers(0, len(CUE_POSITIONS), size=len(x))
        x = add_cue(x, pos)
    return x


# ---------------------------------------------------------------------------------------------
# Nets and training


def make_net(widths: Sequence[int]) -> Any:
    """The small CNN: conv1 (28x28) pool, conv2 (14x14) pool, conv3, conv4 (7x7) pool, fc1, fc2,
    out; ReLU after every conv and fc layer. ``forward(x, record)`` fills ``record`` with each
    layer's ReLU output, conv layers averaged over positions ([N, channels])."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    c1, c2, c3, c4, f1, f2 = widths

    class SmallCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(1, c1, 3, padding=1)
            self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
            self.conv3 = nn.Conv2d(c2, c3, 3, padding=1)
            self.conv4 = nn.Conv2d(c3, c4, 3, padding=1)
            self.fc1 = nn.Linear(c4 * 3 * 3, f1)
            self.fc2 = nn.Linear(f1, f2)
            self.out = nn.Linear(f2, 10)

        def forward(self, x: torch.Tensor, record: Optional[Dict[str, torch.Tensor]] = None) -> torch.Tensor:
            def keep(name: str, h: torch.Tensor) -> torch.Tensor:
                if record is not None:
                    record[name] = h.mean(dim=(2, 3)) if h.dim() == 4 else h
                return h

            h = F.max_pool2d(keep("conv1", F.relu(self.conv1(x))), 2)
            h = F.max_pool2d(keep("conv2", F.relu(self.conv2(h))), 2)
            h = keep("conv3", F.relu(self.conv3(h)))
            h = F.max_pool2d(keep("conv4", F.relu(self.conv4(h))), 2)
            h = keep("fc1", F.relu(self.fc1(h.flatten(1))))
            h = keep("fc2", F.relu(self.fc2(h)))
            return self.out(h)

    return SmallCNN()


def set_determinism(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)


def train_net(data: Mapping[str, np.ndarray], settings: Settings, net: NetSpec, progress: bool = False) -> Dict[str, Any]:
    """Trains one net from its seed; returns its initial and trained weights and test accuracy."""
    import torch
    from torch.nn import functional as F

    set_determinism(settings.threads)
    torch.manual_seed(net.seed)
    model = make_net(settings.widths)
    init = {k: v.detach().clone() for k, v in model.state_dict().items()}
    x_all, y_all = training_set(data, settings, net)
    x_all_t = to_input(x_all)
    y_all_t = torch.from_numpy(y_all)
    opt = torch.optim.Adam(model.parameters(), lr=settings.lr)
    noise = torch.Generator().manual_seed(net.seed)
    model.train()
    steps = settings.epochs * math.ceil(len(y_all) / settings.batch)
    bar = _tqdm(total=steps, desc=f"  {net.name}", leave=False, disable=not progress)
    for epoch in range(settings.epochs):
        order = torch.from_numpy(np.random.default_rng([net.seed, 3, epoch]).permutation(len(y_all)))
        for i in range(0, len(order), settings.batch):
            b = order[i : i + settings.batch]
            xb = x_all_t[b]
            if net.input_noise > 0:
                # Noise on pixels in [0, 1], i.e. std input_noise / PIXEL_STD after normalising.
                xb = xb + (net.input_noise / PIXEL_STD) * torch.randn(xb.shape, generator=noise)
            loss = F.cross_entropy(model(xb), y_all_t[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            bar.update(1)
    bar.close()
    model.eval()
    logits = forward(model, data["test_images"])
    acc = float(np.mean(np.argmax(logits, axis=1) == data["test_labels"]))
    return {"init": init, "trained": {k: v.detach().clone() for k, v in model.state_dict().items()}, "test_accuracy": acc}


def forward(model: Any, images: np.ndarray, layers: Sequence[str] = (), batch: int = 1000) -> Any:
    """Logits (float64 numpy) of ``images``; with ``layers`` also their representations
    (float32 numpy [N, width] each): returns ``(logits, {layer: array})``."""
    import torch

    outs: List[np.ndarray] = []
    reps: Dict[str, List[np.ndarray]] = {l: [] for l in layers}
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            record: Dict[str, torch.Tensor] = {}
            out = model(to_input(images[i : i + batch]), record)
            outs.append(out.double().numpy())
            for l in layers:
                reps[l].append(record[l].float().numpy().copy())
    logits = np.concatenate(outs)
    if not layers:
        return logits
    return logits, {l: np.concatenate(v) for l, v in reps.items()}


def training_digest(settings: Settings) -> str:
    """A digest of the training code (its source text), the settings that decide the weights and
    the torch version: a cache written by other code is refused. Computed once per process and
    settings (so an edit of this file during a run does not change it)."""
    return _training_digest(json.dumps({"version": CACHE_VERSION, "settings": settings.training()}, sort_keys=True))


@functools.lru_cache(maxsize=None)
def _training_digest(key: str) -> str:
    import torch

    h = hashlib.sha256()
    h.update(key.encode())
    for fn in (make_net, train_net, training_set, add_cue, to_input, read_idx, set_determinism):
        h.update(inspect.getsource(fn).encode())
    h.update(torch.__version__.encode())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# Cache


class CacheError(RuntimeError):
    """A cache written by another version or with other settings."""


@dataclass
class Cache:
    """Trained nets under ``root/mode/``: ``manifest.json`` (version, digest, settings) and
    ``nets/NAME.pt`` (initial and trained weights, test accuracy, the net's spec)."""

    root: Path
    settings: Settings

    @property
    def dir(self) -> Path:
        return self.root / self.settings.mode

    def manifest(self) -> Dict[str, Any]:
        return {
            "cache_version": CACHE_VERSION,
            "digest": training_digest(self.settings),
            "training": self.settings.training(),
            "script": "python/benchmarks/grounding.py",
        }

    def open(self, rebuild: bool) -> None:
        """Checks (or creates) the manifest; ``rebuild`` deletes a cache that does not match."""
        path = self.dir / "manifest.json"
        want = self.manifest()
        if path.is_file():
            try:
                have = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError) as e:
                have = {"unreadable": str(e)}
            if have != want:
                if not rebuild:
                    diff = [k for k in sorted(set(want) | set(have)) if want.get(k) != have.get(k)]
                    raise CacheError(
                        f"the cache {self.dir} was written by another version of grounding.py or with "
                        f"other settings (differs in: {', '.join(diff)}; cache has cache_version="
                        f"{have.get('cache_version')} digest={have.get('digest')}, this script "
                        f"cache_version={want['cache_version']} digest={want['digest']}). Its nets would "
                        f"not be the ones this script trains: rerun with --rebuild to delete it and train "
                        f"again, or pass --cache DIR for a fresh cache"
                    )
                shutil.rmtree(self.dir)
        elif self.dir.exists() and any(self.dir.iterdir()) and not rebuild:
            raise CacheError(f"{self.dir} exists but has no manifest.json: not a grounding cache (use --rebuild or another --cache)")
        (self.dir / "nets").mkdir(parents=True, exist_ok=True)
        if not path.is_file():
            path.write_text(json.dumps(want, indent=1) + "\n")

    def path(self, net: NetSpec) -> Path:
        return self.dir / "nets" / f"{net.name}.pt"

    def has(self, net: NetSpec) -> bool:
        return self.path(net).is_file()

    def save(self, net: NetSpec, result: Mapping[str, Any]) -> None:
        import torch

        tmp = self.path(net).with_suffix(".tmp")
        torch.save({"spec": net.as_dict(), "digest": training_digest(self.settings), **result}, tmp)
        os.replace(tmp, self.path(net))

    def load(self, net: NetSpec) -> Dict[str, Any]:
        import torch

        blob = torch.load(self.path(net), weights_only=True)
        if blob.get("spec") != net.as_dict() or blob.get("digest") != training_digest(self.settings):
            raise CacheError(
                f"{self.path(net)} holds another net or was trained by other code (spec {blob.get('spec')}, "
                f"digest {blob.get('digest')}); rerun with --rebuild"
            )
        return blob


def _train_worker(args: Tuple[str, Settings, NetSpec, str]) -> Tuple[str, float]:
    root, settings, net, data_dir = args
    t = time.perf_counter()
    data = load_fashion_mnist(Path(data_dir))
    cache = Cache(Path(root), settings)
    cache.save(net, train_net(data, settings, net))
    return net.name, time.perf_counter() - t


def train_missing(cache: Cache, nets: Sequence[NetSpec], data: Mapping[str, np.ndarray], data_dir: Path, jobs: int) -> int:
    """Trains the nets the cache lacks (``jobs`` processes of ``settings.threads`` threads each)."""
    todo = [n for n in nets if not cache.has(n)]
    if not todo:
        return 0
    bar = _tqdm(total=len(todo), desc="training", unit="net")
    if jobs <= 1:
        for net in todo:
            bar.set_postfix_str(net.name)
            cache.save(net, train_net(data, cache.settings, net, progress=True))
            bar.update(1)
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
            futures = [pool.submit(_train_worker, (str(cache.root), cache.settings, n, str(data_dir))) for n in todo]
            for f in as_completed(futures):
                name, _ = f.result()
                bar.set_postfix_str(name)
                bar.update(1)
    bar.close()
    return len(todo)


# ---------------------------------------------------------------------------------------------
# spanmatch adapter: the only place that calls spanmatch (API changes are one edit here)

#: Measure keys that are distances (smaller = more similar). Keys of measures added later are
#: classified by :func:`is_distance`'s name rule; results.json records the orientation used.
KNOWN_DISTANCES = frozenset({"procrustes", "procrustes_angular", "soft_match", "perm_procrustes", "shape"})
DISTANCE_HINTS = ("procrustes", "distance", "soft_match", "shape", "angular")
#: Similarities whose names contain a distance hint: ``soft_match_correlation`` is
#: 1 - soft_match²/2, the correlation the optimal plan carries (larger = more similar).
KNOWN_SIMILARITIES = frozenset({"soft_match_correlation"})
#: Fields of ``measures`` that are settings of a measure, not values: never scored.
SETTING_KEYS = frozenset({"predictivity_alpha", "shape_alpha"})


def is_distance(key: str) -> bool:
    """Whether a measure key is a distance (orientation for ReSi's sign handling)."""
    if key in KNOWN_SIMILARITIES:
        return False
    return key in KNOWN_DISTANCES or any(h in key for h in DISTANCE_HINTS)


class SpanmatchAdapter:
    """Statistics of a pair of activation arrays and every measure from them."""

    def __init__(self, eps: Sequence[float] = EPS, block_rows: int = 2048) -> None:
        import spanmatch
        from spanmatch import _native

        self.spanmatch = spanmatch
        self.eps = tuple(eps)
        self.block_rows = block_rows
        #: Basis-invariant and neuron-matching measures the engine offers (new ones picked up).
        self.measure_names = list(_native.measure_names())

    def stats(self, a: np.ndarray, b: np.ndarray) -> Any:
        """One streamed pass over the rows of ``a`` and ``b`` (blocks of ``block_rows``)."""
        acc = self.spanmatch.Accumulator()
        for i in range(0, len(a), self.block_rows):
            acc.update(a[i : i + self.block_rows], b[i : i + self.block_rows])
        return acc.finish()

    def values(self, stats: Any) -> Dict[str, float]:
        """Every scalar from one pair's statistics: ``mms@ε`` (dead neurons dropped, the
        default), ``mms_centred@ε`` (the engine's centred statistics), ``mms_dead_match@ε``
        (``dead="match"``), and every scalar measure of ``Stats.measures`` (``cka_linear``, ...).
        Undefined values are NaN."""
        out: Dict[str, float] = {}
        res = stats.result(eps=self.eps, measures=self.measure_names, dead="drop", center=True)[0]
        for m in res.matches:
            out[f"mms@{_fmt(m.eps)}"] = float(m.mms)
        for m in res.centered or []:
            out[f"mms_centred@{_fmt(m.eps)}"] = float(m.mms)
        match = stats.result(eps=self.eps, measures=(), dead="match")[0]
        for m in match.matches:
            out[f"mms_dead_match@{_fmt(m.eps)}"] = float(m.mms)
        for k, v in res.measures.items():
            if k in SETTING_KEYS or isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            out[k] = float(v)
        return out


#: Measures whose trained - untrained difference is scored too.
def untrained_bases(eps: Sequence[float] = EPS) -> List[str]:
    return [f"mms@{_fmt(e)}" for e in eps] + [f"mms_centred@{_fmt(e)}" for e in eps] + ["cka_linear"]


UNTRAINED_SUFFIX = " - untrained"
RANDOM_CONTROL = "control: random numbers"


def random_control(key: Sequence[str]) -> float:
    """A measure of random numbers (uniform in [0, 1), seeded by the pair): the chance row."""
    digest = hashlib.sha256("|".join(key).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


# ---------------------------------------------------------------------------------------------
# Behaviour


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - np.max(x, axis=1, keepdims=True))
    return e / np.sum(e, axis=1, keepdims=True)


def jensen_shannon(logits_a: np.ndarray, logits_b: np.ndarray) -> float:
    """Mean over inputs of the Jensen-Shannon divergence (base 2, in [0, 1]) of the two nets'
    softmax outputs, as ReSi's ``JSD``."""
    p = softmax(np.asarray(logits_a, dtype=np.float64))
    q = softmax(np.asarray(logits_b, dtype=np.float64))
    p = p / np.sum(p, axis=1, keepdims=True)
    q = q / np.sum(q, axis=1, keepdims=True)
    m = (p + q) / 2.0

    def rel_entr(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(x > 0, x * np.log(x / y), 0.0)

    js = (np.sum(rel_entr(p, m), axis=1) + np.sum(rel_entr(q, m), axis=1)) / np.log(2)
    return float(np.nanmean(np.clip(js / 2.0, 0, 1)))


def disagreement(logits_a: np.ndarray, logits_b: np.ndarray) -> float:
    """Share of inputs on which the two nets predict different classes."""
    return float(np.sum(np.argmax(logits_a, axis=1) != np.argmax(logits_b, axis=1)) / len(logits_a))


# ---------------------------------------------------------------------------------------------
# Similarities of every pair


def _pair_key(context: str, net_a: str, layer_a: str, net_b: str, layer_b: str) -> Tuple[str, str, str, str, str]:
    return (context, net_a, layer_a, net_b, layer_b)


def compute_similarities(
    plan: Mapping[str, Any], cache: Cache, data: Mapping[str, np.ndarray], adapter: SpanmatchAdapter
) -> Dict[str, Any]:
    """Activations of every net once (trained and initial weights), then every pair of the plan
    through one accumulator each (the trained pair and the untrained pair). Returns the
    similarities document (what ``--rescore`` reads)."""
    set_determinism(cache.settings.threads)
    # Which layers each (net, context) needs.
    need: Dict[Tuple[str, str], set] = {}
    specs: Dict[str, NetSpec] = {n.name: n for n in nets_of(plan)}
    pairs: List[Tuple[str, str, str, str, str]] = []
    for test, spec in plan.items():
        ctx = spec["context"]
        if test == "monotonicity":
            for n in spec["nets"]:
                need.setdefault((n.name, ctx), set()).update(spec["layers"])
                for la, lb in itertools.combinations(spec["layers"], 2):
                    pairs.append(_pair_key(ctx, n.name, la, n.name, lb))
        else:
            layer = spec["layer"]
            members = spec["nets"] if "nets" in spec else [n for g in spec["groups"] for n in g]
            for n in members:
                need.setdefault((n.name, ctx), set()).add(layer)
            for a, b in itertools.combinations(sorted(n.name for n in members), 2):
                pairs.append(_pair_key(ctx, a, layer, b, layer))
    pairs = list(dict.fromkeys(pairs))

    images = {ctx: representation_images(data, cache.settings, ctx) for ctx in {c for _, c in need}}
    acts: Dict[Tuple[str, str, str], Dict[str, np.ndarray]] = {}  # (net, ctx, weights) -> layer -> array
    nets_info: Dict[str, Dict[str, Any]] = {}
    logits_test: Dict[str, np.ndarray] = {}
    prediction_nets = {n.name for n in plan.get("prediction", {}).get("nets", [])}
    bar = _tqdm(total=len(need), desc="activations", unit="net")
    for (name, ctx), layers in sorted(need.items()):
        blob = cache.load(specs[name])
        model = make_net(cache.settings.widths)
        order = [l for l in LAYERS if l in layers]
        for which in ("trained", "init"):
            model.load_state_dict(blob[which])
            model.eval()
            _, reps = forward(model, images[ctx], order)
            acts[(name, ctx, which)] = reps
            if which == "trained" and name in prediction_nets and name not in logits_test:
                logits_test[name] = forward(model, data["test_images"])
        nets_info[name] = {**specs[name].as_dict(), "test_accuracy": float(blob["test_accuracy"])}
        bar.update(1)
    bar.close()

    records = []
    bases = untrained_bases(adapter.eps)
    bar = _tqdm(total=len(pairs), desc="pairs", unit="pair")
    for key in pairs:
        ctx, na, la, nb, lb = key
        trained = adapter.values(adapter.stats(acts[(na, ctx, "trained")][la], acts[(nb, ctx, "trained")][lb]))
        untrained = adapter.values(adapter.stats(acts[(na, ctx, "init")][la], acts[(nb, ctx, "init")][lb]))
        values = dict(trained)
        for b in bases:
            if b in trained and b in untrained:
                values[b + UNTRAINED_SUFFIX] = trained[b] - untrained[b]
        values[RANDOM_CONTROL] = random_control(key)
        records.append(
            {
                "context": ctx,
                "a": na,
                "layer_a": la,
                "b": nb,
                "layer_b": lb,
                "values": {k: (None if v is None or not np.isfinite(v) else v) for k, v in values.items()},
                "untrained": {k: (None if v is None or not np.isfinite(v) else v) for k, v in untrained.items()},
            }
        )
        bar.update(1)
    bar.close()

    behaviour: Dict[str, Dict[str, float]] = {}
    if "prediction" in plan:
        labels = data["test_labels"]
        names = [n.name for n in plan["prediction"]["nets"]]
        acc = {n: float(np.mean(np.argmax(logits_test[n], axis=1) == labels)) for n in names}
        for test in PREDICTION_TESTS:
            behaviour[test] = {}
        for a, b in itertools.combinations(sorted(names), 2):
            k = f"{a}|{b}"
            behaviour["prediction_accuracy"][k] = abs(acc[a] - acc[b])
            behaviour["prediction_jsd"][k] = jensen_shannon(logits_test[a], logits_test[b])
            behaviour["prediction_disagreement"][k] = disagreement(logits_test[a], logits_test[b])

    return {
        "schema": "spanmatch-grounding-similarities",
        "version": RESULTS_VERSION,
        "settings": _settings_json(cache.settings),
        "design": _design_json(plan),
        "nets": nets_info,
        "measures": _orientation(records),
        "pairs": records,
        "behaviour": behaviour,
    }


def _settings_json(s: Settings) -> Dict[str, Any]:
    return {k: _jsonable(v) for k, v in dataclasses.asdict(s).items()}


def _design_json(plan: Mapping[str, Any]) -> Dict[str, Any]:
    out = {}
    for test, spec in plan.items():
        d = {k: v for k, v in spec.items() if k not in ("nets", "groups")}
        if "nets" in spec:
            d["nets"] = [n.name for n in spec["nets"]]
        if "groups" in spec:
            d["groups"] = [[n.name for n in g] for g in spec["groups"]]
        out[test] = d
    return out


def _orientation(records: Sequence[Mapping[str, Any]]) -> Dict[str, str]:
    keys: Dict[str, None] = {}
    for r in records:
        for k in r["values"]:
            keys.setdefault(k, None)
    return {k: ("distance" if is_distance(k.replace(UNTRAINED_SUFFIX, "")) else "similarity") for k in keys}


# ---------------------------------------------------------------------------------------------
# Scores


def score(sims: Mapping[str, Any], tests: Optional[Sequence[str]] = None, bootstrap: Optional[int] = None,
          seed: Optional[int] = None, progress: bool = True) -> Dict[str, Any]:
    """Every measure's score on every test of a similarities document, with bootstrap intervals
    over seeds. Pure: no nets, no spanmatch."""
    if sims.get("schema") != "spanmatch-grounding-similarities":
        raise ValueError("not a grounding similarities document (schema spanmatch-grounding-similarities)")
    if sims.get("version") != RESULTS_VERSION:
        raise ValueError(
            f"similarities document of version {sims.get('version')}; this script reads version {RESULTS_VERSION}"
        )
    design_doc = sims["design"]
    settings = sims["settings"]
    resamples = int(settings["bootstrap"] if bootstrap is None else bootstrap)
    bseed = int(settings.get("bootstrap_seed", 0) if seed is None else seed)
    orientation: Dict[str, str] = dict(sims["measures"])
    measures = list(orientation)
    larger = {m: orientation[m] == "similarity" for m in measures}
    available = [t for t in TESTS if (t in design_doc or (t in PREDICTION_TESTS and "prediction" in design_doc))]
    if tests is not None:
        check_tests(tests)
        missing = [t for t in tests if t not in available]
        if missing:
            raise ValueError(f"the similarities document has no data for: {', '.join(missing)} (it has {', '.join(available)})")
        available = [t for t in TESTS if t in tests]

    table: Dict[Tuple[str, str, str, str, str], Mapping[str, Any]] = {}
    for r in sims["pairs"]:
        k = _pair_key(r["context"], r["a"], r["layer_a"], r["b"], r["layer_b"])
        table[k] = r["values"]
        table[_pair_key(r["context"], r["b"], r["layer_b"], r["a"], r["layer_a"])] = r["values"]

    def lookup(ctx: str, layer: str, measure: str) -> Callable[[str, str], float]:
        def f(a: str, b: str) -> float:
            return gs.optional_float(table[(ctx, a, layer, b, layer)].get(measure))

        return f

    results: Dict[str, Dict[str, Any]] = {m: {} for m in measures}
    tests_info: Dict[str, Any] = {}
    bar = _tqdm(total=len(available), desc="scoring", unit="test", disable=not progress)
    for t_index, test in enumerate(available):
        tseed = bseed + 7919 * t_index
        if test == "monotonicity":
            spec = design_doc[test]
            layers = spec["layers"]
            per_net: Dict[str, List[float]] = {m: [] for m in measures}
            for net in spec["nets"]:
                for m in measures:
                    t = np.full((len(layers), len(layers)), np.nan)
                    for i, la in enumerate(layers):
                        for j, lb in enumerate(layers):
                            if i != j:
                                t[i, j] = gs.optional_float(table[(spec["context"], net, la, net, lb)].get(m))
                    per_net[m].append(gs.monotonicity_net(t, larger[m]))
            intervals = gs.bootstrap_nets(per_net, resamples, tseed)
            n, n_pairs = len(spec["nets"]), len(spec["nets"]) * len(layers) * (len(layers) - 1) // 2
            tests_info[test] = {"score": "mean Spearman (ReSi, +1 ideal)", "ideal": 1.0, "chance": 0.0, "n": n, "n_pairs": n_pairs,
                                "unit": "net", "layers": layers}
        elif test in GROUP_TESTS:
            spec = design_doc[test]
            groups = spec["groups"]
            values = {m: lookup(spec["context"], spec["layer"], m) for m in measures}
            intervals = gs.bootstrap_groups(groups, values, larger, resamples, tseed)
            n = len(groups[0])
            n_pairs = sum(len(g) for g in groups) * (sum(len(g) for g in groups) - 1) // 2
            tests_info[test] = {"score": "mean AUPRC over groups (ReSi, 1 ideal)", "ideal": 1.0,
                                "chance": gs.random_auprc(groups), "in_group_fraction": gs.in_group_fraction(groups),
                                "n": n, "n_pairs": n_pairs, "unit": "seeds per group", "groups": len(groups),
                                "levels": spec.get("levels")}
        else:
            spec = design_doc["prediction"]
            beh = sims["behaviour"][test]

            def behaviour(a: str, b: str, beh: Mapping[str, float] = beh) -> float:
                return float(beh[f"{a}|{b}"] if f"{a}|{b}" in beh else beh[f"{b}|{a}"])

            values = {m: lookup(spec["context"], spec["layer"], m) for m in measures}
            intervals = gs.bootstrap_pairs(list(spec["nets"]), values, behaviour, larger, resamples, tseed)
            n = len(spec["nets"])
            tests_info[test] = {"score": "Spearman of (distance, behavioural difference) (ReSi, +1 ideal)", "ideal": 1.0,
                                "chance": 0.0, "n": n, "n_pairs": n * (n - 1) // 2, "unit": "net"}
        chance = tests_info[test]["chance"]
        for m in measures:
            r = {**intervals[m].as_dict(), "n": tests_info[test]["n"], "n_pairs": tests_info[test]["n_pairs"]}
            # Passed: the whole interval is above chance (a measure of random numbers gets there
            # about 2.5 % of the time).
            r["above_chance"] = r["lo"] is not None and r["lo"] > chance
            results[m][test] = r
        bar.update(1)
    bar.close()
    return {
        "schema": "spanmatch-grounding",
        "version": RESULTS_VERSION,
        "settings": settings,
        "tests": tests_info,
        "measures": {m: {"orientation": orientation[m]} for m in measures},
        "scores": results,
        "nets": sims.get("nets", {}),
        "bootstrap": {"resamples": resamples, "seed": bseed, "level": 0.95,
                      "what": "nets resampled with replacement (per group for the group tests), the same draws for every measure"},
    }


def check_tests(tests: Sequence[str]) -> None:
    """A ValueError naming the unknown test names and the known ones."""
    unknown = [t for t in tests if t not in TESTS]
    if unknown:
        raise ValueError(f"unknown test name(s): {', '.join(unknown)}; the tests are: {', '.join(TESTS)}")


# ---------------------------------------------------------------------------------------------
# Output: table and figure


def measure_order(measures: Sequence[str]) -> List[str]:
    """Measures in reading order: mms variants by ε, their untrained differences, the baselines
    (any new engine measure included), the random control last."""
    def rank(m: str) -> Tuple[int, str]:
        base = m.replace(UNTRAINED_SUFFIX, "")
        if m == RANDOM_CONTROL:
            return (9, m)
        for i, p in enumerate(("mms@", "mms_centred@", "mms_dead_match@")):
            if base.startswith(p):
                return (i * 2 + (1 if m.endswith(UNTRAINED_SUFFIX) else 0), m)
        return (7 if not m.endswith(UNTRAINED_SUFFIX) else 8, m)

    return sorted(measures, key=rank)


def markdown_table(results: Mapping[str, Any]) -> str:
    """The measures x tests table: score [95 % interval], ✗ where the interval reaches down to
    chance (or the score is undefined: —)."""
    tests = [t for t in TESTS if t in results["tests"]]
    head = "| measure | " + " | ".join(tests) + " |"
    sep = "|---|" + "---:|" * len(tests)
    chance = "| *chance (random ranking)* | " + " | ".join(f"*{results['tests'][t]['chance']:.2f}*" for t in tests) + " |"
    ns = "| *n (nets per group / nets)* | " + " | ".join(f"*{results['tests'][t]['n']}*" for t in tests) + " |"
    lines = [head, sep, chance, ns]
    for m in measure_order(list(results["scores"])):
        cells = []
        for t in tests:
            r = results["scores"][m].get(t)
            if r is None or r["score"] is None:
                cells.append("—")
            elif r["lo"] is None:
                cells.append(f"{r['score']:.2f} ✗")
            else:
                mark = "" if r.get("above_chance") else " ✗"
                cells.append(f"{r['score']:.2f} [{r['lo']:.2f}, {r['hi']:.2f}]{mark}")
        d = " (distance)" if results["measures"][m]["orientation"] == "distance" else ""
        lines.append(f"| `{m}`{d} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def figure(results: Mapping[str, Any], path: Path) -> None:
    """One panel per test: every measure's score with its bootstrap interval, the chance level
    dashed, the ideal dotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tests = [t for t in TESTS if t in results["tests"]]
    measures = measure_order(list(results["scores"]))
    fig, axes = plt.subplots(1, len(tests), figsize=(2.3 * len(tests) + 2.5, 0.2 * len(measures) + 1.5), sharey=True)
    axes = np.atleast_1d(axes)
    y = np.arange(len(measures))[::-1]
    colours = []
    for m in measures:
        base = m.replace(UNTRAINED_SUFFIX, "")
        colours.append(
            "grey" if m == RANDOM_CONTROL
            else "tab:blue" if base.startswith("mms@")
            else "tab:green" if base.startswith("mms_centred@")
            else "tab:olive" if base.startswith("mms_dead_match@")
            else "tab:red"
        )
    for ax, t in zip(axes, tests):
        for yi, m, c in zip(y, measures, colours):
            r = results["scores"][m].get(t)
            if r is None or r["score"] is None:
                continue
            if r["lo"] is not None:
                ax.plot([r["lo"], r["hi"]], [yi, yi], color=c, lw=1.2, alpha=0.7)
            ax.plot([r["score"]], [yi], "o", color=c, ms=3.5, mfc="white" if m.endswith(UNTRAINED_SUFFIX) else c)
        ax.axvline(results["tests"][t]["chance"], color="k", ls="--", lw=0.8)
        ax.axvline(results["tests"][t]["ideal"], color="k", ls=":", lw=0.8)
        ax.set_xlim(-0.05 if t in GROUP_TESTS else -1.05, 1.05)
        ax.set_title(t.replace("_", "\n", 1), fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y)
    axes[0].set_yticklabels(measures, fontsize=6.5)
    fig.suptitle("ReSi grounding tests on Fashion-MNIST (dashed: chance, dotted: ideal; bars: 95% bootstrap over seeds)", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# Command line


def _tqdm(*args: Any, **kwargs: Any) -> Any:
    from tqdm.auto import tqdm

    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(*args, **kwargs)


def default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "spanmatch" / "grounding"


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--quick", action="store_true", help="2 seeds per group, 3 standard nets, 4000 training images, "
                    "1 epoch, 1000 test images, 200 resamples (2-3 minutes)")
    ap.add_argument("--tests", default=None, help=f"comma-separated subset of: {', '.join(TESTS)} (default: all; "
                    "with --rescore, all the document has)")
    ap.add_argument("--cache", type=Path, default=None, help="folder of the trained nets (default: $XDG_CACHE_HOME/spanmatch/grounding or ~/.cache/spanmatch/grounding)")
    ap.add_argument("--rebuild", action="store_true", help="delete a cache written by other code or settings and train again")
    ap.add_argument("--data", type=Path, default=DATA_DIR, help="folder with the Fashion-MNIST IDX .gz files")
    ap.add_argument("--out", type=Path, default=Path("out/grounding/grounding.json"), help="results JSON (similarities.json goes next to it)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads per training process (default 1; part of the cache key)")
    ap.add_argument("--jobs", type=int, default=1, help="nets trained at the same time, in separate processes")
    ap.add_argument("--bootstrap", type=int, default=None, help="bootstrap resamples (default 1000; --quick 200)")
    ap.add_argument("--rescore", type=Path, default=None, help="score a similarities.json again (no nets, no training)")
    ap.add_argument("--figure", type=Path, default=None, help="also draw the results (PNG)")
    ap.add_argument("--markdown", type=Path, default=None, help="also write the measures x tests table (Markdown)")
    ap.add_argument("--self-test", action="store_true", help="check the scoring on random and synthetic measures, then exit")
    return ap.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    tests: Optional[List[str]] = None
    if args.tests is not None:
        tests = [t.strip() for t in args.tests.split(",") if t.strip()]
        check_tests(tests)
    t0 = time.perf_counter()

    if args.self_test:
        out = gs.self_test()
        print(json.dumps(out, indent=1))
        ok = (abs(out["random_auprc"] - out["expected_random_auprc"]) < 0.02 and abs(out["random_monotonicity"]) < 0.05
              and abs(out["random_prediction"]) < 0.05 and out["synthetic_monotonicity"] == 1.0
              and out["synthetic_monotonicity_distance"] == 1.0 and out["synthetic_auprc"] == 1.0
              and abs(out["synthetic_prediction"] - 1.0) < 1e-12)
        print("self-test", "passed" if ok else "FAILED")
        return 0 if ok else 1

    runtime: Dict[str, Any] = {"load_average_start": list(os.getloadavg()), "cpus": os.cpu_count()}
    if args.rescore is not None:
        sims = json.loads(args.rescore.read_text())
    else:
        settings = QUICK if args.quick else FULL
        if args.threads is not None:
            settings = dataclasses.replace(settings, threads=args.threads)
        if args.bootstrap is not None:
            settings = dataclasses.replace(settings, bootstrap=args.bootstrap)
        plan = design(settings, tests if tests is not None else TESTS)
        data = load_fashion_mnist(args.data)
        cache = Cache(args.cache or default_cache(), settings)
        cache.open(args.rebuild)
        t = time.perf_counter()
        trained = train_missing(cache, nets_of(plan), data, args.data, args.jobs)
        runtime["training_s"] = time.perf_counter() - t
        runtime["nets_trained"] = trained
        t = time.perf_counter()
        sims = compute_similarities(plan, cache, data, SpanmatchAdapter())
        runtime["similarities_s"] = time.perf_counter() - t
        sims_path = args.out.parent / "similarities.json"
        sims_path.parent.mkdir(parents=True, exist_ok=True)
        sims_path.write_text(json.dumps(sims) + "\n")
    t = time.perf_counter()
    results = score(sims, tests=tests, bootstrap=args.bootstrap)
    runtime["scoring_s"] = time.perf_counter() - t
    runtime["total_s"] = time.perf_counter() - t0
    runtime["load_average_end"] = list(os.getloadavg())
    results["runtime"] = runtime
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(markdown_table(results))
    if args.figure is not None:
        figure(results, args.figure)
    print(markdown_table(results))
    print(f"wrote {args.out}; {runtime}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (CacheError, FileNotFoundError, ValueError) as e:
        print(f"grounding.py: error: {e}", file=sys.stderr)
        sys.exit(2)
