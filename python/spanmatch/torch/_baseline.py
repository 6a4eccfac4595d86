"""Step 5, baseline models: the untrained pair that runs beside the trained one.

``baseline="reinit"`` makes deep copies of both models and re-initialises them with fixed
seeds (model A's copy with ``seed``, model B's with ``seed + 1``: two independent
initialisations, as two trained models started from two seeds):

* a transformers ``PreTrainedModel`` is built again from its config under the seed
  (``type(model)(model.config)``) and its weights are loaded into the copy: exactly a freshly
  constructed model. When the copy's parameters do not match a fresh model's (layers added or
  resized after construction), the copy is re-initialised in place as below, then with the
  model's own ``init_weights()``;
* any other module: every submodule's ``reset_parameters()`` (or ``_reset_parameters()``),
  children before their parent, in registration order. This replays PyTorch's default
  initialisation in the order a constructor runs it, so a model whose constructor only builds
  its submodules comes out equal to a freshly constructed one under the same seed. A
  constructor that then re-initialises weights its own way (torchvision's VGG and ResNet use
  ``kaiming_normal_``), or builds submodules in another order than it registers them, gives
  another draw from PyTorch's defaults instead: pass the initial checkpoints (or freshly built
  models) as ``baseline=(model_a0, model_b0)`` for the exact baseline.

Parameters of modules without any reset method keep their trained values; a warning names the
modules.
"""

from __future__ import annotations

import copy
import sys
import warnings
from typing import Any, List, Optional, Tuple, Union

import torch
from torch import nn

from ._layers import _unwrap

BaselineSpec = Union[None, str, Tuple[nn.Module, nn.Module]]


def _reset_method(m: nn.Module) -> Optional[Any]:
    for name in ("reset_parameters", "_reset_parameters"):
        f = getattr(m, name, None)
        if callable(f):
            return f
    return None


def _reset_tree(m: nn.Module) -> None:
    for child in m.children():
        _reset_tree(child)
    f = _reset_method(m)
    if f is not None:
        f()


def _is_pretrained(m: nn.Module) -> bool:
    """Whether ``m`` is a transformers ``PreTrainedModel`` (without importing transformers:
    when it is not imported, no model is one)."""
    tf = sys.modules.get("transformers")
    cls = getattr(tf, "PreTrainedModel", None) if tf is not None else None
    return cls is not None and isinstance(m, cls)


def _clear_hf_flags(m: nn.Module) -> None:
    """transformers skips modules and tensors flagged ``_is_hf_initialized``."""
    for mod in m.modules():
        if getattr(mod, "_is_hf_initialized", False):
            mod._is_hf_initialized = False
        for t in list(mod.parameters(recurse=False)) + list(mod.buffers(recurse=False)):
            if t is not None and getattr(t, "_is_hf_initialized", False):
                t._is_hf_initialized = False


def _signature(m: nn.Module) -> List[Tuple[str, Tuple[int, ...]]]:
    return [(k, tuple(v.shape)) for k, v in m.state_dict().items()]


def _copy(model: nn.Module, which: str) -> nn.Module:
    try:
        return copy.deepcopy(model)
    except Exception as e:
        raise ValueError(
            f"baseline='reinit': model {which} cannot be copied ({type(e).__name__}: {e}); pass the "
            "untrained models as baseline=(model_a0, model_b0)"
        ) from e


def _rebuild_pretrained(model: nn.Module, c: nn.Module, seed: int) -> bool:
    """Loads a freshly constructed model's weights into ``c``; False when they do not fit."""
    config = getattr(model, "config", None)
    if config is None:
        return False
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            fresh = type(model)(config)
    except Exception:
        return False
    if _signature(fresh) != _signature(c):
        return False
    with torch.no_grad():
        c.load_state_dict(fresh.state_dict())
    return True


def reinit(model: nn.Module, seed: int = 0, which: str = "a") -> nn.Module:
    """A deep copy of ``model`` re-initialised under ``seed`` (the model is left as it was).

    See the module docstring of ``spanmatch.torch._baseline`` for how; in short: a
    transformers model is rebuilt from its config, any other model gets every submodule's
    ``reset_parameters()`` (children first). Equal to a freshly constructed model under the same
    seed when the constructor only builds submodules (and for transformers models); else another
    draw from PyTorch's default initialisation. Warns naming the modules whose parameters keep
    their trained values (no reset method).

    Raises:
        ValueError: the model cannot be copied, or has no parameter that can be re-initialised.
    """
    model = _unwrap(model)
    if not any(True for _ in model.parameters()):
        raise ValueError(
            f"baseline='reinit': model {which} has no parameters to re-initialise; pass the untrained "
            "models as baseline=(model_a0, model_b0)"
        )
    c = _copy(model, which)
    if _is_pretrained(model) and _rebuild_pretrained(model, c, seed):
        return c
    devices = {p.device for p in c.parameters()}
    home = next(iter(devices)) if len(devices) == 1 else None
    if home is not None and home.type != "cpu":
        c.to("cpu")  # initialise with the CPU generator, as a model built on the CPU
    before = {id(p): p.detach().clone() for p in c.parameters()}  # to name what stayed
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        _reset_tree(c)
        if _is_pretrained(c):
            _clear_hf_flags(c)
            c.init_weights()
    if home is not None and home.type != "cpu":
        c.to(home)
    resettable = _is_pretrained(c) or any(
        _reset_method(m) is not None and any(True for _ in m.parameters()) for m in c.modules()
    )
    if not resettable:
        raise ValueError(
            f"baseline='reinit': no parameter of model {which} can be re-initialised (no module with "
            "parameters has reset_parameters()); pass the untrained models as baseline=(model_a0, model_b0)"
        )
    kept: List[str] = []
    for name, m in c.named_modules():
        own = list(m.parameters(recurse=False))
        if not own or _reset_method(m) is not None:
            continue
        if all(torch.equal(p.detach().cpu(), before[id(p)].cpu()) for p in own):
            kept.append(name or type(m).__name__)
    if kept:
        shown = ", ".join(kept[:8]) + (f" and {len(kept) - 8} more" if len(kept) > 8 else "")
        warnings.warn(
            f"baseline='reinit': the parameters of module(s) {shown} of model {which} have no "
            "reset_parameters() and keep their trained values in the baseline",
            stacklevel=3,
        )
    return c


def check_architecture(trained: nn.Module, base: nn.Module, which: str) -> None:
    """Raises ``ValueError`` unless ``base`` has the modules and parameter shapes of ``trained``."""
    sig_t, sig_b = _signature(trained), _signature(base)
    if sig_t != sig_b:
        dt, db = dict(sig_t), dict(sig_b)
        for k, shape in sig_t:
            if k not in db:
                raise ValueError(
                    f"baseline: model {which}0 has no '{k}' (model {which} has it, shape {list(shape)}); the "
                    "baseline models must have the trained models' architecture"
                )
            if db[k] != shape:
                raise ValueError(
                    f"baseline: '{k}' has shape {list(db[k])} in model {which}0 but {list(shape)} in model "
                    f"{which}; the baseline models must have the trained models' architecture"
                )
        extra = [k for k in db if k not in dt]
        raise ValueError(
            f"baseline: model {which}0 has '{extra[0]}', which model {which} does not have; the baseline "
            "models must have the trained models' architecture"
        )
    names_t = [n for n, _ in trained.named_modules()]
    names_b = [n for n, _ in base.named_modules()]
    if names_t != names_b:
        missing = [n for n in names_t if n not in set(names_b)]
        what = f"no module '{missing[0]}'" if missing else "other modules"
        raise ValueError(
            f"baseline: model {which}0 has {what} than model {which}; the baseline models must have the "
            "trained models' architecture"
        )


def baseline_models(
    spec: BaselineSpec, model_a: nn.Module, model_b: nn.Module, seed: int
) -> Optional[Tuple[nn.Module, nn.Module, bool]]:
    """``(model_a0, model_b0, given)``: the baseline pair, and whether the user gave it (then
    its modes and hooks are restored like the trained models'); None without a baseline."""
    if spec is None:
        return None
    if isinstance(spec, str):
        if spec != "reinit":
            raise ValueError(f"baseline: '{spec}'; use 'reinit' or a pair of models (model_a0, model_b0)")
        return reinit(model_a, seed, "a"), reinit(model_b, seed + 1, "b"), False
    if isinstance(spec, (tuple, list)) and len(spec) == 2 and all(isinstance(m, nn.Module) for m in spec):
        a0, b0 = _unwrap(spec[0]), _unwrap(spec[1])
        check_architecture(model_a, a0, "a")
        check_architecture(model_b, b0, "b")
        return a0, b0, True
    raise TypeError(
        f"baseline: expected 'reinit' or a pair of models (model_a0, model_b0); got {type(spec).__name__}"
    )


__all__ = ["reinit", "baseline_models", "check_architecture"]
