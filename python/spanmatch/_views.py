"""What matched neurons respond to, for any result: the engine's choice of neurons (from the
layer records' ``top_inputs``), and the inputs read from the user's dataset (images as ``uint8``
CHW arrays, tokens in their context). Shared by :meth:`spanmatch.Result.report` and
``Result.plot(kind="neurons")``, so both show the same neurons and state the same counts."""

from __future__ import annotations

import json
import numbers
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from . import _native

__all__ = ["CONTEXT", "selection", "input_count", "check_inputs", "read_image", "token_context", "gather"]

#: Tokens shown on each side of a top token.
CONTEXT = 8

_IMAGE_KEYS = ("image", "img", "pixel_values")
_TOKEN_KEYS = ("input_ids", "tokens", "ids")
_LABEL_KEYS = ("label", "labels", "target", "y")


def selection(result: Any, seed: Optional[int] = None) -> Dict[str, Any]:
    """The neurons shown for ``result`` (the engine's ``views_from_records``): per layer the
    groups (largest simple matches, closest one-to-one matches, an unmatched contrast), each
    neuron with its top inputs, each group with ``shared`` = ``{a, b, both}``.

    Raises ``ValueError`` (saying how to get them) when the result has no ``top_inputs`` or no
    simple matches."""
    return json.loads(_native.neuron_view_selection(json.dumps(result.to_dict()), seed))


def input_count(result: Any) -> Optional[int]:
    """How many inputs the comparison saw, when the result records it (``provenance.inputs``,
    else the leading dimension of the arrays of the numpy front); None when unknown."""
    d = result.to_dict()
    n = (d.get("provenance") or {}).get("inputs")
    if n is not None:
        return int(n)
    if d.get("front") == "python":
        for layer in result.layers:
            shape = layer.record.get("shape_a") or []
            if shape:
                return int(shape[0])
    return None


def check_inputs(result: Any, inputs: Any, largest_index: int = -1) -> int:
    """Checks that ``inputs`` can be the inputs the comparison saw: its length equals the number
    of inputs recorded (when known) and exceeds every index shown. Returns its length."""
    try:
        n = len(inputs)
    except TypeError:
        raise TypeError(
            f"inputs: expected a dataset with len() and [i] (a torch Dataset, a list, an array), got "
            f"{type(inputs).__name__}"
        ) from None
    seen = input_count(result)
    if seen is not None and n != seen:
        raise ValueError(
            f"inputs: {n} inputs given, but the comparison saw {seen}; pass the dataset the result "
            "was computed on, in the same order"
        )
    if largest_index >= n:
        raise ValueError(
            f"inputs: the result refers to input {largest_index}, but only {n} inputs were given; pass "
            "the dataset the result was computed on, in the same order"
        )
    return n


def _is_scalar_int(x: Any) -> bool:
    if isinstance(x, bool):
        return False
    if isinstance(x, numbers.Integral):
        return True
    shape = getattr(x, "shape", None)
    if shape is not None and tuple(shape) == () and hasattr(x, "item"):
        return isinstance(x.item(), numbers.Integral) and not isinstance(x.item(), bool)
    return False


def _split_item(item: Any) -> Tuple[Any, Optional[int]]:
    """``(x, label)`` of a dataset item: a tuple/list whose first element is the input (and a
    second, integer one the label), a dict (``image``/``input_ids`` and ``label``), or the input
    itself."""
    if isinstance(item, Mapping):
        label = next((item[k] for k in _LABEL_KEYS if k in item and _is_scalar_int(item[k])), None)
        for k in _IMAGE_KEYS + _TOKEN_KEYS:
            if k in item:
                return item[k], None if label is None else int(label)
        raise TypeError(
            f"a dataset item is a dict with keys {sorted(item)}; expected one of "
            f"{', '.join(_IMAGE_KEYS + _TOKEN_KEYS)}"
        )
    if isinstance(item, (tuple, list)) and item and not _is_scalar_int(item[0]):
        label = item[1] if len(item) > 1 and _is_scalar_int(item[1]) else None
        return item[0], None if label is None else int(label)
    return item, None


def _to_numpy(x: Any) -> Tuple[np.ndarray, str]:
    """An array and its layout guess source: ``"torch"`` (CHW), ``"pil"`` (HWC) or ``"numpy"``."""
    module = type(x).__module__ or ""
    if module.startswith("torch"):
        import torch

        t = x.detach().cpu()
        if t.dtype in (torch.bfloat16, torch.float16):
            t = t.float()
        return t.numpy(), "torch"
    if module.startswith("PIL"):
        mode = "L" if x.mode in ("1", "L", "I", "I;16", "F", "LA") else "RGB"
        return np.asarray(x.convert(mode)), "pil"
    return np.asarray(x), "numpy"


def read_image(item: Any, index: int) -> Tuple[np.ndarray, Optional[int]]:
    """An input as an image: ``(pixels, label)``, pixels ``uint8`` of shape ``[C, H, W]`` with C
    1 or 3. Accepts a tensor CHW or HW, a PIL image, a numpy array (HW, CHW or HWC), or a
    tuple/list/dict holding one (with its integer label). Floats in [0, 1] are scaled by 255;
    other floats (e.g. normalised images) are stretched from their minimum to their maximum;
    a fourth (alpha) channel is dropped."""
    x, label = _split_item(item)
    arr, source = _to_numpy(x)
    if arr.ndim == 2:
        arr = arr[None]
    elif arr.ndim == 3:
        first, last = arr.shape[0] in (1, 3, 4), arr.shape[-1] in (1, 3, 4)
        if source == "pil" or (source == "numpy" and last and not first):
            arr = np.moveaxis(arr, -1, 0)  # HWC
        elif source == "numpy" and not first and not last:
            raise ValueError(
                f"inputs[{index}]: an image with {arr.shape[0]} channels cannot be shown (1 or 3 expected; "
                f"shape {tuple(arr.shape)})"
            )
    else:
        raise ValueError(
            f"inputs[{index}]: an array of shape {tuple(arr.shape)} is not an image (HW, CHW or HWC expected)"
        )
    if arr.shape[0] == 4:
        arr = arr[:3]
    if arr.shape[0] not in (1, 3):
        raise ValueError(
            f"inputs[{index}]: an image with {arr.shape[0]} channels cannot be shown (1 or 3 expected; "
            f"shape {tuple(arr.shape)})"
        )
    if arr.dtype == np.uint8:
        pixels = arr
    elif arr.dtype == np.bool_:
        pixels = arr.astype(np.uint8) * 255
    elif np.issubdtype(arr.dtype, np.integer):
        pixels = np.clip(arr, 0, 255).astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.floating):
        f = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        lo, hi = float(f.min()), float(f.max())
        if lo >= 0.0 and hi <= 1.0:
            f = f * 255.0
        elif hi > lo:
            f = (f - lo) * (255.0 / (hi - lo))
        else:
            f = np.zeros_like(f)
        pixels = np.clip(np.rint(f), 0, 255).astype(np.uint8)
    else:
        raise TypeError(f"inputs[{index}]: pixels of type {arr.dtype} cannot be shown")
    return np.ascontiguousarray(pixels), label


def read_tokens(item: Any, index: int) -> List[int]:
    """An input as a token sequence: a 1-D sequence of integer ids (list, tensor, array; a
    leading dimension of 1 is dropped), or a tuple/list/dict holding one (``input_ids``)."""
    x, _ = _split_item(item)
    if isinstance(x, Mapping):
        x, _ = _split_item(x)
    arr, _ = _to_numpy(x)
    if arr.ndim == 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(
            f"inputs[{index}]: expected a sequence of token ids for a token model (1-D integers), got "
            f"shape {tuple(arr.shape)} of {arr.dtype}"
        )
    return [int(v) for v in arr]


def _decoder(tokenizer: Any) -> Callable[[int], str]:
    if tokenizer is None:
        return str
    if hasattr(tokenizer, "decode"):
        return lambda t: str(tokenizer.decode([t]))
    if callable(tokenizer):
        return lambda t: str(tokenizer(t))
    raise TypeError(
        f"tokenizer: expected an object with .decode (a Hugging Face tokenizer) or a function id -> text, "
        f"got {type(tokenizer).__name__}"
    )


def token_context(
    ids: Sequence[int], position: int, tokenizer: Any = None, width: int = CONTEXT, index: int = 0
) -> Tuple[List[str], str, List[str]]:
    """The token at ``position`` with up to ``width`` tokens on each side, as text: decoded one
    token at a time with ``tokenizer`` (its ``decode``), or, without one, as ids separated by
    spaces. Returns ``(before, token, after)``."""
    if not 0 <= position < len(ids):
        raise ValueError(
            f"inputs[{index}]: the result refers to token position {position}, but the input has "
            f"{len(ids)} tokens; pass the dataset the result was computed on"
        )
    decode = _decoder(tokenizer)
    before = [decode(t) for t in ids[max(0, position - width) : position]]
    after = [decode(t) for t in ids[position + 1 : position + 1 + width]]
    token = decode(ids[position])
    if tokenizer is None:
        before = [f"{t} " for t in before]
        after = [f" {t}" for t in after]
    return before, token, after


def class_names(inputs: Any) -> List[str]:
    """The class names of a dataset, when it has them (torchvision's ``classes``)."""
    names = getattr(inputs, "classes", None)
    if isinstance(names, (list, tuple)) and all(isinstance(c, str) for c in names):
        return list(names)
    return []


def gather(
    sel: Mapping[str, Any], inputs: Any, tokenizer: Any = None
) -> Tuple[List[Tuple[int, Optional[int], bytes, Tuple[int, int, int]]], List[Tuple[int, int, List[str], str, List[str]]], Dict[Tuple[int, Optional[int]], Any]]:
    """Reads every input the selection shows from ``inputs``: images as
    ``(index, label, pixel bytes, (c, h, w))``, tokens as ``(index, position, before, token,
    after)``, and the same per key ``(index, position)`` for drawing (the pixel array, or the
    context triple)."""
    images: List[Tuple[int, Optional[int], bytes, Tuple[int, int, int]]] = []
    tokens: List[Tuple[int, int, List[str], str, List[str]]] = []
    drawn: Dict[Tuple[int, Optional[int]], Any] = {}
    cache: Dict[int, List[int]] = {}
    for entry in sel["inputs"]:
        index, position = int(entry["index"]), entry.get("position")
        if position is None:
            pixels, label = read_image(inputs[index], index)
            c, h, w = pixels.shape
            images.append((index, label, pixels.tobytes(), (int(c), int(h), int(w))))
            drawn[(index, None)] = (pixels, label)
        else:
            if index not in cache:
                cache[index] = read_tokens(inputs[index], index)
            ctx = token_context(cache[index], int(position), tokenizer, index=index)
            tokens.append((index, int(position), ctx[0], ctx[1], ctx[2]))
            drawn[(index, int(position))] = ctx
    return images, tokens, drawn


def largest_index(sel: Mapping[str, Any]) -> int:
    """The largest input index the selection shows (-1 when none)."""
    return max((int(e["index"]) for e in sel["inputs"]), default=-1)
