"""Step 1, layer selection: which modules of the two models are hooked, and how they pair up."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Mapping
from typing import List, Sequence, Tuple, Union

from torch import nn

LayerSpec = Union[None, str, type, Sequence[Union[str, type]], Mapping[str, str]]

#: Classes of ``torch.nn.modules.activation`` that are not neuron activations.
_NOT_ACTIVATIONS = frozenset({"MultiheadAttention", "Softmax", "Softmin", "LogSoftmax", "Softmax2d"})




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
