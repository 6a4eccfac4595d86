"""Step 2, capture: forward hooks turn module outputs into rows, pooled rows and top inputs,
and route them to the accumulators.

Rows: an output ``[B, C]`` gives one row per input; ``[B, C, H, W, ...]`` one row per (input,
position) with the channels as neurons (channels first unless ``layout="channels_last"``);
``[B, T, C]`` (``layout="tokens"``) one row per token, padding tokens left out using the
batch's ``attention_mask``. The pooled view (``pool="mean"``/``"max"``) is one row per input:
the mean or maximum over the positions or (unmasked) tokens.

The first batch of a pass is discovery: every hooked output is kept (a copy) until the batch is
over, when the layers, their widths and their rows are known; the plan (which statistics to
accumulate, within the memory budget) is then made and the kept outputs are fed to it. Later
batches stream: a unit (the statistics of one layer pair, or of a group of layers) is updated
as soon as all of its layers have run, and the rows are let go.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import torch
from torch import nn

from . import _top_inputs

Key = Tuple[str, str, int]  # (model "a"/"b"/"a0"/"b0", module name, call index within one forward pass)
VKey = Tuple[Key, str]  # (key, view): view "full" (every row) or "pool" (one row per input)

#: How error messages and the result name the four models.
MODEL_LABEL = {"a": "a", "b": "b", "a0": "baseline a", "b0": "baseline b"}
LAYOUTS = ("tokens", "channels_first", "channels_last")


# --------------------------------------------------------------------------------------------
# Batches and module outputs
# --------------------------------------------------------------------------------------------


def first_tensor(out: Any, depth: int = 0) -> Optional[torch.Tensor]:
    """The first tensor in a module output (tensors, tuples, lists, dicts, ModelOutput-style
    and dataclass objects), depth first."""
    if isinstance(out, torch.Tensor):
        return out
    if depth > 8:
        return None
    if isinstance(out, Mapping):
        values: Iterable[Any] = out.values()
    elif isinstance(out, (tuple, list)):
        values = out
    elif hasattr(out, "to_tuple"):
        values = out.to_tuple()
    elif dataclasses.is_dataclass(out) and not isinstance(out, type):
        values = (getattr(out, f.name) for f in dataclasses.fields(out))
    else:
        return None
    for v in values:
        t = first_tensor(v, depth + 1)
        if t is not None:
            return t
    return None


def move(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, Mapping):
        return {k: move(v, device) for k, v in obj.items()}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # namedtuple
        return type(obj)(*(move(v, device) for v in obj))
    if isinstance(obj, (tuple, list)):
        return type(obj)(move(v, device) for v in obj)
    return obj


def run_model(model: nn.Module, batch: Any, device: torch.device) -> None:
    """One forward pass of ``model`` on ``batch`` (tensor, (input, ...) tuple, or kwargs dict)."""
    if isinstance(batch, Mapping):
        model(**move(batch, device))
    elif isinstance(batch, (tuple, list)):
        if len(batch) == 0:
            raise ValueError("data: an empty tuple/list batch; the first element must be the input")
        model(move(batch[0], device))
    else:
        model(move(batch, device))


def batch_size(batch: Any) -> int:
    t = first_tensor(batch if not isinstance(batch, (tuple, list)) else batch[:1])
    return int(t.shape[0]) if t is not None and t.dim() > 0 else 0


def device_of(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def batch_mask(batch: Any) -> Optional[torch.Tensor]:
    """The batch's ``attention_mask`` ([B, T], bool), when it has one."""
    if isinstance(batch, Mapping) and batch.get("attention_mask") is not None:
        m = batch["attention_mask"]
        if isinstance(m, torch.Tensor) and m.dim() == 2:
            return m.bool()
    return None


# --------------------------------------------------------------------------------------------
# Rows of one output
# --------------------------------------------------------------------------------------------


@dataclass
class Rows:
    """One module output as rows.

    ``x``: a channels-last view ``[B, ..., C]`` of the output (no copy), or ``[R, C]`` rows
    gathered from the unmasked tokens (a copy: ``fresh``). ``t``: the output itself;
    ``channels_first``: whether ``t`` has its neurons on axis 1. ``mask``: the ``[B, T]`` mask
    that left the padding tokens out, or None.
    """

    x: torch.Tensor
    t: torch.Tensor
    channels_first: bool
    mask: Optional[torch.Tensor]
    inputs: int
    rows: int
    width: int
    tail: Optional[Tuple[int, ...]]
    fresh: bool
    batch: int = 0  # the batch it came from (within the pass)
    first_input: int = 0  # this rank's inputs before that batch
    module_type: str = ""

    @property
    def kind(self) -> str:
        """``"inputs"`` (one row per input), ``"tokens"`` (masked tokens) or ``"positions"``."""
        if self.mask is not None:
            return "tokens"
        return "inputs" if self.rows == self.inputs and self.t.dim() == 2 else "positions"

    @property
    def positions_shape(self) -> Optional[Tuple[int, ...]]:
        """Per-input shape of the positions (``(H, W)``), None for tokens and ``[B, C]``."""
        if self.t.dim() == 2 or self.mask is not None:
            return None
        if self.channels_first:
            return tuple(int(s) for s in self.t.shape[2:])
        shape = tuple(int(s) for s in self.t.shape[1:-1])
        return None if self.t.dim() == 3 else shape

    def clone(self) -> "Rows":
        """A copy that later in-place operations of the model cannot change (the first batch is
        kept until the plan is made; pooling reads ``t``)."""
        t = self.t.clone()
        if self.fresh:  # x was gathered from the unmasked tokens: already a copy
            return dataclasses.replace(self, t=t)
        if self.channels_first and t.dim() > 2:
            x = t.movedim(1, -1)
        else:
            x = t
        return dataclasses.replace(self, t=t, x=x, fresh=True)

    def pooled(self, how: str, dtype: torch.dtype) -> torch.Tensor:
        """One row per input, ``[B, C]``: the mean or maximum over positions (or unmasked
        tokens; an input without any token gives zeros)."""
        t = self.t
        if t.dim() == 2:
            return t
        if self.channels_first:
            y = t.flatten(2)
            return torch.mean(y, dim=2, dtype=dtype) if how == "mean" else y.amax(dim=2)
        y = t.flatten(1, -2)  # [B, P, C]
        if self.mask is None:
            return torch.mean(y, dim=1, dtype=dtype) if how == "mean" else y.amax(dim=1)
        m = self.mask.to(y.device)[:, :, None]
        count = m.sum(dim=1).clamp(min=1)
        if how == "mean":
            return torch.sum(y.masked_fill(~m, 0), dim=1, dtype=dtype) / count
        v = y.masked_fill(~m, float("-inf")).amax(dim=1)
        return v.masked_fill(~m.any(dim=1), 0)


def to_rows(t: torch.Tensor, layout: str, mask: Optional[torch.Tensor], where: str) -> Rows:
    """The rows of an output tensor (see the module docstring)."""
    nested = bool(getattr(t, "is_nested", False))
    if nested:
        t = torch.nested.to_padded_tensor(t, 0.0)
    if t.dim() < 2:
        raise ValueError(
            f"{where}: output of shape {tuple(t.shape)}; activations need a batch axis and a "
            "neuron axis ([B, C], [B, C, H, W], [B, T, C])"
        )
    if t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"{where}: output of type {t.dtype}; activations must be real numbers")
    inputs = int(t.shape[0])
    channels_first = t.dim() >= 3 and not (layout == "channels_last" or (t.dim() == 3 and layout == "tokens"))
    x = t.movedim(1, -1) if channels_first else t
    tail: Optional[Tuple[int, ...]] = tuple(int(s) for s in t.shape[1:])
    fresh = False
    used = None
    if x.dim() == 3 and not channels_first and mask is not None and mask.shape[0] == x.shape[0]:
        m = mask
        if m.shape[1] != x.shape[1] and nested and m.shape[1] > x.shape[1]:
            m = m[:, : x.shape[1]]
        if m.shape[1] == x.shape[1]:
            m = m.to(x.device)
            x = x[m]
            tail = None
            fresh = True
            used = m
    c = int(x.shape[-1])
    rows = x.numel() // c if c else 0
    if not t.is_floating_point():
        t = t.float()
        x = x.float()
    return Rows(x, t, channels_first, used, inputs, rows, c, tail, fresh)


def _locate(r: Rows) -> Optional[Tuple[int, Tuple[int, ...], int, float]]:
    """The first non-finite value of ``r``: (input in the batch, position, neuron, value)."""
    bad = ~torch.isfinite(r.x)
    if not bool(bad.any()):
        return None
    first = bad.nonzero()[0].tolist()
    value = float(r.x[tuple(first)].item())
    if r.mask is not None:  # x is [R, C]: map the row back to (input, token)
        where = r.mask.nonzero()[first[0]].tolist()
        return where[0], (where[1],), first[1], value
    return first[0], tuple(first[1:-1]), first[-1], value


class NonFinite(Exception):
    """Raised by an accumulator whose batch had a NaN or an infinity in slot ``slot``."""

    def __init__(self, slot: int) -> None:
        super().__init__(f"non-finite value in slot {slot}")
        self.slot = slot


# --------------------------------------------------------------------------------------------
# What the first batch showed
# --------------------------------------------------------------------------------------------


@dataclass
class LayerInfo:
    """One hooked layer (one call of a module) as the first batch showed it."""

    width: int
    rows: int  # rows in the first batch
    inputs: int  # inputs in the first batch
    kind: str  # "inputs", "positions" or "tokens" (see Rows.kind)
    tail: Optional[Tuple[int, ...]]  # per-input output shape; None once it varied
    positions_shape: Optional[Tuple[int, ...]]

    def row_class(self) -> Tuple[str, int]:
        """Layers of one class have the same rows (the first batch decides)."""
        return ("tokens" if self.kind == "tokens" else "rows", self.rows)

    def pool_class(self) -> Tuple[str, int]:
        return ("rows", self.inputs)


# --------------------------------------------------------------------------------------------
# The capture
# --------------------------------------------------------------------------------------------


class Slotting:
    """Where a view of a layer goes: ``(unit, slot)`` pairs, and the pending rows per unit."""

    def __init__(self) -> None:
        self.routes: Dict[Key, Dict[str, List[Tuple[Any, int]]]] = {}
        self.pending: Dict[int, Tuple[Any, List[Optional[Tuple[torch.Tensor, int, VKey, Any]]]]] = {}
        self.units: List[Any] = []

    def add(self, unit: Any, vkeys: Sequence[VKey]) -> None:
        self.units.append(unit)
        for slot, (key, view) in enumerate(vkeys):
            self.routes.setdefault(key, {}).setdefault(view, []).append((unit, slot))
        unit._vkeys = list(vkeys)

    def reset(self) -> None:
        self.pending = {}


class Capture:
    """Hook state of one comparison: the current batch, the layers the first batch showed, the
    top inputs, and the routes of the current pass's units."""

    def __init__(
        self,
        hooked: Dict[str, List[str]],
        layout: str,
        select: Optional[Callable[[Any], Any]],
        explicit: Dict[str, set],
        pool: Optional[str],
        top_k: Optional[int],
        rank: Optional[int],
    ) -> None:
        self.hooked = hooked
        self.layout = layout
        self.select = select
        self.explicit = explicit
        self.pool = pool
        self.top_k = top_k
        self.rank = rank
        self.active: Optional[str] = None
        self.pass_index = 0
        self.discovering = True
        self.mask: Optional[torch.Tensor] = None
        self.batch_index = 0  # within the pass
        self.inputs_before = 0  # inputs of this rank before the current batch
        self.batch_inputs = 0
        self.calls: Dict[str, Dict[str, int]] = {m: {} for m in hooked}
        self.first_calls: Optional[Dict[str, Dict[str, int]]] = None
        self.order: Dict[str, List[Key]] = {m: [] for m in hooked}
        self.info: Dict[Key, LayerInfo] = {}
        self.held: List[Tuple[Key, Rows]] = []
        self.top: Dict[Key, _top_inputs.TopK] = {}
        self.slots = Slotting()
        self.pool_dtype = torch.float64
        self.rows_seen = 0
        self._batch_rows = 0

    # -- names -------------------------------------------------------------------------------

    def display(self, key: Key) -> str:
        model, name, k = key
        calls = (self.first_calls or self.calls).get(model, {}).get(name, 1)
        return name if calls <= 1 else f"{name}#{k + 1}"

    def _shape_desc(self, key: Key) -> str:
        info = self.info.get(key)
        t = info.tail if info is not None else None
        return f"[B, {', '.join(map(str, t))}]" if t else "tokens"

    # -- hooks -------------------------------------------------------------------------------

    def hook(self, model: str, name: str) -> Callable[..., None]:
        def fn(module: nn.Module, inputs: Any, output: Any) -> None:
            if self.active == model:
                self.capture(model, name, module, output)
            return None

        return fn

    def capture(self, model: str, name: str, module: nn.Module, output: Any) -> None:
        k = self.calls[model].get(name, 0)
        self.calls[model][name] = k + 1
        key: Key = (model, name, k)
        if not self.discovering and key not in self.slots.routes and not self._wants_top(key):
            return
        where = f"module '{name}' ({type(module).__name__}) of model {MODEL_LABEL[model]}"
        if self.select is not None:
            t = self.select(output)
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"select= returned {type(t).__name__} for {where}; it must return a tensor")
        else:
            t = first_tensor(output)
            if t is None:
                raise TypeError(
                    f"{where} returned {type(output).__name__} with no tensor in it; pass select= "
                    "(a function from the module output to a tensor) or choose other layers"
                )
        r = to_rows(t, self.layout, self.mask, where)
        r.batch, r.first_input, r.module_type = self.batch_index, self.inputs_before, type(module).__name__
        self._batch_rows = max(self._batch_rows, r.rows)
        if self._wants_top(key):
            self._top_update(key, r)
        if self.discovering:
            if self.batch_index == 0:
                self.order[model].append(key)
                self.info[key] = LayerInfo(r.width, r.rows, r.inputs, r.kind, r.tail, r.positions_shape)
            else:  # pragma: no cover - discovery is the first batch only
                raise AssertionError("discovery after the first batch")
            self.held.append((key, r.clone()))
            return
        self._check_known(key, r)
        self.dispatch(key, r)

    def _wants_top(self, key: Key) -> bool:
        return self.top_k is not None and self.pass_index == 0 and key[0] in ("a", "b")

    def _top_update(self, key: Key, r: Rows) -> None:
        tr = self.top.get(key)
        if tr is None:
            has_pos = r.t.dim() > 2
            tr = _top_inputs.TopK(int(self.top_k or 0), r.width, r.t.device, has_pos)
            self.top[key] = tr
        v, valid, by_position = _top_inputs.responses(r.t, r.channels_first, r.mask)
        tr.update(v, valid, by_position, self.inputs_before)

    def _nonfinite(self, key: Key, r: Rows) -> Optional[str]:
        """The message naming the first NaN or infinity of ``r`` (None when there is none)."""
        found = _locate(r)
        if found is None:
            return None
        i, pos, c, v = found
        model, name, _ = key
        where = "token" if r.mask is not None or (r.t.dim() == 3 and not r.channels_first) else "position"
        at = f", {where} {pos[0] if len(pos) == 1 else list(pos)}" if pos else ""
        rank = f" on rank {self.rank}" if self.rank is not None else ""
        data = "this rank's data" if self.rank is not None else "the data"
        return (
            f"non-finite value {v} in the output of module '{self.display(key)}' "
            f"({r.module_type}) of model {MODEL_LABEL[model]}{rank}: batch {r.batch}, "
            f"input {r.first_input + i} of {data} (input {i} of the batch){at}, neuron {c}"
        )

    def _check_known(self, key: Key, r: Rows) -> None:
        model, name, k = key
        info = self.info.get(key)
        if info is None:
            want = self.first_calls[model].get(name, 0) if self.first_calls else 0
            raise ValueError(
                f"module '{name}' of model {MODEL_LABEL[model]} ran {k + 1} times in batch "
                f"{self.batch_index} but {want} times in the first batch; every batch must run the "
                "same layers"
            )
        if r.width != info.width:
            raise ValueError(
                f"module '{name}' of model {MODEL_LABEL[model]}: {r.width} neurons in batch "
                f"{self.batch_index}, {info.width} in the first batch"
            )
        if info.tail != r.tail:
            info.tail = None

    # -- routing -----------------------------------------------------------------------------

    def dispatch(self, key: Key, r: Rows) -> None:
        """Feeds the views of one output to the units that use them."""
        views = self.slots.routes.get(key)
        if not views:
            return
        for view, consumers in views.items():
            if view == "full":
                base, rows, fresh = r.x, r.rows, r.fresh
            else:
                base, rows, fresh = r.pooled(self.pool or "mean", self.pool_dtype), r.inputs, True
            prepared: Dict[str, torch.Tensor] = {}
            for unit, slot in consumers:
                fmt = unit.kind
                x = prepared.get(fmt)
                if x is None:
                    x = unit.prepare(base)
                    if fmt == "native" and x is base and not fresh:
                        x = x.clone()  # kept until the other layers of the unit have run
                    prepared[fmt] = x
                self._put(unit, slot, x, rows, (key, view), r)

    def _put(self, unit: Any, slot: int, x: torch.Tensor, rows: int, vkey: VKey, r: Rows) -> None:
        entry = self.slots.pending.get(id(unit))
        if entry is None:
            entry = (unit, [None] * len(unit._vkeys))
            self.slots.pending[id(unit)] = entry
        held = entry[1]
        held[slot] = (x, rows, vkey, r)
        if all(h is not None for h in held):
            self._check_rows([h[2][0] for h in held], [h[1] for h in held])  # type: ignore[index]
            try:
                unit.update([h[0] for h in held])  # type: ignore[index]
            except NonFinite as e:
                h = held[e.slot]
                key = h[2][0]  # type: ignore[index]
                raise ValueError(
                    self._nonfinite(key, h[3])  # type: ignore[index]
                    or f"the float32 column sums of '{self.display(key)}' of model {MODEL_LABEL[key[0]]} "
                    "overflowed (activations near the float32 limit); use precision='float64'"
                ) from None
            except ValueError as e:
                if "non-finite" not in str(e):
                    raise
                for h in held:  # the engine's accumulator saw it: which layer, where
                    msg = self._nonfinite(h[2][0], h[3])  # type: ignore[index]
                    if msg is not None:
                        raise ValueError(msg) from None
                raise
            del self.slots.pending[id(unit)]

    def _check_rows(self, keys: Sequence[Key], counts: Sequence[int]) -> None:
        if len(set(counts)) > 1:
            desc = ", ".join(
                f"'{self.display(k)}' of model {MODEL_LABEL[k[0]]}: {c} rows (output {self._shape_desc(k)})"
                for k, c in zip(keys, counts)
            )
            raise ValueError(
                f"layers whose rows differ cannot be compared ({desc}); rows are the inputs, "
                "times the positions of a convolutional layer, or the tokens of a token layer; "
                "pass pool='mean' or pool='max' to compare one row per input"
            )

    # -- batches -------------------------------------------------------------------------------

    def begin_batch(self, batch: Any) -> None:
        self.slots.reset()
        self._batch_rows = 0
        self.calls = {m: {} for m in self.hooked}
        self.mask = batch_mask(batch)
        self.batch_inputs = batch_size(batch)

    def end_batch(self) -> None:
        """Checks that every batch ran the layers of the first one."""
        if self.batch_index == 0 and self.pass_index == 0:
            self.first_calls = {m: dict(c) for m, c in self.calls.items()}
            for model, names in self.hooked.items():
                for name in names:
                    if self.calls[model].get(name, 0) == 0 and name in self.explicit.get(model, ()):
                        raise ValueError(
                            f"module '{name}' of model {MODEL_LABEL[model]} did not run during the forward pass"
                        )
        elif self.first_calls is not None:
            for model in self.hooked:
                if self.calls[model] != self.first_calls.get(model, {}):
                    now, first = self.calls[model], self.first_calls.get(model, {})
                    diff = sorted(n for n in set(now) | set(first) if now.get(n, 0) != first.get(n, 0))
                    n = diff[0]
                    raise ValueError(
                        f"module '{n}' of model {MODEL_LABEL[model]} ran {now.get(n, 0)} times in batch "
                        f"{self.batch_index} but {first.get(n, 0)} times in the first batch; every "
                        "batch must run the same layers"
                    )
        if not self.discovering:
            self.finish_units()
        self.rows_seen += self._batch_rows
        self.inputs_before += self.batch_inputs
        self.batch_index += 1

    def finish_units(self) -> None:
        """Every unit must have been updated once this batch."""
        for unit, held in self.slots.pending.values():
            missing = [i for i, h in enumerate(held) if h is None]
            have = [h[2][0] for h in held if h is not None]
            lost = unit._vkeys[missing[0]][0]
            got = have[0]
            raise ValueError(
                f"layer pair '{self.display(got)}' / '{self.display(lost)}': module "
                f"'{lost[1]}' of model {MODEL_LABEL[lost[0]]} ran {self.calls[lost[0]].get(lost[1], 0)} "
                f"time(s) in this batch but module '{got[1]}' of model {MODEL_LABEL[got[0]]} "
                f"{self.calls[got[0]].get(got[1], 0)} time(s)"
            )
        self.slots.reset()

    def replay(self) -> None:
        """Feeds the first batch's kept outputs to the units (after the plan)."""
        held, self.held = self.held, []
        for key, r in held:
            self.dispatch(key, r)
        self.finish_units()

    def start_pass(self, index: int) -> None:
        self.pass_index = index
        self.batch_index = 0
        self.inputs_before = 0
        self.rows_seen = 0
        self.discovering = False
