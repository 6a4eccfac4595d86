"""``compare``: the streamed pass (or passes) over the data, and ``estimate_memory``."""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Mapping
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from .. import _api
from .._api import Stats
from .._cross import CrossResult
from .._options import Options, options_from
from .._result import Result
from . import _accumulate, _analysis, _distributed, _top_inputs
from ._accumulate import Blocks, NativePair
from ._baseline import BaselineSpec, baseline_models
from ._capture import LAYOUTS, Capture, Key, LayerInfo, Slotting, device_of, run_model
from ._layers import LayerSpec, _unwrap, resolve_layers
from ._plan import MemoryEstimate, Plan, UnitPlan, default_max_memory, fmt_bytes, make_plan


@contextlib.contextmanager
def _hooked(models: Mapping[str, nn.Module], hooked: Mapping[str, Sequence[str]], cap: Capture) -> Iterator[None]:
    """``cap``'s forward hooks on the modules ``hooked[tag]`` of ``models[tag]``, every model in
    ``eval()`` under ``torch.inference_mode()``; on exit, also after an error, the hooks are
    removed and every module's training flag is restored (the user's models and the baseline
    copies alike)."""
    handles: List[Any] = []
    modes = [(m, m.training) for model in models.values() for m in model.modules()]
    try:
        for tag, model in models.items():
            mods = dict(model.named_modules())
            for name in hooked[tag]:
                handles.append(mods[name].register_forward_hook(cap.hook(tag, name)))
        for model in models.values():
            model.eval()
        with torch.inference_mode():
            yield
    finally:
        for h in handles:
            h.remove()
        for m, training in modes:
            m.training = training

_PRECISIONS = ("float64", "float32")
_POOLS = (None, "mean", "max")
_END = object()


# --------------------------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------------------------


def _labels(model_a: nn.Module, model_b: nn.Module, labels: Optional[Tuple[str, str]]) -> Tuple[str, str]:
    if labels is not None:
        if len(labels) != 2:
            raise ValueError("labels: give two names, (name of model a, name of model b)")
        return str(labels[0]), str(labels[1])
    la, lb = type(model_a).__name__, type(model_b).__name__
    if la == lb:
        la, lb = f"{la} (a)", f"{lb} (b)"
    return la, lb


def _whole(name: str, v: Any, lo: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or int(v) < lo:
        raise ValueError(f"{name}: {v!r}; give a whole number ≥ {lo}")
    return int(v)


def _check_args(
    data: Any,
    layout: str,
    precision: str,
    opts: Options,
    max_memory: Optional[int],
) -> None:
    """The torch front's own arguments and the options it reads itself (the engine checks the
    rest, naming the option, before anything runs: see :func:`_check_options`)."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout: '{layout}' is not a layout; use one of {', '.join(LAYOUTS)}")
    if precision not in _PRECISIONS:
        raise ValueError(f"precision: '{precision}'; use 'float64' or 'float32'")
    if isinstance(data, torch.Tensor):
        raise TypeError("data: a single tensor; pass an iterable of batches (a DataLoader, or a list of tensors)")
    simple = opts.simple
    if simple is not None and (
        isinstance(simple, bool) or not isinstance(simple, (int, float)) or math.isnan(simple) or not 0 <= simple <= 1
    ):
        raise ValueError(f"simple: {simple!r}; the ε of the simple matches must be in [0, 1]")
    if opts.null not in (None, "rotate"):
        raise ValueError(f"null: '{opts.null}'; use 'rotate' (the neuron-basis null) or None")
    _whole("null_draws", opts.null_draws)
    if opts.bootstrap is not None:
        _whole("bootstrap", opts.bootstrap)
        _whole("chunks", opts.chunks)
    _whole("top_inputs", opts.top_inputs, 0)
    if opts.pool not in _POOLS:
        raise ValueError(f"pool: '{opts.pool}'; use 'mean', 'max' or None")
    if max_memory is not None:
        _whole("max_memory", max_memory)
    _check_options(opts)


def _check_options(opts: Options) -> None:
    """Every option as the engine checks it (ε in [0, 1], known measures, seeds, ...), before
    the pass: a typo costs no forward pass. One tiny analysis of a 1 + 1 neuron layer."""
    probe = Stats.from_parts(1, 1, 1, np.eye(2), np.ones(2), np.ones(2), np.ones(2), 1.0, 1.0, 1.0)
    checked = opts.replace(null=None, bootstrap=None, simple=None, curve=False, witnesses=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _api.analyse({"probe": probe}, checked)


def _batch_geometry(data: Any, chunks: int, use_dist: bool) -> Tuple[int, int]:
    """(batches over all ranks, batches on the ranks before this one), for the bootstrap's
    chunks; raises before anything runs when the chunks cannot be made."""
    try:
        mine = len(data)
    except TypeError:
        raise ValueError(
            "bootstrap: the data has no len(); the chunks are runs of consecutive batches, so the "
            "number of batches must be known before the pass (use a DataLoader or a list)"
        ) from None
    counts = _distributed.gather(int(mine)) if use_dist else [int(mine)]
    total = sum(counts)
    offset = sum(counts[: _distributed.rank()]) if use_dist else 0
    if chunks > total:
        where = f" over the {len(counts)} ranks" if use_dist else ""
        raise ValueError(
            f"bootstrap: {chunks} chunks but only {total} batches{where}; a chunk is a run of whole "
            f"batches: use chunks={total} or less, or smaller batches"
        )
    return total, offset


# --------------------------------------------------------------------------------------------
# The pass
# --------------------------------------------------------------------------------------------


class _Run:
    """One comparison's passes: discovery, plan, accumulation, reduction, statistics."""

    def __init__(
        self,
        cap: Capture,
        models: Dict[str, nn.Module],
        data: Iterable[Any],
        stats_device: torch.device,
        precision: str,
        native: bool,
        use_dist: bool,
        progress: bool,
        plan_args: Dict[str, Any],
        chunks: int,
        batches_total: int,
        batch_offset: int,
    ) -> None:
        self.cap = cap
        self.models = models
        self.devices = {m: device_of(model) for m, model in models.items()}
        self.data = data
        self.stats_device = stats_device
        self.precision = precision
        self.native = native
        self.use_dist = use_dist
        self.progress = progress and (not use_dist or _distributed.rank() == 0)
        self.plan_args = plan_args
        self.chunks = chunks
        self.batches_total = batches_total
        self.batch_offset = batch_offset
        self.plan: Optional[Plan] = None
        self.pair_stats: Dict[Tuple[str, int], Stats] = {}  # ("trained"/"baseline", index) -> stats
        self.pair_chunks: Dict[Tuple[str, int], List[Stats]] = {}
        self.cross_stats: Dict[Tuple[int, int], Tuple[List[float], float, Dict[str, float], int]] = {}
        self.inputs_total = 0
        self.tails: Dict[Key, Optional[Tuple[int, ...]]] = {}
        self.top: Dict[Key, Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]] = {}
        self.units: List[Any] = []
        self.batches_seen = 0
        self.options: Optional[Options] = None

    # -- units -----------------------------------------------------------------------------

    def _build(self, up: UnitPlan) -> Any:
        if up.kind == "native":
            return NativePair(up.widths, self.precision, up.chunks)
        return Blocks(up.widths, up.pairs, self.stats_device, self.precision, up.chunks)

    def _start_units(self, index: int) -> None:
        assert self.plan is not None
        self.cap.slots = Slotting()
        self.cap.pool_dtype = torch.float64 if self.precision == "float64" else torch.float32
        self.units = [self._build(up) for up in self.plan.passes[index].units]
        for u, up in zip(self.units, self.plan.passes[index].units):
            self.cap.slots.add(u, up.vkeys)

    def _advance_chunks(self, local_batch: int) -> None:
        if not self.chunks:
            return
        target = ((self.batch_offset + local_batch) * self.chunks) // self.batches_total
        if target >= self.chunks:
            raise ValueError(
                f"bootstrap: the data yielded more batches than len(data) = {self.batches_total} said"
            )
        for u in self.units:
            if u.chunks:
                while len(u.chunk_flats) < target:
                    u.end_chunk()

    # -- batches ---------------------------------------------------------------------------

    def _batch(self, batch: Any, models: Sequence[str]) -> None:
        cap = self.cap
        cap.begin_batch(batch)
        for m in models:
            cap.active = m
            run_model(self.models[m], batch, self.devices[m])
        cap.active = None
        cap.end_batch()

    def _bar(self, index: int, passes: int) -> Any:
        if not self.progress:
            return None
        from tqdm.auto import tqdm

        total = len(self.data) if hasattr(self.data, "__len__") else None  # type: ignore[arg-type]
        desc = "spanmatch" if passes <= 1 else f"spanmatch pass {index + 1}/{passes}"
        return tqdm(total=total, desc=desc, unit="batch", dynamic_ncols=True)

    def _tick(self, bar: Any) -> None:
        if bar is None:
            return
        bar.update(1)
        bar.set_postfix(
            layers=sum(1 for k in self.cap.info if k[0] == "a"),
            inputs=self.cap.inputs_before,
            rows=self.cap.rows_seen,
            refresh=False,
        )

    def run(self) -> None:
        cap = self.cap
        first_models = list(self.models)
        it = iter(self.data)
        one_shot = it is self.data
        bar = self._bar(0, 1)
        try:
            first: Any = _END
            with self._ranks_stop_together():
                first = next(it, _END)
                if first is not _END:
                    self._batch(first, first_models)
                    self._tick(bar)
            mine = None if first is _END else self._meta()
            if self.use_dist:
                ref = _distributed.agree(mine)
                if mine is None:
                    cap.order = {m: list(v) for m, v in ref["order"].items()}
                    cap.info = dict(ref["info"])
                    cap.first_calls = ref["first_calls"]
            elif first is _END:
                raise ValueError("data: no batches; the data must yield at least one batch")
            else:
                ref = mine
            self.plan = make_plan(
                info=ref["info"], order=ref["order"], first_calls=ref["first_calls"], **self.plan_args
            )
            if len(self.plan.passes) > 1 and one_shot:
                raise ValueError(
                    f"cross=True needs {len(self.plan.passes)} passes over the data to stay within max_memory="
                    f"{fmt_bytes(self.plan.memory.max_memory)}, but the data is a one-shot iterator; pass a "
                    "DataLoader or a list, or raise max_memory"
                )
            self._start_units(0)
            cap.discovering = False
            local = 1 if first is not _END else 0
            with self._ranks_stop_together():
                if first is not _END:  # the first batch's activations, kept while discovering
                    self._advance_chunks(0)
                    cap.replay()
                for batch in it:
                    self._advance_chunks(local)
                    self._batch(batch, first_models)
                    self._tick(bar)
                    local += 1
        finally:
            if bar is not None:
                bar.close()
        if self.chunks and not self.use_dist and local != self.batches_total:
            raise ValueError(
                f"bootstrap: len(data) said {self.batches_total} batches but the data yielded {local}"
            )
        self.batches_seen = local
        self._finish_first_pass(local)
        self._end_pass(0)
        assert self.plan is not None
        for index in range(1, len(self.plan.passes)):
            self._start_units(index)
            cap.start_pass(index)
            models = self.plan.passes[index].models()
            bar = self._bar(index, len(self.plan.passes))
            try:
                with self._ranks_stop_together():
                    for batch in self.data:
                        self._batch(batch, models)
                        self._tick(bar)
            finally:
                if bar is not None:
                    bar.close()
            self._end_pass(index)

    @contextlib.contextmanager
    def _ranks_stop_together(self) -> Iterator[None]:
        """Under torch.distributed, an exception inside the block (a NaN in this rank's shard,
        say) is held until the block's end, where every rank learns whether any failed and all
        of them raise (:func:`_distributed.raise_if_any_failed`); alone, it is raised as is."""
        if not self.use_dist:
            yield
            return
        error: Optional[Exception] = None
        try:
            yield
        except Exception as e:
            error = e
        _distributed.raise_if_any_failed(error)

    def _meta(self) -> Dict[str, Any]:
        cap = self.cap
        return {
            "order": cap.order,
            "info": cap.info,
            "first_calls": cap.first_calls,
            "widths": {k: i.width for k, i in cap.info.items()},
        }

    def _finish_first_pass(self, local_batches: int) -> None:
        """Inputs, tails (per-input shapes) and top inputs over every rank."""
        cap = self.cap
        tails = {k: i.tail for k, i in cap.info.items()}
        tops = _top_inputs.gather_keys(cap.top)
        if self.use_dist:
            per_rank = _distributed.gather({"inputs": cap.inputs_before, "tails": tails, "top": tops, "batches": local_batches})
            counts = [d["inputs"] for d in per_rank]
            self.inputs_total = sum(counts)
            offsets = [sum(counts[:r]) for r in range(len(counts))]
            merged: Dict[Key, Optional[Tuple[int, ...]]] = {}
            for d in per_rank:
                if d["batches"] == 0:
                    continue
                for k, t in d["tails"].items():
                    merged[k] = t if k not in merged or merged[k] == t else None
            self.tails = merged
            if cap.top_k is not None:
                self.top = _top_inputs.merge_ranks([d["top"] for d in per_rank], offsets, cap.top_k)
            if self.chunks and sum(d["batches"] for d in per_rank) != self.batches_total:
                raise ValueError(
                    f"bootstrap: len(data) over the ranks said {self.batches_total} batches but the data "
                    f"yielded {sum(d['batches'] for d in per_rank)}"
                )
        else:
            self.inputs_total = cap.inputs_before
            self.tails = tails
            self.top = tops
        cap.top = {}

    def _end_pass(self, index: int) -> None:
        assert self.plan is not None
        for u in self.units:
            u.close(self.chunks)
            if self.use_dist:
                _distributed.all_reduce(u.tensors())
                u.after_reduce()
        for group, plans in (("trained", self.plan.pairs), ("baseline", self.plan.baseline)):
            for n, p in enumerate(plans):
                pi, ui, si, sj = p.source
                if pi != index:
                    continue
                u = self.units[ui]
                self.pair_stats[(group, n)] = u.pair_stats(si, sj)
                if p.chunked:
                    self.pair_chunks[(group, n)] = u.chunk_stats()
        cross = self.plan.cross
        if cross is not None:
            todo = {e: src for e, src in cross.source.items() if src[0] == index}
            self._analyse_cross(todo)
        self.units = []
        self.cap.slots = Slotting()

    def _analyse_cross(self, todo: Dict[Tuple[int, int], Tuple[int, int, int, int]]) -> None:
        """The layer x layer entries of one pass, a few pairs at a time."""
        assert self.options is not None
        batch: Dict[str, Stats] = {}
        width = self.plan.analysis_width if self.plan else 1

        def flush() -> None:
            nonlocal batch
            if not batch:
                return
            found = _analysis.analyse_cross(batch, self.options)  # type: ignore[arg-type]
            for name, s in batch.items():
                i, j = (int(v) for v in name.split(","))
                mms, max_eps, values = found[name]
                self.cross_stats[(i, j)] = (mms, max_eps, values, s.rows)
            batch = {}

        for (i, j), (_, ui, si, sj) in todo.items():
            s = self.units[ui].pair_stats(si, sj)
            batch[f"{i},{j}"] = s
            if len(batch) >= width:
                flush()
        flush()


# --------------------------------------------------------------------------------------------
# compare
# --------------------------------------------------------------------------------------------


def compare(
    model_a: nn.Module,
    model_b: nn.Module,
    data: Iterable[Any],
    options: Optional[Union[Options, Mapping[str, Any]]] = None,
    *,
    layers: LayerSpec = None,
    cross: bool = False,
    baseline: BaselineSpec = None,
    device: Union[None, str, torch.device] = None,
    precision: str = "float64",
    layout: str = "tokens",
    select: Optional[Callable[[Any], torch.Tensor]] = None,
    labels: Optional[Tuple[str, str]] = None,
    distributed: Optional[bool] = None,
    max_memory: Optional[int] = None,
    progress: bool = True,
    **kwargs: Any,
) -> Result:
    """Which layers, and which neurons, of two models learned the same thing? One streamed pass.

    Runs both models on every batch of ``data`` (in ``eval()`` mode under
    ``torch.inference_mode()``; their modes are restored afterwards), hooks the chosen modules
    and accumulates, per layer pair, the exact float64 statistics of the joint activations on
    the models' device. Then finds the maximum span matches at every ε, the measures and the
    controls, through the same engine analysis as every other front. Every error, also one
    raised in the middle of the pass (a NaN, Ctrl-C, a failing batch), leaves the models as
    they were: parameters, buffers, train/eval modes, hooks.

    What to compute is a :class:`spanmatch.Options` (``options``) and/or its fields as keyword
    arguments (``eps=(0.25, 0.5)``, ``null="rotate"``, ``bootstrap=200``, ...); the other
    keyword arguments say how to capture (layers, device, precision, ...). For example::

        spanmatch.torch.compare(model_a, model_b, loader, baseline="reinit", null="rotate",
                                bootstrap=200, chunks=20, simple=0.25, top_inputs=8)

    Args:
        model_a, model_b: the two models (any ``nn.Module``; DDP/DataParallel wrappers are
            looked through). They may be the same object.
        data: a DataLoader or any iterable of batches: a tensor (``model(batch)``), a tuple or
            list whose first element is the input (``model(batch[0])``; labels are ignored), or
            a dict (``model(**batch)``; its ``attention_mask`` leaves padding tokens out). Both
            models see the same batch. Under ``torch.distributed``, this rank's shard.
        options: what to compute: a :class:`spanmatch.Options`, a dict of its fields, or None
            (the defaults: ε = 0.15, 0.2, 0.25, 0.3, 0.5, linear CKA, the centred match beside
            the uncentred one). Keyword arguments named after its fields override it. The
            fields the torch front reads itself:

            * ``bootstrap`` / ``chunks``: a bootstrap over ``chunks`` chunks of consecutive
              *batches* (``LayerResult.intervals``). Batch ``g`` of ``N`` is in chunk
              ``⌊g·chunks/N⌋``, so ``len(data)`` must be known and ``chunks`` at most the
              number of batches; with batches of one input this is the numpy front's rule
              (input ``i`` of ``N`` in chunk ``⌊i·chunks/N⌋``). Under ``torch.distributed``,
              ``g`` counts rank 0's batches first, then rank 1's, ..., and a chunk that
              straddles two ranks is summed over them: with contiguous shards (rank 0 the
              first part of the data, ...) the chunks, and so the intervals, are those of one
              process over all the data. Memory: one more set of statistics per layer pair
              and chunk.
            * ``simple``: the simple matches of every layer at this ε, after the pass, with a
              progress bar (rank 0, ``progress=True``); Ctrl-C stops them and keeps what was
              found (``complete: false`` in the layer's ``simple`` block, with a warning; the
              later layers' simple matches stop too), and the result is returned.
            * ``top_inputs``: ``k`` (0: none): for every neuron of every hooked layer of both
              models, the ``k`` inputs with the largest response (an input's maximum over
              positions or tokens, padding left out), kept on the models' device in the same
              pass (O(k × neurons)): the record's ``top_inputs`` block (``LayerResult.top_inputs``),
              ``result["layer"].top_inputs_a`` / ``.top_inputs_b`` (:class:`TopInputs`, arrays
              ``[neurons, k]`` of input indices in data order, values and positions; ties go to
              the lower index), every hooked layer in ``result.top_inputs``. Under
              ``torch.distributed`` the index counts rank 0's inputs first, then rank 1's, ....
            * ``pool``: ``"mean"`` or ``"max"``: one row per input, the mean or maximum over
              positions and (unmasked) tokens. A per-layer pair whose rows differ is compared
              pooled (its record says ``"pool"``); pairs whose rows agree keep every row. With
              ``cross=True`` every layer x layer entry is pooled, so that the matrices compare
              like with like (a layer with one row per input is its own pooled view);
              ``result.cross.view`` gives each entry's view. Without ``pool``, entries whose
              rows differ are left out, with a warning.
            * ``seed``: also the seed of ``baseline="reinit"`` (A's copy ``seed``, B's
              ``seed + 1``).
        layers: None (every activation module, ReLU, GELU, SiLU, ..., present under the same
            name in both models), module names as in ``named_modules()``, glob patterns
            (``"features.*"``), module types (``torch.nn.ReLU``), a list of these, or a dict
            ``{name_in_a: name_in_b}`` for two different architectures. A module called several
            times per forward pass (ResNet's ``relu``) gives one layer per call, named
            ``name#1``, ``name#2``, ....
        cross: also compare every selected layer of A with every selected layer of B
            (``result.cross``, a :class:`CrossResult`: mms at each ε, max ε, linear CKA and
            every other requested measure per entry; no controls), in the same pass. Pairs
            whose rows differ (conv layers at different resolutions, a conv layer and a dense
            one) need ``pool``; without it they are left out, with a warning naming them.
        baseline: the untrained baseline, run on the same batches in the same pass:
            ``"reinit"`` (deep copies of both models re-initialised: A's with ``seed``, B's
            with ``seed + 1``; see :func:`reinit` for how, and when the copy equals a freshly
            constructed model) or a pair of models ``(model_a0, model_b0)`` with the trained
            models' architecture, e.g. the two nets' initial checkpoints: the exact baseline.
            Every layer then carries ``untrained`` (its mms at every ε, CKA, centred mms,
            intervals with ``bootstrap``, trained − untrained) and, with ``null="rotate"``, a
            ``verdict`` (docs/controls.md). Memory: the two extra models (for ``"reinit"``)
            plus one more set of statistics per layer pair (and per chunk).
        device: where the statistics are accumulated (default: model A's device).
        precision: ``"float64"`` (default: products and sums in float64, exact to rounding) or
            ``"float32"`` (per-batch Gram products in float32, summed across batches in
            float64: for GPUs without fast float64, and 10-30% faster in total on a 2-core CPU;
            thresholds moved by up to 1.5e-4 in our measurements, see docs/benchmarks.md). On
            the CPU in float64 the layer pairs go to the engine's own accumulator (OpenBLAS
            ``dsyrk``, arrays read in place, small batches gathered into blocks of 512 rows).
        layout: how rank-3 outputs are read: ``"tokens"`` (``[B, T, C]``, every token a row),
            ``"channels_first"`` (``[B, C, L]``, Conv1d), or ``"channels_last"`` (every output of
            rank ≥ 3 as ``[B, ..., C]``). Rank ≥ 4 outputs are channels first otherwise.
        select: a function from a module's output to the tensor to compare (default: the
            output if it is a tensor, else its first tensor: tuples, dicts, ``ModelOutput``).
        labels: names of the two models for tables and figures (default: their class names).
        distributed: sum the statistics over ``torch.distributed`` ranks (default: when it is
            initialised).
        max_memory: bytes the statistics may take at once (default: half the machine's RAM,
            or of the GPU's memory when accumulating on a GPU). The per-layer pairs (with their
            baseline and bootstrap chunks) must fit; ``cross=True`` splits its layer pairs into
            groups that fit, one pass over the data per group (the data must then be iterable
            more than once). See :func:`estimate_memory`.
        progress: tqdm progress bars over the batches and the simple matches (rank 0 only).
        **kwargs: fields of :class:`spanmatch.Options`, overriding ``options``: ``eps``,
            ``measures``, ``dead``, ``tol``, ``center``, ``null`` / ``null_draws``,
            ``bootstrap`` / ``chunks``, ``simple`` / ``orders``, ``top_inputs``, ``pool``,
            ``seed``, ``main_eps``, ``curve``, ... An unknown name raises ``TypeError`` listing
            the valid ones.

    Returns:
        A :class:`spanmatch.Result` (schema version 3, ``"front": "torch"``), one layer per
        pair (named after model A's module, with ``name_b`` for a dict), with ``result.cross``
        set when ``cross=True`` and ``result.memory`` (a :class:`MemoryEstimate`, also written
        under ``settings.memory`` of ``result.to_dict()``; docs/results-schema.md).

    Raises:
        ValueError: unknown layer names (the message lists the closest), layers whose rows
            differ, empty data, a NaN or infinity in an activation (naming the model, layer,
            batch and input), a baseline of another architecture, chunks above the number of
            batches, statistics above ``max_memory``, bad options (naming the option).
        TypeError: a module output without any tensor, a bad batch, an unknown keyword
            argument, ``options`` of another type (e.g. the layers passed positionally).
    """
    if options is not None and not isinstance(options, (Options, Mapping)):
        raise TypeError(
            f"compare: options must be a spanmatch.Options, a dict of its fields or None, got "
            f"{type(options).__name__}; the layers are a keyword argument: compare(model_a, model_b, "
            "data, layers=...)"
        )
    opts = options_from(options, kwargs, "compare", extra=_OWN_KEYWORDS)
    _check_args(data, layout, precision, opts, max_memory)
    top_k = int(opts.top_inputs) or None
    pool = opts.pool
    seed = int(opts.seed)
    label_a, label_b = _labels(model_a, model_b, labels)
    model_a, model_b = _unwrap(model_a), _unwrap(model_b)
    pairs, sel_a, sel_b = resolve_layers(model_a, model_b, layers, cross)
    stats_device = torch.device(device) if device is not None else device_of(model_a)
    use_dist = _distributed.active() if distributed is None else bool(distributed)
    n_chunks = int(opts.chunks) if opts.bootstrap is not None else 0
    batches_total, batch_offset = _batch_geometry(data, n_chunks, use_dist) if n_chunks else (0, 0)
    base = baseline_models(baseline, model_a, model_b, seed)

    explicit = _explicit(layers)
    hooked = {
        "a": list(dict.fromkeys(sel_a if cross else [a for a, _ in pairs])),
        "b": list(dict.fromkeys(sel_b if cross else [b for _, b in pairs])),
    }
    models: Dict[str, nn.Module] = {"a": model_a, "b": model_b}
    if base is not None:
        a0, b0, _given = base
        models["a0"], models["b0"] = a0, b0
        hooked["a0"] = [a for a, _ in pairs]
        hooked["b0"] = [b for _, b in pairs]
        explicit["a0"], explicit["b0"] = explicit["a"], explicit["b"]
    rank = _distributed.rank() if use_dist else None
    cap = Capture(hooked, layout, select, explicit, pool, top_k, rank)
    native = (
        stats_device.type == "cpu"
        and _accumulate.NATIVE_CPU
        and (precision == "float64" or _accumulate.NATIVE_CPU_F32)
    )
    budget = int(max_memory) if max_memory is not None else default_max_memory(stats_device.type, stats_device.index)
    plan_args = dict(
        pair_names=pairs,
        cross=cross,
        pool=pool,
        chunks=n_chunks,
        baseline=base is not None,
        max_memory=budget,
        native=native,
        display=cap.display,
        rows_error=lambda keys, counts: _rows_error(cap, keys, counts),
    )
    run = _Run(cap, models, data, stats_device, precision, native, use_dist, progress, plan_args, n_chunks, batches_total, batch_offset)
    run.options = opts

    try:
        with _hooked(models, hooked, cap):
            run.run()
    finally:
        cap.active = None
        cap.held = []
        cap.slots = Slotting()
        run.units = []
    settings = {
        "layout": layout,
        "precision": precision,
        "device": stats_device.type,
        "ranks": _distributed.world_size() if use_dist else 1,
        "baseline": None if base is None else ("models" if base[2] else "reinit"),
        "cross": bool(cross),
        "passes": run.plan.memory.passes if run.plan is not None else 1,
    }
    return _result(run, cap, opts, label_a, label_b, cross, settings)


#: compare's own keyword arguments (beside the fields of ``spanmatch.Options``).
_OWN_KEYWORDS = (
    "layers",
    "cross",
    "baseline",
    "device",
    "precision",
    "layout",
    "select",
    "labels",
    "distributed",
    "max_memory",
    "progress",
)


def _explicit(layers: LayerSpec) -> Dict[str, set]:
    """Module names given by name (not by pattern or type): those must run."""
    if isinstance(layers, Mapping):
        return {"a": set(layers.keys()), "b": set(layers.values())}
    if isinstance(layers, str) and not any(c in layers for c in "*?["):
        return {"a": {layers}, "b": {layers}}
    if isinstance(layers, (list, tuple)):
        names = {n for n in layers if isinstance(n, str) and not any(c in n for c in "*?[")}
        return {"a": names, "b": set(names)}
    return {"a": set(), "b": set()}


def _rows_error(cap: Capture, keys: Sequence[Key], counts: Sequence[int]) -> ValueError:
    try:
        cap._check_rows(keys, counts)
    except ValueError as e:
        return e
    return ValueError("layers whose rows differ cannot be compared")  # pragma: no cover


# --------------------------------------------------------------------------------------------
# The result
# --------------------------------------------------------------------------------------------


def _shape(run: _Run, key: Key, view: str, stats: Stats, side: int) -> List[int]:
    if view != "full":
        return [run.inputs_total, run.cap.info[key].width]
    t = run.tails.get(key)
    if t is not None:
        return [run.inputs_total, *t]
    return [stats.rows, stats.n1 if side == 0 else stats.n2]


def _result(
    run: _Run,
    cap: Capture,
    opts: Options,
    label_a: str,
    label_b: str,
    cross: bool,
    settings: Dict[str, Any],
) -> Result:
    plan = run.plan
    assert plan is not None
    stats: Dict[str, Stats] = {}
    names_b: Dict[str, str] = {}
    shapes: Dict[str, Tuple[List[int], List[int]]] = {}
    chunks: Dict[str, List[Stats]] = {}
    base: Dict[str, Stats] = {}
    base_chunks: Dict[str, List[Stats]] = {}
    extras: Dict[str, Dict[str, Any]] = {}
    tops: Dict[str, Tuple[Optional[_top_inputs.TopInputs], Optional[_top_inputs.TopInputs]]] = {}
    k = cap.top_k
    top_all: Dict[str, Dict[str, _top_inputs.TopInputs]] = {"a": {}, "b": {}}
    if k is not None:
        for key, arrays in run.top.items():
            info = cap.info.get(key)
            shape = info.positions_shape if info is not None else None
            top_all[key[0]][cap.display(key)] = _top_inputs.finish(*arrays, shape, k)
    for n, p in enumerate(plan.pairs):
        s = run.pair_stats[("trained", n)]
        name = cap.display(p.ka)
        nb = cap.display(p.kb)
        if name in stats:  # the same module of A paired twice: name the pair
            name = f"{name}/{nb}"
        stats[name] = s
        if nb != name:
            names_b[name] = nb
        shapes[name] = (_shape(run, p.ka, p.view, s, 0), _shape(run, p.kb, p.view, s, 1))
        if ("trained", n) in run.pair_chunks:
            chunks[name] = run.pair_chunks[("trained", n)]
        if plan.baseline:
            base[name] = run.pair_stats[("baseline", n)]
            if ("baseline", n) in run.pair_chunks:
                base_chunks[name] = run.pair_chunks[("baseline", n)]
        extra: Dict[str, Any] = {}
        if p.view != "full":
            extra["pool"] = p.view
        if k is not None:
            ta = top_all["a"].get(cap.display(p.ka))
            tb = top_all["b"].get(nb)
            tops[name] = (ta, tb)
            if ta is not None and tb is not None:
                extra["top_inputs"] = _top_inputs.to_payload(ta, tb, k)
        if extra:
            extras[name] = extra
    bar = _SimpleProgress(run.progress)
    try:
        result = _analysis.analyse(
            stats,
            opts,
            names_b=names_b,
            shapes=shapes,
            label_a=label_a,
            label_b=label_b,
            chunks=chunks,
            baseline=base,
            baseline_chunks=base_chunks,
            extras=extras,
            progress=bar if opts.simple is not None else None,
            provenance={"inputs": int(run.inputs_total)},
        )
    finally:
        bar.close()
    report = result.to_dict()
    settings = dict(settings, memory=plan.memory.to_dict())
    report["settings"] = dict(report.get("settings") or {}, **settings)
    cross_result = None
    if cross and plan.cross is not None:
        cross_result = _cross_result(run, cap, plan, opts, label_a, label_b)
        if plan.cross.left_out:
            c = plan.cross
            shown = ", ".join(
                f"{cap.display(c.keys_a[i])} / {cap.display(c.keys_b[j])}" for i, j in c.left_out[:6]
            ) + (f" and {len(c.left_out) - 6} more" if len(c.left_out) > 6 else "")
            msg = (
                f"cross: {len(c.left_out)} of {len(c.keys_a) * len(c.keys_b)} layer pairs have different rows "
                f"and are left out ({shown}); pass pool='mean' or pool='max' to compare them on one row per input"
            )
            warnings.warn(msg, stacklevel=3)
            report["warnings"] = list(report.get("warnings") or []) + [msg]
    out = Result(report, None, report.get("warnings") or [], cross=cross_result)
    for layer in out.layers:
        ta, tb = tops.get(layer.name, (None, None))
        layer.top_inputs_a = ta  # type: ignore[attr-defined]
        layer.top_inputs_b = tb  # type: ignore[attr-defined]
    out.top_inputs = top_all if k is not None else None  # type: ignore[attr-defined]
    out.memory = plan.memory  # type: ignore[attr-defined]
    return out


class _SimpleProgress:
    """The simple matches' progress bar (tqdm, one per layer; shown on rank 0 with
    ``progress=True``), called by the engine as ``(layer, done, total)``. Whether shown or not,
    it is what lets the engine see Ctrl-C while the simple matches run: the engine checks
    Python's signals at each call and stops, keeping what was found."""

    def __init__(self, show: bool) -> None:
        self.show = show
        self.layer: Optional[str] = None
        self.bar: Any = None

    def __call__(self, layer: str, done: int, total: int) -> None:
        if not self.show:
            return
        if layer != self.layer:
            self.close()
            from tqdm.auto import tqdm

            self.layer = layer
            self.bar = tqdm(total=total, desc=f"simple matches {layer}", unit="neuron", dynamic_ncols=True)
            self.bar.set_postfix_str("Ctrl-C stops and keeps what was found", refresh=False)
        self.bar.n = done
        self.bar.refresh()
        if done >= total:
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.bar = None
        self.layer = None


def _cross_result(
    run: _Run, cap: Capture, plan: Plan, opts: Options, label_a: str, label_b: str
) -> CrossResult:
    c = plan.cross
    assert c is not None
    na, nb, ne = len(c.keys_a), len(c.keys_b), len(opts.eps)
    mms = np.full((ne, na, nb), np.nan)
    max_eps = np.full((na, nb), np.nan)
    rows = np.zeros((na, nb), dtype=np.int64)
    view = np.full((na, nb), None, dtype=object)
    names: List[str] = []
    for _, _, values, _ in run.cross_stats.values():
        names += [n for n in values if n not in names]
    measures = {n: np.full((na, nb), np.nan) for n in names}
    for (i, j), (m, me, values, r) in run.cross_stats.items():
        mms[:, i, j] = m
        max_eps[i, j] = me
        for n, v in values.items():
            measures[n][i, j] = v
        rows[i, j] = r
        view[i, j] = c.view[(i, j)]
    return CrossResult(
        layers_a=[cap.display(k) for k in c.keys_a],
        layers_b=[cap.display(k) for k in c.keys_b],
        eps=tuple(opts.eps),
        mms=mms,
        cka=measures.get("cka_linear", np.full((na, nb), np.nan)),
        cka_debiased=measures.get("cka_linear_debiased", np.full((na, nb), np.nan)),
        max_epsilon=max_eps,
        rows=rows,
        label_a=label_a,
        label_b=label_b,
        view=view,
        measures=measures,
    )


# --------------------------------------------------------------------------------------------
# estimate_memory
# --------------------------------------------------------------------------------------------


def estimate_memory(
    model_a: nn.Module,
    model_b: nn.Module,
    batch: Any,
    layers: LayerSpec = None,
    cross: bool = False,
    pool: Optional[str] = None,
    bootstrap: Optional[int] = None,
    chunks: int = 20,
    baseline: bool = False,
    max_memory: Optional[int] = None,
    layout: str = "tokens",
    select: Optional[Callable[[Any], torch.Tensor]] = None,
    precision: str = "float64",
    device: Union[None, str, torch.device] = None,
) -> MemoryEstimate:
    """What the statistics of ``compare(model_a, model_b, ...)`` with these arguments take,
    from one batch (run once through both models to see the layers' widths; the models are
    left as they were).

    Per layer pair ``(n1 + n2)² × 8`` bytes (plus ``(3(n1 + n2) + 6) × 8``); the baseline doubles
    it, the bootstrap adds one set per chunk; ``cross=True`` adds ``n_k² × 8`` per layer and
    ``n_i n_j × 8`` per compared pair of layers of A and B, split into passes over the data
    when it does not fit in ``max_memory``. ``baseline``: whether a baseline pair will run
    (``"reinit"`` or given models: the same memory). Returns a :class:`MemoryEstimate` (its
    ``repr`` is a table); raises what ``compare`` would raise about the memory.
    """
    _check_args([], layout, precision, Options(pool=pool, bootstrap=bootstrap, chunks=chunks), max_memory)
    model_a, model_b = _unwrap(model_a), _unwrap(model_b)
    pairs, sel_a, sel_b = resolve_layers(model_a, model_b, layers, cross)
    stats_device = torch.device(device) if device is not None else device_of(model_a)
    hooked = {
        "a": list(dict.fromkeys(sel_a if cross else [a for a, _ in pairs])),
        "b": list(dict.fromkeys(sel_b if cross else [b for _, b in pairs])),
    }
    cap = Capture(hooked, layout, select, _explicit(layers), pool, None, None)
    models = {"a": model_a, "b": model_b}
    try:
        with _hooked(models, hooked, cap):
            cap.begin_batch(batch)
            for tag, model in models.items():
                cap.active = tag
                run_model(model, batch, device_of(model))
            cap.active = None
            cap.end_batch()
    finally:
        cap.held = []
    info: Dict[Key, LayerInfo] = dict(cap.info)
    order = {m: list(v) for m, v in cap.order.items()}
    first_calls = dict(cap.first_calls or {})
    if baseline:
        for tag, src in (("a0", "a"), ("b0", "b")):
            order[tag] = [(tag, n, k) for _, n, k in order[src]]
            for _, n, k in order[src]:
                info[(tag, n, k)] = info[(src, n, k)]
            first_calls[tag] = dict(first_calls[src])
    native = stats_device.type == "cpu" and _accumulate.NATIVE_CPU and (precision == "float64" or _accumulate.NATIVE_CPU_F32)
    budget = int(max_memory) if max_memory is not None else default_max_memory(stats_device.type, stats_device.index)
    cap.first_calls = first_calls
    plan = make_plan(
        info=info,
        order={m: order[m] for m in ("a", "b")},
        first_calls=first_calls,
        pair_names=pairs,
        cross=cross,
        pool=pool,
        chunks=int(chunks) if bootstrap is not None else 0,
        baseline=baseline,
        max_memory=budget,
        native=native,
        display=cap.display,
        rows_error=lambda keys, counts: _rows_error(cap, keys, counts),
    )
    return plan.memory


__all__ = ["compare", "estimate_memory"]
