"""spanmatch for PyTorch: compare two models on a DataLoader, streamed, in one call.

Which layers, and which neurons, of two models learned the same thing? Forward hooks on the
chosen modules feed, batch by batch, the exact statistics of every layer pair (the float64
Gram matrix of the joint rows ``[A | B]``, column sums and row-norm moments) on the models'
device; nothing but one batch of activations and the statistics is ever held. The engine then
finds the maximum ε-approximate span matches (neuron indices at every ε) and linear CKA.

Example::

    import spanmatch.torch
    result = spanmatch.torch.compare(model_a, model_b, loader)   # every activation module
    result                                                       # the table
    result["features.3"].matches[0].a                            # A's matched neurons
    result = spanmatch.torch.compare(model_a, model_b, loader, cross=True)
    result.plot(kind="cross")                                    # layer x layer heatmaps

Rows: an output ``[B, C]`` gives one row per input; ``[B, C, H, W, ...]`` (convolutions) one row
per (input, position) with the channels as neurons; ``[B, T, C]`` (tokens, the transformers
convention) one row per token, padding tokens left out using the batch's ``attention_mask``.

Several processes (``torch.distributed`` initialised): every rank feeds its own shard; the
statistics are summed with ``all_reduce`` and every rank returns the same result, equal to one
process over all the data (up to summation order, about 1e-15 relative). Shards may be uneven,
even empty.

Needs ``pip install spanmatch[torch]`` (torch, tqdm).
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import math
import warnings
from collections.abc import Mapping
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from ._api import DEFAULT_EPS, Stats, analyse
from ._cross import CrossResult
from ._result import Result

__all__ = ["compare", "activation_modules", "resolve_layers", "CrossResult"]

LayerSpec = Union[None, str, type, Sequence[Union[str, type]], Mapping[str, str]]

#: Classes of ``torch.nn.modules.activation`` that are not neuron activations.
_NOT_ACTIVATIONS = frozenset({"MultiheadAttention", "Softmax", "Softmin", "LogSoftmax", "Softmax2d"})
_LAYOUTS = ("tokens", "channels_first", "channels_last")
#: Use the engine's accumulator for layer pairs on the CPU (tests switch it off to check both).
_NATIVE_CPU = True
#: Also in float32 (the engine's ``ssyrk`` per block of rows) rather than torch's matmul. Off:
#: on a 2-core machine torch's products win there, because the engine's OpenBLAS threads and
#: torch's OpenMP threads (still spinning after each layer) compete for the cores; see
#: docs/benchmarks.md. The benchmark's ``--engine32`` switches it on.
_NATIVE_CPU_F32 = False
_PRECISIONS = ("float64", "float32")


# --------------------------------------------------------------------------------------------
# Layer selection
# --------------------------------------------------------------------------------------------


def _is_activation(m: nn.Module) -> bool:
    for cls in type(m).__mro__:
        if cls is nn.Module or cls is object:
            break
        mod = cls.__module__ or ""
        if mod == "torch.nn.modules.activation" or mod.rsplit(".", 1)[-1] in ("activation", "activations"):
            return cls.__name__ not in _NOT_ACTIVATIONS
    return False


def activation_modules(model: nn.Module) -> List[str]:
    """Names (as in ``named_modules()``) of the model's activation modules: every class of
    ``torch.nn.modules.activation`` (ReLU, GELU, SiLU, Tanh, ...; not attention or softmax) and
    of any ``*.activations`` module (transformers, timm), subclasses included."""
    return [n for n, m in _unwrap(model).named_modules() if n and _is_activation(m)]


def _unwrap(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel / DataParallel wrappers."""
    wrappers = (nn.DataParallel, nn.parallel.DistributedDataParallel)
    while isinstance(model, wrappers):
        model = model.module
    return model


def _unknown(name: str, names: Sequence[str], side: str, what: str = "is not a module") -> ValueError:
    close = difflib.get_close_matches(name, names, n=6, cutoff=0.5)
    if not close:
        close = [n for n in names if n][:10]
        hint = f"its modules include: {', '.join(close)}" if close else "it has no submodules"
    else:
        hint = f"closest names: {', '.join(close)}"
    return ValueError(f"layers: '{name}' {what} of model {side}; {hint}")


def _select(model: nn.Module, spec: Sequence[Union[str, type]], side: str) -> Tuple[List[str], set]:
    """Module names of ``model`` selected by names, glob patterns and types (module order), and
    which of them were named explicitly."""
    named = [n for n, _ in model.named_modules()]
    modules = dict(model.named_modules())
    chosen: set = set()
    explicit: set = set()
    for item in spec:
        if isinstance(item, type):
            found = [n for n in named if n and isinstance(modules[n], item)]
            if not found:
                raise ValueError(f"layers: model {side} has no module of type {item.__name__}")
            chosen.update(found)
        elif isinstance(item, str):
            if item in modules:
                chosen.add(item)
                explicit.add(item)
            elif any(c in item for c in "*?["):
                found = [n for n in named if n and fnmatch.fnmatchcase(n, item)]
                if not found:
                    raise _unknown(item, named, side, what="matches no module")
                chosen.update(found)
            else:
                raise _unknown(item, named, side)
        else:
            raise TypeError(
                f"layers: expected module names, glob patterns, module types or a dict "
                f"{{name_in_a: name_in_b}}; got {type(item).__name__}"
            )
    return [n for n in named if n in chosen], explicit


def resolve_layers(
    model_a: nn.Module, model_b: nn.Module, layers: LayerSpec = None, cross: bool = False
) -> Tuple[List[Tuple[str, str]], List[str], List[str]]:
    """Which modules a comparison hooks: ``(pairs, layers_a, layers_b)``.

    ``pairs`` are the (module of A, module of B) pairs of the per-layer result; ``layers_a`` and
    ``layers_b`` every selected module of each model (the axes of a ``cross=True`` comparison).

    ``layers``: None (every activation module; pairs: those under the same name in both
    models), a module name, a glob pattern (``"features.*"``), a module type
    (``torch.nn.ReLU``), a list of these (applied to both models; pairs: the selected names
    present in both), or a dict ``{name_in_a: name_in_b}``. A name that is not a module is an
    error listing the closest names.
    """
    model_a, model_b = _unwrap(model_a), _unwrap(model_b)
    explicit_a: set = set()
    explicit_b: set = set()
    if isinstance(layers, Mapping):
        if not layers:
            raise ValueError("layers: the dict is empty")
        names_a = dict(model_a.named_modules())
        names_b = dict(model_b.named_modules())
        for a, b in layers.items():
            if not isinstance(a, str) or not isinstance(b, str):
                raise TypeError("layers: a dict must map module names of A to module names of B")
            if a not in names_a:
                raise _unknown(a, list(names_a), "a")
            if b not in names_b:
                raise _unknown(b, list(names_b), "b")
        pairs = list(layers.items())
        order_a = {n: i for i, n in enumerate(names_a)}
        order_b = {n: i for i, n in enumerate(names_b)}
        sel_a = sorted(set(layers.keys()), key=order_a.__getitem__)
        sel_b = sorted(set(layers.values()), key=order_b.__getitem__)
        return pairs, sel_a, sel_b
    if layers is None:
        sel_a = activation_modules(model_a)
        sel_b = activation_modules(model_b)
        if not sel_a or not sel_b:
            side = "a" if not sel_a else "b"
            raise ValueError(
                f"layers: model {side} has no activation module (ReLU, GELU, SiLU, ...; functional "
                "activations such as F.relu cannot be hooked); pass layers= (module names, glob "
                "patterns such as 'encoder.layer.*', module types) or a dict {name_in_a: name_in_b}"
            )
    else:
        spec = [layers] if isinstance(layers, (str, type)) else list(layers)
        if not spec:
            raise ValueError("layers: the list is empty")
        sel_a, explicit_a = _select(model_a, spec, "a")
        sel_b, explicit_b = _select(model_b, spec, "b")
    in_b = set(sel_b)
    in_a = set(sel_a)
    for n in explicit_a - in_b:
        raise _unknown(n, [m for m, _ in model_b.named_modules()], "b")
    for n in explicit_b - in_a:
        raise _unknown(n, [m for m, _ in model_a.named_modules()], "a")
    pairs = [(n, n) for n in sel_a if n in in_b]
    if not pairs and not cross:
        raise ValueError(
            f"layers: no selected module is present under the same name in both models (model a: "
            f"{', '.join(sel_a[:8])}{' ...' if len(sel_a) > 8 else ''}; model b: "
            f"{', '.join(sel_b[:8])}{' ...' if len(sel_b) > 8 else ''}); pass a dict "
            "{name_in_a: name_in_b}, or cross=True to compare every layer with every layer"
        )
    return pairs, sel_a, sel_b


# --------------------------------------------------------------------------------------------
# Batches and module outputs
# --------------------------------------------------------------------------------------------


def _first_tensor(out: Any, depth: int = 0) -> Optional[torch.Tensor]:
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
        t = _first_tensor(v, depth + 1)
        if t is not None:
            return t
    return None


def _move(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, Mapping):
        return {k: _move(v, device) for k, v in obj.items()}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # namedtuple
        return type(obj)(*(_move(v, device) for v in obj))
    if isinstance(obj, (tuple, list)):
        return type(obj)(_move(v, device) for v in obj)
    return obj


def _run(model: nn.Module, batch: Any, device: torch.device) -> None:
    if isinstance(batch, Mapping):
        model(**_move(batch, device))
    elif isinstance(batch, (tuple, list)):
        if len(batch) == 0:
            raise ValueError("data: an empty tuple/list batch; the first element must be the input")
        model(_move(batch[0], device))
    else:
        model(_move(batch, device))


def _batch_size(batch: Any) -> int:
    t = _first_tensor(batch if not isinstance(batch, (tuple, list)) else batch[:1])
    return int(t.shape[0]) if t is not None and t.dim() > 0 else 0


def _device_of(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


# --------------------------------------------------------------------------------------------
# Statistics of a group of layers that share their rows
# --------------------------------------------------------------------------------------------

Key = Tuple[str, str, int]  # (side "a"/"b", module name, call index within one forward pass)


def _chunks(widths: Sequence[int], target: int) -> List[Tuple[int, int]]:
    """Column chunks (start, end) of the joint matrix: every block split into pieces of about
    ``target`` columns, so that the Gram product skips the chunks below the diagonal."""
    out = []
    start = 0
    for w in widths:
        pieces = max(1, round(w / target))
        bounds = [start + (w * k) // pieces for k in range(pieces + 1)]
        out.extend(zip(bounds[:-1], bounds[1:]))
        start += w
    return out


class _Group:
    """Exact statistics of the joint rows ``M = [L_1 | L_2 | ...]`` of layers with the same rows.

    Holds ``G = MᵀM`` (upper chunk triangle; symmetrised at the end), the column sums, the
    row-norm moments ``W = NᵀM`` and ``NᵀN`` (``N``: per row, each layer's squared norm), the
    row count and, per layer, the inputs seen; all float64 on ``device``.
    """

    CHUNK = 256

    def __init__(self, keys: Sequence[Key], widths: Sequence[int], device: torch.device, precision: str):
        self.keys = list(keys)
        self.widths = [int(w) for w in widths]
        self.offsets = np.concatenate([[0], np.cumsum(self.widths)]).astype(int).tolist()
        self.device = device
        self.precision = precision
        n = self.offsets[-1]
        nl = len(self.keys)
        f64 = torch.float64
        self.gram = torch.zeros(n, n, dtype=f64, device=device)
        self.sums = torch.zeros(n, dtype=f64, device=device)
        self.w = torch.zeros(nl, n, dtype=f64, device=device)
        self.nn = torch.zeros(nl, nl, dtype=f64, device=device)
        self.counts = torch.zeros(1 + nl, dtype=f64, device=device)  # rows, then inputs per layer
        self.chunks = _chunks(self.widths, self.CHUNK)
        self._fin: Optional[Dict[str, Any]] = None

    @property
    def rows(self) -> int:
        return int(self.counts[0].item())

    def update(self, blocks: Sequence[torch.Tensor], inputs: Sequence[int]) -> None:
        """Adds one batch: ``blocks[k]`` the rows ``[R, widths[k]]`` of layer ``k``."""
        f64 = torch.float64
        r = blocks[0].shape[0]
        cols = [None] * len(self.chunks)
        # Chunk views of the joint matrix (no copy).
        for c, (s, e) in enumerate(self.chunks):
            k = int(np.searchsorted(self.offsets, s, side="right")) - 1
            base = self.offsets[k]
            cols[c] = blocks[k][:, s - base : e - base]
        with _highest_matmul(self.device, self.precision):
            for c, (s, e) in enumerate(self.chunks):
                xc = cols[c]
                for d in range(c, len(self.chunks)):
                    s2, e2 = self.chunks[d]
                    if self.precision == "float64":
                        self.gram[s:e, s2:e2].addmm_(xc.T, cols[d])
                    else:
                        self.gram[s:e, s2:e2] += (xc.T @ cols[d]).to(f64)
        # Reductions in the rows' own dtype (an upcasting reduction is several times slower);
        # in float32 mode the row norms and sums (moments for debiased CKA) are float32 too.
        norms = torch.stack([torch.linalg.vector_norm(x, dim=1).square() for x in blocks], dim=1)
        n32 = norms.T if norms.dtype != f64 else None
        norms = norms.to(f64)  # [R, L]
        for k, x in enumerate(blocks):
            s, e = self.offsets[k], self.offsets[k + 1]
            self.sums[s:e] += x.sum(0).to(f64)
            if n32 is None:
                self.w[:, s:e].addmm_(norms.T, x)
            else:  # float32 products: the moments (debiased CKA only) in float32 too
                self.w[:, s:e] += (n32 @ x).to(f64)
        self.nn.addmm_(norms.T, norms)
        self.counts[0] += r
        self.counts[1:] += torch.tensor([float(i) for i in inputs], dtype=f64, device=self.device)

    def flat(self) -> torch.Tensor:
        return torch.cat([self.gram.reshape(-1), self.sums, self.w.reshape(-1), self.nn.reshape(-1), self.counts])

    def load_flat(self, flat: torch.Tensor) -> None:
        parts = [self.gram, self.sums, self.w, self.nn, self.counts]
        pos = 0
        for p in parts:
            k = p.numel()
            p.copy_(flat[pos : pos + k].view(p.shape))
            pos += k
        self._fin = None

    def size(self) -> int:
        n, nl = self.offsets[-1], len(self.keys)
        return n * n + n + nl * n + nl * nl + 1 + nl

    def finish(self) -> Dict[str, Any]:
        """The statistics as numpy arrays (Gram matrix symmetrised)."""
        if getattr(self, "_fin", None) is not None:
            return self._fin
        g = torch.triu(self.gram)
        g = g + torch.triu(self.gram, 1).T
        fin = {
            "gram": g.cpu().numpy(),
            "sums": self.sums.cpu().numpy(),
            "w": self.w.cpu().numpy(),
            "nn": self.nn.cpu().numpy(),
            "rows": int(round(float(self.counts[0].item()))),
            "inputs": [int(round(v)) for v in self.counts[1:].cpu().tolist()],
        }
        self._fin = fin
        return fin

    def pair_stats(self, ka: Key, kb: Key) -> Stats:
        return _pair_stats(self.finish(), self, ka, kb)

    def inputs_of(self, key: Key) -> int:
        return self.finish()["inputs"][self.keys.index(key)]

    def total_rows(self) -> int:
        return self.finish()["rows"]


class _NativePair:
    """Statistics of one layer pair in the engine's own accumulator (CPU): OpenBLAS ``dsyrk``
    (float64) or ``ssyrk`` (float32 products summed in float64), half the products of
    ``MᵀM``, arrays read in place in any strides; rows wait for a whole block (so that the
    one-row-per-input layers of a batch still make efficient products). Same interface as
    :class:`_Group` for two layers."""

    def __init__(self, keys: Sequence[Key], widths: Sequence[int], device: torch.device, precision: str):
        from ._api import Accumulator

        self.keys = list(keys)
        self.widths = [int(w) for w in widths]
        self.acc = Accumulator("nhwc", precision=precision)
        self.inputs = [0, 0]
        self._flat: Optional[np.ndarray] = None

    def update(self, blocks: Sequence[torch.Tensor], inputs: Sequence[int]) -> None:
        self.acc.update(blocks[0], blocks[1])
        self.inputs[0] += int(inputs[0])
        self.inputs[1] += int(inputs[1])

    def _engine_len(self) -> int:
        from ._api import flat_length

        return flat_length(self.widths[0], self.widths[1])

    def size(self) -> int:
        return self._engine_len() + 2

    def flat(self) -> torch.Tensor:
        if self.acc.n1 is None:  # no batch on this rank
            v = np.zeros(self._engine_len())
            v[0], v[1] = self.widths
        else:
            v = self.acc.to_flat()
            assert len(v) == self._engine_len()
        return torch.from_numpy(np.concatenate([v, np.asarray(self.inputs, dtype=np.float64)]))

    def load_flat(self, flat: torch.Tensor) -> None:
        v = flat.cpu().numpy().astype(np.float64, copy=True)
        v[0], v[1] = self.widths  # the header's widths were summed over ranks
        self._flat = v

    def pair_stats(self, ka: Key, kb: Key) -> Stats:
        if self._flat is not None:
            return Stats.from_flat(self._flat[:-2])
        return self.acc.finish()

    def inputs_of(self, key: Key) -> int:
        i = self.keys.index(key)
        if self._flat is not None:
            return int(round(self._flat[-2 + i]))
        return self.inputs[i]

    def total_rows(self) -> int:
        if self._flat is not None:
            return int(round(self._flat[2]))
        return self.acc.rows


def _pair_stats(fin: Dict[str, Any], group: _Group, ka: Key, kb: Key) -> Stats:
    i, j = group.keys.index(ka), group.keys.index(kb)
    o = group.offsets
    idx = np.r_[o[i] : o[i + 1], o[j] : o[j + 1]]
    g = fin["gram"][np.ix_(idx, idx)]
    return Stats.from_parts(
        group.widths[i],
        group.widths[j],
        fin["rows"],
        g,
        fin["sums"][idx],
        fin["w"][i, idx],
        fin["w"][j, idx],
        fin["nn"][i, i],
        fin["nn"][i, j],
        fin["nn"][j, j],
    )


@contextmanager
def _highest_matmul(device: torch.device, precision: str) -> Iterator[None]:
    """float32 products in full float32 (no TF32) on CUDA."""
    if device.type == "cuda" and precision == "float32":
        old = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("highest")
        try:
            yield
        finally:
            torch.set_float32_matmul_precision(old)
    else:
        yield


# --------------------------------------------------------------------------------------------
# The pass
# --------------------------------------------------------------------------------------------


class _Capture:
    """Hook state of one comparison: what each hook saw in the current batch, the layers
    discovered in the first batch, and the statistics."""

    def __init__(
        self,
        pairs: List[Tuple[str, str]],
        sel_a: List[str],
        sel_b: List[str],
        cross: bool,
        layout: str,
        select: Optional[Callable[[Any], Any]],
        device: torch.device,
        precision: str,
        explicit: Dict[str, set],
    ) -> None:
        self.pairs = pairs
        self.explicit = explicit
        self.cross = cross
        self.layout = layout
        self.select = select
        self.device = device
        self.precision = precision
        self.dtype = torch.float64 if precision == "float64" else torch.float32
        # On the CPU in float64, layer pairs go to the engine's accumulator (dsyrk); layer x
        # layer groups, float32 products and other devices use torch products on the device.
        self.native = (
            device.type == "cpu"
            and not cross
            and _NATIVE_CPU
            and (precision == "float64" or _NATIVE_CPU_F32)
        )
        self.active: Optional[str] = None
        self.mask: Optional[torch.Tensor] = None
        self.batch_index = 0
        # per batch
        self.store: Dict[Key, torch.Tensor] = {}
        self._inputs: Dict[Key, int] = {}
        self.batch_rows = 0
        self.calls: Dict[str, Dict[str, int]] = {"a": {}, "b": {}}
        # discovered in the first batch
        self.first_calls: Optional[Dict[str, Dict[str, int]]] = None
        self.order: Dict[str, List[Key]] = {"a": [], "b": []}
        self.width: Dict[Key, int] = {}
        self.tail: Dict[Key, Optional[Tuple[int, ...]]] = {}
        self.rows_first: Dict[Key, int] = {}
        self.groups: List[_Group] = []
        self.pair_group: Dict[Tuple[Key, Key], _Group] = {}
        self.pairs_of_b: Dict[str, List[str]] = {}
        for a, b in pairs:
            self.pairs_of_b.setdefault(b, []).append(a)
        self.hooked = {
            "a": list(dict.fromkeys(sel_a if cross else [a for a, _ in pairs])),
            "b": list(dict.fromkeys(sel_b if cross else [b for _, b in pairs])),
        }
        self.inputs_seen = 0
        self.rows_seen = 0

    # -- hooks -------------------------------------------------------------------------------

    def hook(self, side: str, name: str) -> Callable[..., None]:
        def fn(module: nn.Module, inputs: Any, output: Any) -> None:
            if self.active == side:
                self.capture(side, name, module, output)
            return None

        return fn

    def _rows(
        self, side: str, name: str, module: nn.Module, output: Any
    ) -> Tuple[torch.Tensor, int, int, int, Optional[Tuple[int, ...]]]:
        """The output as rows: (tensor, rows, neurons, inputs, per-input shape or None)."""
        where = f"module '{name}' ({type(module).__name__}) of model {side}"
        if self.select is not None:
            t = self.select(output)
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"select= returned {type(t).__name__} for {where}; it must return a tensor")
        else:
            t = _first_tensor(output)
            if t is None:
                raise TypeError(
                    f"{where} returned {type(output).__name__} with no tensor in it; pass select= "
                    "(a function from the module output to a tensor) or choose other layers"
                )
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
        if t.dim() == 2:
            x = t
        elif self.layout == "channels_last" or (t.dim() == 3 and self.layout == "tokens"):
            x = t
        else:
            x = t.movedim(1, -1)  # a channels-last view, no copy
        tail: Optional[Tuple[int, ...]] = tuple(int(s) for s in t.shape[1:])
        fresh = False
        if x.dim() == 3 and self.mask is not None and self.mask.shape[0] == x.shape[0]:
            m = self.mask
            if m.shape[1] != x.shape[1] and nested and m.shape[1] > x.shape[1]:
                m = m[:, : x.shape[1]]
            if m.shape[1] == x.shape[1]:
                x = x[m.to(x.device)]
                tail = None
                fresh = True
        c = int(x.shape[-1])
        rows = x.numel() // c if c else 0
        if self.native:
            # The engine reads [B, ..., C] views in place. Model A's outputs are kept until model
            # B has run: copied (in their own dtype), in case the model changes them in place.
            if not x.is_floating_point():
                x = x.float()
            elif x.device.type != "cpu":
                x = x.cpu()
            elif side == "a" and not fresh:
                x = x.clone()
            return x, rows, c, inputs, tail
        out = torch.empty(x.shape, dtype=self.dtype, device=self.device)
        out.copy_(x)
        return out.reshape(-1, c), rows, c, inputs, tail

    def capture(self, side: str, name: str, module: nn.Module, output: Any) -> None:
        k = self.calls[side].get(name, 0)
        self.calls[side][name] = k + 1
        key: Key = (side, name, k)
        x, rows, width, inputs, tail = self._rows(side, name, module, output)
        self.batch_rows = max(self.batch_rows, rows)
        if self.batch_index == 0:
            self.order[side].append(key)
            self.width[key] = width
            self.tail[key] = tail
            self.rows_first[key] = rows
        else:
            if key not in self.width:
                want = self.first_calls[side].get(name, 0) if self.first_calls else 0
                raise ValueError(
                    f"module '{name}' of model {side} ran {k + 1} times in batch {self.batch_index} "
                    f"but {want} times in the first batch; every batch must run the same layers"
                )
            if width != self.width[key]:
                raise ValueError(
                    f"module '{name}' of model {side}: {width} neurons in batch "
                    f"{self.batch_index}, {self.width[key]} in the first batch"
                )
            if self.tail[key] != tail:
                self.tail[key] = None
        if side == "b" and not self.cross:
            for a in self.pairs_of_b.get(name, []):
                ka: Key = ("a", a, k)
                held = self.store.get(ka)
                if held is None:
                    ran = self.calls["a"].get(a, 0)
                    raise ValueError(
                        f"layer pair '{a}' / '{name}': module '{name}' of model b ran {k + 1} "
                        f"time(s) in this batch but module '{a}' of model a {ran} time(s)"
                    )
                xa, rows_a = held
                self._check_rows([ka, key], [rows_a, rows])
                g = self.pair_group.get((ka, key))
                if g is None:
                    kind = _NativePair if self.native else _Group
                    g = kind([ka, key], [self.width[ka], width], self.device, self.precision)
                    self.pair_group[(ka, key)] = g
                    self.groups.append(g)
                g.update([xa, x], [self._inputs[ka], inputs])
            for a in self.pairs_of_b.get(name, []):
                self.store.pop(("a", a, k), None)
                self._inputs.pop(("a", a, k), None)
            return
        self.store[key] = (x, rows)
        self._inputs[key] = inputs

    def _check_rows(self, keys: Sequence[Key], counts: Sequence[int]) -> None:
        if len(set(counts)) > 1:
            desc = ", ".join(
                f"'{self.display(k)}' of model {k[0]}: {c} rows (output {self._shape_desc(k)})"
                for k, c in zip(keys, counts)
            )
            raise ValueError(
                f"layers whose rows differ cannot be compared ({desc}); rows are the inputs, "
                "times the positions of a convolutional layer, or the tokens of a token layer"
            )

    def _shape_desc(self, key: Key) -> str:
        t = self.tail.get(key)
        return f"[B, {', '.join(map(str, t))}]" if t else "tokens"

    # -- batches -------------------------------------------------------------------------------

    def begin_batch(self, batch: Any) -> None:
        self.store = {}
        self._inputs = {}
        self.batch_rows = 0
        self.calls = {"a": {}, "b": {}}
        mask = None
        if isinstance(batch, Mapping) and batch.get("attention_mask") is not None:
            m = batch["attention_mask"]
            if isinstance(m, torch.Tensor) and m.dim() == 2:
                mask = m.to(self.device).bool()
        self.mask = mask

    def end_batch(self) -> None:
        if self.batch_index == 0:
            self.first_calls = {s: dict(c) for s, c in self.calls.items()}
            for side in ("a", "b"):
                for name in self.hooked[side]:
                    if self.calls[side].get(name, 0) == 0 and name in self.explicit[side]:
                        raise ValueError(
                            f"module '{name}' of model {side} did not run during the forward pass"
                        )
            if self.cross:
                self._build_groups()
        else:
            for side in ("a", "b"):
                if self.calls[side] != self.first_calls[side]:
                    diff = [
                        n
                        for n in set(self.calls[side]) | set(self.first_calls[side])
                        if self.calls[side].get(n, 0) != self.first_calls[side].get(n, 0)
                    ]
                    n = sorted(diff)[0]
                    raise ValueError(
                        f"module '{n}' of model {side} ran {self.calls[side].get(n, 0)} times in batch "
                        f"{self.batch_index} but {self.first_calls[side].get(n, 0)} times in the first "
                        "batch; every batch must run the same layers"
                    )
        if self.cross:
            for g in self.groups:
                held = [self.store[k] for k in g.keys]
                self._check_rows(g.keys, [r for _, r in held])
                g.update([x for x, _ in held], [self._inputs[k] for k in g.keys])
        else:
            left = [k for k in self.store if k[0] == "a"]
            if left:
                _, a, k = left[0]
                b = next(b for aa, b in self.pairs if aa == a)
                raise ValueError(
                    f"layer pair '{a}' / '{b}': module '{a}' of model a ran {self.calls['a'].get(a, 0)} "
                    f"time(s) in this batch but module '{b}' of model b {self.calls['b'].get(b, 0)} time(s)"
                )
        self.rows_seen += self.batch_rows
        self.store = {}
        self._inputs = {}
        self.batch_index += 1

    def _build_groups(self) -> None:
        """Cross mode: one group per row count of the first batch, holding every layer of A and
        B with that count (A's layers first, in order)."""
        by_rows: Dict[int, List[Key]] = {}
        for k in self.order["a"] + self.order["b"]:
            by_rows.setdefault(self.rows_first[k], []).append(k)
        self.groups = [
            _Group(keys, [self.width[k] for k in keys], self.device, self.precision)
            for keys in by_rows.values()
        ]

    # -- names ---------------------------------------------------------------------------------

    def display(self, key: Key) -> str:
        side, name, k = key
        calls = (self.first_calls or self.calls)[side].get(name, 1)
        return name if calls <= 1 else f"{name}#{k + 1}"

    # -- structure shared by every rank ------------------------------------------------------

    def meta(self) -> Optional[Dict[str, Any]]:
        """What the statistics look like (None when this process saw no batch)."""
        if self.batch_index == 0:
            return None
        return {
            "first_calls": self.first_calls,
            "order": self.order,
            "groups": [(g.keys, g.widths, type(g).__name__) for g in self.groups],
            "pair_groups": [
                (ka, kb, self.groups.index(g)) for (ka, kb), g in self.pair_group.items()
            ],
            "tail": self.tail,
        }

    def adopt(self, meta: Dict[str, Any]) -> None:
        """Takes the structure found by another rank (this one saw no batch)."""
        self.first_calls = meta["first_calls"]
        self.order = meta["order"]
        self.tail = meta["tail"]
        kinds = {"_Group": _Group, "_NativePair": _NativePair}
        self.groups = [kinds[kind](keys, widths, self.device, self.precision) for keys, widths, kind in meta["groups"]]
        self.pair_group = {(ka, kb): self.groups[i] for ka, kb, i in meta["pair_groups"]}
        self.width = {}
        for g in self.groups:
            for k, w in zip(g.keys, g.widths):
                self.width[k] = w


def _same_meta(x: Dict[str, Any], y: Dict[str, Any]) -> bool:
    return x["order"] == y["order"] and x["groups"] == y["groups"] and x["pair_groups"] == y["pair_groups"]


def _distributed() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def _reduce(cap: _Capture) -> None:
    """Sums the statistics of every rank (all_reduce), agreeing first on the layers."""
    import torch.distributed as dist

    mine = cap.meta()
    metas: List[Optional[Dict[str, Any]]] = [None] * dist.get_world_size()
    dist.all_gather_object(metas, mine)
    found = [m for m in metas if m is not None]
    if not found:
        raise ValueError("data: no batch on any rank; the data must yield at least one batch")
    ref = found[0]
    for r, m in enumerate(metas):
        if m is not None and not _same_meta(m, ref):
            raise ValueError(
                f"rank {r} ran other layers (or layer widths) than rank {metas.index(ref)}; every "
                "rank must run the same models on batches of the same kind"
            )
    if mine is None:
        cap.adopt(ref)
    else:
        # Tails (per-input shapes) may vary between ranks (token lengths): keep what all share.
        for m in found:
            for k, t in m["tail"].items():
                if cap.tail.get(k) != t:
                    cap.tail[k] = None
    if not cap.groups:
        return
    flat = torch.cat([g.flat() for g in cap.groups])
    backend = dist.get_backend()
    if backend == "nccl" and flat.device.type != "cuda":
        flat = flat.cuda()
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat = flat.to(cap.device)
    pos = 0
    for g in cap.groups:
        n = g.size()
        g.load_flat(flat[pos : pos + n])
        pos += n


# --------------------------------------------------------------------------------------------
# compare
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


def compare(
    model_a: nn.Module,
    model_b: nn.Module,
    data: Iterable[Any],
    layers: LayerSpec = None,
    eps: Sequence[float] = DEFAULT_EPS,
    measures: Sequence[str] = ("cka",),
    cross: bool = False,
    device: Union[None, str, torch.device] = None,
    progress: bool = True,
    select: Optional[Callable[[Any], torch.Tensor]] = None,
    layout: str = "tokens",
    dead: str = "drop",
    tol: Optional[float] = None,
    precision: str = "float64",
    labels: Optional[Tuple[str, str]] = None,
    distributed: Optional[bool] = None,
) -> Result:
    """Which layers, and which neurons, of two models learned the same thing? One streamed pass.

    Runs both models on every batch of ``data`` (in ``eval()`` mode under
    ``torch.inference_mode()``; their modes are restored afterwards), hooks the chosen modules
    and accumulates, per layer pair, the exact float64 statistics of the joint activations on
    the models' device. Then finds the maximum span matches at every ε and the measures.

    Args:
        model_a, model_b: the two models (any ``nn.Module``; DDP/DataParallel wrappers are
            looked through). They may be the same object.
        data: a DataLoader or any iterable of batches: a tensor (``model(batch)``), a tuple or
            list whose first element is the input (``model(batch[0])``; labels are ignored), or
            a dict (``model(**batch)``; its ``attention_mask`` leaves padding tokens out). Both
            models see the same batch. Under ``torch.distributed``, this rank's shard.
        layers: None (every activation module, ReLU, GELU, SiLU, ..., present under the same
            name in both models), module names as in ``named_modules()``, glob patterns
            (``"features.*"``), module types (``torch.nn.ReLU``), a list of these, or a dict
            ``{name_in_a: name_in_b}`` for two different architectures. A module called several
            times per forward pass (ResNet's ``relu``) gives one layer per call, named
            ``name#1``, ``name#2``, ....
        eps: the ε values, each in [0, 1].
        measures: basis-invariant measures from the same statistics (``cka``, ``cca``,
            ``svcca``, ``pwcca``, ``procrustes``).
        cross: also compare every selected layer of A with every selected layer of B that has
            the same rows (``result.cross``, a :class:`CrossResult`: mms at each ε, linear CKA),
            in the same pass.
        device: where the statistics are accumulated (default: model A's device).
        progress: a tqdm progress bar over the batches (rank 0 only).
        select: a function from a module's output to the tensor to compare (default: the
            output if it is a tensor, else its first tensor: tuples, dicts, ``ModelOutput``).
        layout: how rank-3 outputs are read: ``"tokens"`` (``[B, T, C]``, every token a row),
            ``"channels_first"`` (``[B, C, L]``, Conv1d), or ``"channels_last"`` (every output of
            rank ≥ 3 as ``[B, ..., C]``). Rank ≥ 4 outputs are channels first otherwise.
        dead: ``"drop"`` (dead neurons stay out of matches, counted in mms) or ``"match"``.
        tol: sine tolerance (default 1e-6).
        precision: ``"float64"`` (default: products and sums in float64, exact to rounding) or
            ``"float32"`` (per-batch Gram products in float32 with torch, summed across
            batches in float64: for GPUs without fast float64, and 10-30% faster in total on
            a 2-core CPU; thresholds moved by up to 1.5e-4 in our measurements, see
            docs/benchmarks.md). On the CPU in float64 the layer pairs go to the engine's own
            accumulator (OpenBLAS ``dsyrk``, arrays read in place, small batches gathered into
            blocks of at least 512 rows).
        labels: names of the two models for tables and figures (default: their class names).
        distributed: sum the statistics over ``torch.distributed`` ranks (default: when it is
            initialised).

    Returns:
        A :class:`spanmatch.Result`, one layer per pair (named after model A's module, with
        ``name_b`` for a dict), with ``result.cross`` set when ``cross=True``.

    Raises:
        ValueError: unknown layer names (the message lists the closest), layers whose rows
            differ, empty data, bad arguments.
        TypeError: a module output without any tensor, a bad batch.
    """
    if layout not in _LAYOUTS:
        raise ValueError(f"layout: '{layout}' is not a layout; use one of {', '.join(_LAYOUTS)}")
    if precision not in _PRECISIONS:
        raise ValueError(f"precision: '{precision}'; use 'float64' or 'float32'")
    if isinstance(data, torch.Tensor):
        raise TypeError(
            "data: a single tensor; pass an iterable of batches (a DataLoader, or a list of tensors)"
        )
    eps_t = (float(eps),) if isinstance(eps, (int, float)) else tuple(float(e) for e in eps)
    if not eps_t or any(not (0.0 <= e <= 1.0) or math.isnan(e) for e in eps_t):
        raise ValueError(f"eps: {list(eps_t)}; every ε must be in [0, 1]")
    label_a, label_b = _labels(model_a, model_b, labels)
    model_a, model_b = _unwrap(model_a), _unwrap(model_b)
    pairs, sel_a, sel_b = resolve_layers(model_a, model_b, layers, cross)
    dev_a, dev_b = _device_of(model_a), _device_of(model_b)
    stats_device = torch.device(device) if device is not None else dev_a
    use_dist = _distributed() if distributed is None else bool(distributed)
    rank = 0
    if use_dist:
        import torch.distributed as dist

        rank = dist.get_rank()

    explicit: Dict[str, set] = {"a": set(), "b": set()}
    if isinstance(layers, Mapping):
        explicit = {"a": set(layers.keys()), "b": set(layers.values())}
    elif isinstance(layers, str) and not any(c in layers for c in "*?["):
        explicit = {"a": {layers}, "b": {layers}}
    elif isinstance(layers, (list, tuple)):
        names = {n for n in layers if isinstance(n, str) and not any(c in n for c in "*?[")}
        explicit = {"a": names, "b": names}
    cap = _Capture(pairs, sel_a, sel_b, cross, layout, select, stats_device, precision, explicit)

    handles: List[Any] = []
    modes = [(m, m.training) for m in list(model_a.modules()) + list(model_b.modules())]
    bar = None
    try:
        mods_a = dict(model_a.named_modules())
        mods_b = dict(model_b.named_modules())
        for name in cap.hooked["a"]:
            handles.append(mods_a[name].register_forward_hook(cap.hook("a", name)))
        for name in cap.hooked["b"]:
            handles.append(mods_b[name].register_forward_hook(cap.hook("b", name)))
        model_a.eval()
        model_b.eval()
        if progress and rank == 0:
            from tqdm.auto import tqdm

            total = len(data) if hasattr(data, "__len__") else None  # type: ignore[arg-type]
            bar = tqdm(total=total, desc="spanmatch", unit="batch", dynamic_ncols=True)
        with torch.inference_mode():
            for batch in data:
                cap.begin_batch(batch)
                cap.active = "a"
                _run(model_a, batch, dev_a)
                cap.active = "b"
                _run(model_b, batch, dev_b)
                cap.active = None
                cap.end_batch()
                cap.inputs_seen += _batch_size(batch)
                if bar is not None:
                    bar.update(1)
                    n_layers = len(cap.pair_group) if not cross else sum(len(g.keys) for g in cap.groups)
                    bar.set_postfix(layers=n_layers, inputs=cap.inputs_seen, rows=cap.rows_seen, refresh=False)
            if use_dist:
                _reduce(cap)
    finally:
        cap.active = None
        cap.store = {}
        for h in handles:
            h.remove()
        for m, training in modes:
            m.training = training
        if bar is not None:
            bar.close()
    if cap.batch_index == 0 and not use_dist:
        raise ValueError("data: no batches; the data must yield at least one batch")
    return _analyse(cap, eps_t, measures, dead, tol, label_a, label_b)


def _analyse(
    cap: _Capture,
    eps: Tuple[float, ...],
    measures: Sequence[str],
    dead: str,
    tol: Optional[float],
    label_a: str,
    label_b: str,
) -> Result:
    group_of: Dict[Key, _Group] = {}
    for g in cap.groups:
        for k in g.keys:
            group_of[k] = g

    # The per-layer pairs, in model A's order, then B's.
    pos_a = {k: i for i, k in enumerate(cap.order["a"])}
    pos_b = {k: i for i, k in enumerate(cap.order["b"])}
    pair_keys: List[Tuple[Key, Key]] = []
    if cap.cross:
        for a, b in cap.pairs:
            ca = cap.first_calls["a"].get(a, 0)
            cb = cap.first_calls["b"].get(b, 0)
            if ca != cb:
                raise ValueError(
                    f"layer pair '{a}' / '{b}': module '{a}' of model a ran {ca} time(s) per batch "
                    f"but module '{b}' of model b {cb} time(s)"
                )
            for k in range(ca):
                ka, kb = ("a", a, k), ("b", b, k)
                if group_of[ka] is not group_of[kb]:
                    raise ValueError(
                        f"layers whose rows differ cannot be compared: '{cap.display(ka)}' of model "
                        f"a ({cap.rows_first.get(ka, '?')} rows in the first batch) and "
                        f"'{cap.display(kb)}' of model b ({cap.rows_first.get(kb, '?')} rows)"
                    )
                pair_keys.append((ka, kb))
    else:
        pair_keys = list(cap.pair_group)
    pair_keys.sort(key=lambda p: (pos_a.get(p[0], 0), pos_b.get(p[1], 0)))

    def group_for(ka: Key, kb: Key) -> _Group:
        return cap.pair_group[(ka, kb)] if not cap.cross else group_of[ka]

    def shape(k: Key, g: Any) -> List[int]:
        t = cap.tail.get(k)
        if t is not None:
            return [g.inputs_of(k), *t]
        return [g.total_rows(), g.widths[g.keys.index(k)]]

    stats: Dict[str, Stats] = {}
    names_b: Dict[str, str] = {}
    shapes: Dict[str, Tuple[List[int], List[int]]] = {}
    for ka, kb in pair_keys:
        g = group_for(ka, kb)
        name = cap.display(ka)
        nb = cap.display(kb)
        if name in stats:  # the same module of A paired twice: name the pair
            name = f"{name}/{nb}"
        stats[name] = g.pair_stats(ka, kb)
        if nb != name:
            names_b[name] = nb
        shapes[name] = (shape(ka, g), shape(kb, g))
    result = analyse(
        stats,
        eps=eps,
        measures=measures,
        dead=dead,
        tol=tol,
        names_b=names_b,
        shapes=shapes,
        label_a=label_a,
        label_b=label_b,
        front="torch",
    )

    if cap.cross:
        result.cross = _cross(cap, group_of, eps, dead, tol, label_a, label_b)
    return result


def _cross(
    cap: _Capture,
    group_of: Dict[Key, _Group],
    eps: Tuple[float, ...],
    dead: str,
    tol: Optional[float],
    label_a: str,
    label_b: str,
) -> CrossResult:
    keys_a, keys_b = cap.order["a"], cap.order["b"]
    na, nb, ne = len(keys_a), len(keys_b), len(eps)
    mms = np.full((ne, na, nb), np.nan)
    cka = np.full((na, nb), np.nan)
    cka_d = np.full((na, nb), np.nan)
    max_eps = np.full((na, nb), np.nan)
    rows = np.zeros((na, nb), dtype=np.int64)
    stats: Dict[str, Stats] = {}
    where: Dict[str, Tuple[int, int]] = {}
    for i, ka in enumerate(keys_a):
        for j, kb in enumerate(keys_b):
            g = group_of[ka]
            if group_of[kb] is not g:
                continue
            key = f"{i},{j}"
            stats[key] = g.pair_stats(ka, kb)
            where[key] = (i, j)
            rows[i, j] = g.total_rows()
    if stats:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = analyse(stats, eps=eps, measures=("cka",), dead=dead, tol=tol, center=False)
        for layer in res.layers:
            i, j = where[layer.name]
            mms[:, i, j] = layer.mms
            max_eps[i, j] = layer.max_epsilon
            v = layer.measures.get("cka_linear")
            cka[i, j] = np.nan if v is None else float(v)
            v = layer.measures.get("cka_linear_debiased")
            cka_d[i, j] = np.nan if v is None else float(v)
    return CrossResult(
        layers_a=[cap.display(k) for k in keys_a],
        layers_b=[cap.display(k) for k in keys_b],
        eps=tuple(eps),
        mms=mms,
        cka=cka,
        cka_debiased=cka_d,
        max_epsilon=max_eps,
        rows=rows,
        label_a=label_a,
        label_b=label_b,
    )
