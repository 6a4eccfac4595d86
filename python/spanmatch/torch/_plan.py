"""The plan of a comparison, made once the first batch has shown every layer: which view each
layer pair uses, which statistics are accumulated, and how they fit the memory budget.

Memory (8-byte float64 values; n1, n2 the neurons of a pair's two layers):

* a layer pair: its statistics, ``(n1 + n2)² × 8`` bytes (plus ``(3(n1 + n2) + 6) × 8``),
  kept until the analysis;
* the untrained baseline: one more such set per pair;
* the bootstrap: one more set per pair and chunk, for the trained and the baseline pairs;
* ``cross=True``: per layer ``n_k² × 8`` (its Gram block), per compared pair of layers of A and
  B ``n_i n_j × 8`` (their cross block), and small row-norm moments, instead of one joint Gram
  matrix over every layer of both models (``(Σ n)² × 8``). When these blocks do not fit in
  ``max_memory`` next to the per-layer statistics, the layer pairs are split into groups, one
  pass over the data per group (pairs in the order of model A's layers, then B's).

``max_memory`` bounds the statistics held at once and, for ``cross=True``, the working memory
of the layer x layer analysis: it runs ``ANALYSIS_WIDTH`` pairs at a time, each taking about
``ANALYSIS_FACTOR`` times its statistics, and that much is kept free of blocks. On top come the
models, one batch of activations (every hooked layer of the first batch, which is kept until
the plan is made), and the final analysis of the per-layer pairs (about ``ANALYSIS_FACTOR``
times the statistics of each pair analysed at the same time, one per core).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from .._api import flat_length
from ._accumulate import Blocks, NativePair
from ._capture import MODEL_LABEL, Key, LayerInfo, VKey

#: Default ``max_memory``: this fraction of the machine's RAM (of the GPU's memory when the
#: statistics are accumulated on a GPU).
DEFAULT_MEMORY_FRACTION = 0.5
#: Used when the machine's RAM cannot be read.
FALLBACK_MEMORY = 8 << 30
#: Working memory of the analysis of one layer pair, in multiples of its statistics (the
#: statistics handed over, their copy in the engine, the peeling's and the measures' matrices;
#: measured: 5.3x at 400 + 400 neurons).
ANALYSIS_FACTOR = 8
#: Layer x layer pairs analysed at a time (the engine runs them in parallel).
ANALYSIS_WIDTH = max(1, min(4, os.cpu_count() or 1))


def default_max_memory(device_type: str = "cpu", device_index: Optional[int] = None) -> int:
    """``DEFAULT_MEMORY_FRACTION`` of the RAM (or of the GPU's memory)."""
    if device_type == "cuda":
        import torch

        total = torch.cuda.get_device_properties(device_index or 0).total_memory
        return int(total * DEFAULT_MEMORY_FRACTION)
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return FALLBACK_MEMORY
    return int(total * DEFAULT_MEMORY_FRACTION)


def fmt_bytes(n: float) -> str:
    """``1.5 GB``-style sizes (powers of 1024)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"  # pragma: no cover


def pair_bytes(n1: int, n2: int) -> int:
    """Bytes of the statistics of one layer pair: ``flat_length(n1, n2) × 8``, that is
    ``(n1 + n2)² × 8`` plus ``(3 (n1 + n2) + 6) × 8``."""
    return 8 * flat_length(n1, n2)


@dataclass
class MemoryEstimate:
    """What the statistics of a comparison take (bytes), from the layers' widths.

    Attributes:
        pairs: per-layer pair name -> the bytes of its statistics, ``(n1 + n2)² × 8`` (plus
            ``(3 (n1 + n2) + 6) × 8``).
        baseline: the untrained baseline pairs' statistics (0 without a baseline).
        chunks: the bootstrap chunks' statistics, trained and baseline (0 without bootstrap).
        cross: what ``cross=True`` accumulates: the Gram block of every layer and the cross
            block of every compared pair of layers of A and B (0 without ``cross``; see
            :attr:`cross_full` for the number whether or not it was asked).
        cross_full: the same blocks for every layer of A against every layer of B.
        cross_joint: one joint Gram matrix over every selected layer of both models,
            ``(Σ n)² × 8``, what a single accumulator of everything would take.
        passes: passes over the data within ``max_memory``.
        max_memory: the budget.
        accumulators: what accumulating takes beyond the statistics themselves: the rows the
            engine's accumulator gathers into blocks (512 rows per pair on the CPU), the chunk
            being filled.
        analysis: the working memory kept free for the layer x layer analysis (``cross``).
    """

    pairs: Dict[str, int]
    baseline: int
    chunks: int
    cross: int
    cross_full: int
    cross_joint: int
    passes: int
    max_memory: int
    accumulators: int = 0
    analysis: int = 0

    @property
    def per_layer(self) -> int:
        """The per-layer pairs' statistics, trained only."""
        return sum(self.pairs.values())

    @property
    def total(self) -> int:
        """Everything accumulated, over all passes (per-layer pairs, baseline, chunks,
        accumulators, cross blocks); with one pass (and the analysis' working memory), what
        ``max_memory`` must hold."""
        return self.per_layer + self.baseline + self.chunks + self.accumulators + self.cross

    def to_dict(self) -> Dict[str, Any]:
        """Plain data (bytes), with ``total``: the ``settings.memory`` block of a torch result
        (docs/results-schema.md)."""
        d: Dict[str, Any] = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["pairs"] = dict(self.pairs)
        d["total"] = self.total
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "MemoryEstimate":
        """The inverse of :meth:`to_dict` (e.g. ``MemoryEstimate.from_dict(result.to_dict()
        ["settings"]["memory"])`` of a result read back from JSON)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: (dict(v) if k == "pairs" else int(v)) for k, v in d.items() if k in names})

    def __repr__(self) -> str:
        lines = ["statistics of the comparison:"]
        for name, b in self.pairs.items():
            lines.append(f"  {name:32s} {fmt_bytes(b):>10s}")
        lines.append(f"  {'per-layer pairs':32s} {fmt_bytes(self.per_layer):>10s}")
        if self.baseline:
            lines.append(f"  {'untrained baseline':32s} {fmt_bytes(self.baseline):>10s}")
        if self.chunks:
            lines.append(f"  {'bootstrap chunks':32s} {fmt_bytes(self.chunks):>10s}")
        if self.accumulators:
            lines.append(f"  {'accumulators (rows in waiting)':32s} {fmt_bytes(self.accumulators):>10s}")
        if self.cross:
            lines.append(f"  {'cross=True blocks':32s} {fmt_bytes(self.cross):>10s}")
            lines.append(f"  {'cross analysis (working memory)':32s} {fmt_bytes(self.analysis):>10s}")
        lines.append(f"  {'total':32s} {fmt_bytes(self.total):>10s}")
        lines.append(
            f"  cross=True would need {fmt_bytes(self.cross_full)} of blocks "
            f"(one joint Gram matrix: {fmt_bytes(self.cross_joint)})"
        )
        lines.append(f"  max_memory {fmt_bytes(self.max_memory)}: {self.passes} pass(es) over the data")
        return "\n".join(lines)


@dataclass
class UnitPlan:
    """One accumulator: its layers (views), widths, slot pairs and chunks."""

    kind: str  # "blocks" or "native"
    vkeys: List[VKey]
    widths: List[int]
    pairs: List[Tuple[int, int]]
    chunks: int
    nbytes: int


@dataclass
class PairPlan:
    """One per-layer pair of the result (trained or baseline)."""

    ka: Key
    kb: Key
    view: str  # "full", "mean" or "max"
    source: Tuple[int, int, int, int] = (-1, -1, -1, -1)  # pass, unit, slot of a, slot of b
    chunked: bool = False


@dataclass
class PassPlan:
    units: List[UnitPlan] = field(default_factory=list)

    def models(self) -> List[str]:
        found: List[str] = []
        for u in self.units:
            for (key, _view) in u.vkeys:
                if key[0] not in found:
                    found.append(key[0])
        return found


@dataclass
class CrossPlan:
    keys_a: List[Key]
    keys_b: List[Key]
    view: Dict[Tuple[int, int], str]
    source: Dict[Tuple[int, int], Tuple[int, int, int, int]]
    left_out: List[Tuple[int, int]]


@dataclass
class Plan:
    pairs: List[PairPlan]
    baseline: List[PairPlan]
    passes: List[PassPlan]
    cross: Optional[CrossPlan]
    memory: MemoryEstimate
    analysis_width: int = ANALYSIS_WIDTH


class _Group:
    """A cross=True group in the making: the views of one row class used in one pass."""

    def __init__(self) -> None:
        self.vkeys: List[VKey] = []
        self.pairs: List[Tuple[int, int]] = []

    def slot(self, vkey: VKey) -> int:
        if vkey not in self.vkeys:
            self.vkeys.append(vkey)
        return self.vkeys.index(vkey)


def make_plan(
    info: Dict[Key, LayerInfo],
    order: Dict[str, List[Key]],
    first_calls: Dict[str, Dict[str, int]],
    pair_names: Sequence[Tuple[str, str]],
    cross: bool,
    pool: Optional[str],
    chunks: int,
    baseline: bool,
    max_memory: int,
    native: bool,
    display: Callable[[Key], str],
    rows_error: Callable[[Sequence[Key], Sequence[int]], Exception],
) -> Plan:
    """The plan (see the module docstring); raises ``ValueError`` when the layers cannot be
    compared or the statistics do not fit in ``max_memory``."""

    def view_of(ka: Key, kb: Key) -> Optional[str]:
        if info[ka].row_class() == info[kb].row_class():
            return "full"
        return pool

    def cross_view(ka: Key, kb: Key) -> Optional[str]:
        """Layer x layer: with ``pool`` every entry is pooled (one consistent matrix), else the
        full view where the rows agree."""
        if pool is not None:
            return pool
        return "full" if info[ka].row_class() == info[kb].row_class() else None

    def vkey(key: Key, view: str) -> VKey:
        if view == "full" or info[key].kind == "inputs":
            return (key, "full")
        return (key, "pool")

    def width(v: VKey) -> int:
        return info[v[0]].width

    def row_class(v: VKey) -> Tuple[str, int]:
        i = info[v[0]]
        return i.row_class() if v[1] == "full" else i.pool_class()

    # -- per-layer pairs -------------------------------------------------------------------
    pos = {m: {k: i for i, k in enumerate(keys)} for m, keys in order.items()}
    pairs: List[PairPlan] = []
    for a, b in pair_names:
        ca = first_calls.get("a", {}).get(a, 0)
        cb = first_calls.get("b", {}).get(b, 0)
        if ca != cb:
            raise ValueError(
                f"layer pair '{a}' / '{b}': module '{a}' of model a ran {ca} time(s) per batch but "
                f"module '{b}' of model b {cb} time(s)"
            )
        for k in range(ca):
            ka, kb = ("a", a, k), ("b", b, k)
            view = view_of(ka, kb)
            if view is None:
                raise rows_error([ka, kb], [info[ka].rows, info[kb].rows])
            pairs.append(PairPlan(ka, kb, view))
    pairs.sort(key=lambda p: (pos["a"].get(p.ka, 0), pos["b"].get(p.kb, 0)))

    base: List[PairPlan] = []
    if baseline:
        for p in pairs:
            for model, key in (("a0", p.ka), ("b0", p.kb)):
                k0 = (model, key[1], key[2])
                if k0 not in info:
                    raise ValueError(
                        f"baseline: module '{display(key)}' did not run in baseline model "
                        f"{MODEL_LABEL[model][-1]}; the baseline models must have the trained models' architecture"
                    )
                if info[k0].width != info[key].width or info[k0].rows != info[key].rows:
                    raise ValueError(
                        f"baseline: module '{display(key)}' of baseline model {MODEL_LABEL[model][-1]} has "
                        f"{info[k0].width} neurons and {info[k0].rows} rows, the trained model "
                        f"{info[key].width} and {info[key].rows}; the baseline models must have the "
                        "trained models' architecture"
                    )
            base.append(PairPlan(("a0",) + p.ka[1:], ("b0",) + p.kb[1:], p.view))  # type: ignore[arg-type]

    # -- units of the per-layer pairs (kept until the analysis) ------------------------------
    def owns(p: PairPlan) -> bool:
        """Whether a per-layer pair needs its own accumulator (else it is read from the cross
        blocks, when they hold the same view of both layers)."""
        if not cross or chunks > 0:
            return True
        cv = cross_view(p.ka, p.kb)
        return cv is None or (vkey(p.ka, p.view), vkey(p.kb, p.view)) != (vkey(p.ka, cv), vkey(p.kb, cv))

    pair_units: List[Tuple[PairPlan, UnitPlan]] = []

    def pair_unit(p: PairPlan, k_chunks: int) -> UnitPlan:
        va, vb = vkey(p.ka, p.view), vkey(p.kb, p.view)
        widths = [width(va), width(vb)]
        if native:
            return UnitPlan("native", [va, vb], widths, [(0, 1)], k_chunks, NativePair.nbytes(widths, k_chunks))
        return UnitPlan("blocks", [va, vb], widths, [(0, 1)], k_chunks, Blocks.nbytes(widths, [(0, 1)], k_chunks))

    def fixed_bytes(k_chunks: int) -> int:
        total = 0
        for p in pairs + base:
            if p in base or owns(p):
                total += pair_unit(p, k_chunks).nbytes
            else:  # taken from the cross blocks, kept after its pass
                total += pair_bytes(info[p.ka].width, info[p.kb].width)
        return total

    for p in pairs:
        if owns(p):
            p.chunked = chunks > 0
            pair_units.append((p, pair_unit(p, chunks)))
    for p in base:
        p.chunked = chunks > 0
        pair_units.append((p, pair_unit(p, chunks)))

    names = {display(p.ka) + ("" if p.kb[1] == p.ka[1] else f"/{display(p.kb)}"): pair_bytes(info[p.ka].width, info[p.kb].width) for p in pairs}
    base_bytes = sum(pair_bytes(info[p.ka].width, info[p.kb].width) for p in base)
    chunk_bytes = chunks * sum(pair_bytes(info[p.ka].width, info[p.kb].width) for p in pairs + base) if chunks else 0

    fixed = fixed_bytes(chunks)
    if fixed > max_memory:
        if chunks:
            fit = 0
            for k in range(chunks - 1, 0, -1):
                if fixed_bytes(k) <= max_memory:
                    fit = k
                    break
            if fit >= 2:
                raise ValueError(
                    f"bootstrap: {chunks} chunks need {fmt_bytes(fixed)} of statistics (every layer pair's "
                    f"statistics once per chunk), more than max_memory={fmt_bytes(max_memory)}; at most "
                    f"{fit} chunks fit: pass chunks={fit} or less, or raise max_memory"
                )
            raise ValueError(
                f"bootstrap: {chunks} chunks need {fmt_bytes(fixed)} of statistics, more than "
                f"max_memory={fmt_bytes(max_memory)}, and not even 2 chunks fit; raise max_memory or "
                "compare fewer layers"
            )
        largest = max(pairs + base, key=lambda p: pair_bytes(info[p.ka].width, info[p.kb].width))
        one = pair_bytes(info[largest.ka].width, info[largest.kb].width)
        if one > max_memory:
            raise ValueError(
                f"max_memory={fmt_bytes(max_memory)} is too small for a single layer pair: "
                f"'{display(largest.ka)}' ({info[largest.ka].width} + {info[largest.kb].width} neurons) "
                f"needs {fmt_bytes(one)} of statistics"
            )
        raise ValueError(
            f"max_memory={fmt_bytes(max_memory)} is too small for the statistics of the per-layer "
            f"pairs, which are kept until the analysis: {fmt_bytes(fixed)} for {len(pairs + base)} "
            "pair(s); raise max_memory or compare fewer layers"
        )

    passes: List[PassPlan] = [PassPlan()]
    for p, u in pair_units:
        passes[0].units.append(u)
        p.source = (0, len(passes[0].units) - 1, 0, 1)

    # -- cross=True -----------------------------------------------------------------------------
    cross_plan: Optional[CrossPlan] = None
    keys_a, keys_b = list(order.get("a", [])), list(order.get("b", []))
    n_all = sum(info[k].width for k in keys_a + keys_b)
    cross_joint = 8 * n_all * n_all

    def cross_need(entries: Sequence[Tuple[int, int, str]]) -> int:
        groups: Dict[Tuple[str, int], _Group] = {}
        for i, j, view in entries:
            va, vb = vkey(keys_a[i], view), vkey(keys_b[j], view)
            g = groups.setdefault(row_class(va), _Group())
            g.pairs.append((g.slot(va), g.slot(vb)))
        return sum(Blocks.nbytes([width(v) for v in g.vkeys], g.pairs) for g in groups.values())

    all_entries: List[Tuple[int, int, str]] = []
    left_out: List[Tuple[int, int]] = []
    for i, ka in enumerate(keys_a):
        for j, kb in enumerate(keys_b):
            view = cross_view(ka, kb)
            if view is None:
                left_out.append((i, j))
            else:
                all_entries.append((i, j, view))
    cross_full = cross_need(all_entries)
    cross_bytes = 0
    reserve = 0
    if cross:
        largest = max((pair_bytes(width(vkey(keys_a[i], v)), width(vkey(keys_b[j], v))) for i, j, v in all_entries), default=0)
        reserve = min(ANALYSIS_WIDTH, len(all_entries)) * ANALYSIS_FACTOR * largest
        left = max_memory - fixed - reserve
        views: Dict[Tuple[int, int], str] = {}
        sources: Dict[Tuple[int, int], Tuple[int, int, int, int]] = {}
        batches: List[List[Tuple[int, int, str]]] = [[]]
        for e in all_entries:
            trial = batches[-1] + [e]
            if cross_need(trial) <= left:
                batches[-1] = trial
                continue
            if not batches[-1] or cross_need([e]) > left:
                i, j, _ = e
                raise ValueError(
                    f"max_memory={fmt_bytes(max_memory)} is too small for cross=True: the layer pair "
                    f"'{display(keys_a[i])}' / '{display(keys_b[j])}' alone needs {fmt_bytes(cross_need([e]))} "
                    f"next to the per-layer statistics ({fmt_bytes(fixed)}) and the analysis' working memory "
                    f"({fmt_bytes(reserve)})"
                )
            batches.append([e])
        for b_index, entries in enumerate(batches):
            if not entries:
                continue
            if b_index >= len(passes):
                passes.append(PassPlan())
            pp = passes[b_index]
            groups: Dict[Tuple[str, int], _Group] = {}
            for i, j, view in entries:
                va, vb = vkey(keys_a[i], view), vkey(keys_b[j], view)
                g = groups.setdefault(row_class(va), _Group())
                g.pairs.append((g.slot(va), g.slot(vb)))
            unit_of: Dict[Tuple[str, int], int] = {}
            for cls, g in groups.items():
                widths = [width(v) for v in g.vkeys]
                pp.units.append(UnitPlan("blocks", list(g.vkeys), widths, list(g.pairs), 0, Blocks.nbytes(widths, g.pairs)))
                unit_of[cls] = len(pp.units) - 1
                cross_bytes += pp.units[-1].nbytes
            for i, j, view in entries:
                va, vb = vkey(keys_a[i], view), vkey(keys_b[j], view)
                cls = row_class(va)
                g = groups[cls]
                views[(i, j)] = "full" if va[1] == vb[1] == "full" else view
                sources[(i, j)] = (b_index, unit_of[cls], g.vkeys.index(va), g.vkeys.index(vb))
        cross_plan = CrossPlan(keys_a, keys_b, views, sources, left_out)
        ia = {k: i for i, k in enumerate(keys_a)}
        ib = {k: j for j, k in enumerate(keys_b)}
        for p in pairs:
            if not owns(p):
                p.source = sources[(ia[p.ka], ib[p.kb])]

    memory = MemoryEstimate(
        pairs=names,
        baseline=base_bytes,
        chunks=chunk_bytes,
        cross=cross_bytes,
        cross_full=cross_full,
        cross_joint=cross_joint,
        passes=len(passes),
        max_memory=int(max_memory),
        accumulators=fixed - sum(names.values()) - base_bytes - chunk_bytes,
        analysis=reserve,
    )
    return Plan(pairs, base, passes, cross_plan, memory)
