"""Top inputs per neuron for the fronts that hold the activations (``spanmatch.compare`` on
arrays): for every neuron, the k inputs with the largest response, in the layer record's
``top_inputs`` block (docs/results-schema.md)."""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import numpy as np

__all__ = ["top_inputs_side", "top_inputs_record", "RESPONSE_MAX_OVER_POSITIONS", "RESPONSE_ACTIVATION"]

#: How a response is measured for an array with positions (conv maps, tokens).
RESPONSE_MAX_OVER_POSITIONS = "max over positions"
#: ... and for an array of one row per input.
RESPONSE_ACTIVATION = "activation"


def _float(arr: np.ndarray, bf16: bool) -> np.ndarray:
    if bf16:
        return (arr.astype(np.uint32) << 16).view(np.float32)
    return arr


def top_inputs_side(
    x: np.ndarray, k: int, layout: str = "nchw", positions: bool = False
) -> Tuple[Dict[str, Any], str]:
    """The top-``k`` inputs of every neuron of one activation array ``[N, C]`` or ``[N, C, ...]``
    (``layout="nhwc"``: channels last). A neuron's response to an input is its maximum over the
    input's positions; inputs are ranked by response, ties by the lower index. Returns the side
    (``indices`` and ``values`` ``[C][k]``, -1 / None where there are fewer than k inputs, and
    with ``positions=True`` the flattened position of each maximum, its first occurrence) and
    the description of the response."""
    if x.ndim < 2:
        raise ValueError(f"top_inputs: an array of shape {x.shape} has no neurons")
    n = x.shape[0]
    if x.ndim == 2:
        resp = np.asarray(x, dtype=np.float64)
        pos = None
        what = RESPONSE_ACTIVATION
    else:
        # The maximum is exact in the array's own type: no float64 copy of the whole array.
        if layout == "nchw":
            flat = x.reshape(n, x.shape[1], -1)  # [N, C, P]
            pos = np.argmax(flat, axis=2)  # [N, C], first maximum
            resp = np.take_along_axis(flat, pos[:, :, None], axis=2)[:, :, 0]
        else:
            flat = x.reshape(n, -1, x.shape[-1])  # [N, P, C]
            pos = np.argmax(flat, axis=1)
            resp = np.take_along_axis(flat, pos[:, None, :], axis=1)[:, 0, :]
        resp = np.asarray(resp, dtype=np.float64)
        what = RESPONSE_MAX_OVER_POSITIONS
    kk = min(k, n)
    # Stable sort of -response: equal responses keep increasing input order.
    order = np.argsort(-resp, axis=0, kind="stable")[:kk].T  # [C, kk]
    values = np.take_along_axis(resp.T, order, axis=1)
    c = resp.shape[1]
    indices = np.full((c, k), -1, dtype=np.int64)
    indices[:, :kk] = order
    vals = [[float(v) for v in row] + [None] * (k - kk) for row in values]
    side: Dict[str, Any] = {"indices": indices.tolist(), "values": vals}
    if positions and pos is not None:
        p = np.full((c, k), -1, dtype=np.int64)
        p[:, :kk] = np.take_along_axis(pos.T, order, axis=1)
        side["positions"] = p.tolist()
    return side, what


def top_inputs_record(
    xa: np.ndarray, xb: np.ndarray, k: int, layout: str = "nchw", bf16: Tuple[bool, bool] = (False, False)
) -> Dict[str, Any]:
    """The ``top_inputs`` block of one layer pair (see :func:`top_inputs_side`). Positions are
    kept for sequences (``[N, T, C]`` with ``layout="nhwc"``, the token layers of a language
    model), where a position is the token."""
    tokens = layout == "nhwc" and xa.ndim == 3
    a, what = top_inputs_side(_float(xa, bf16[0]), k, layout, positions=tokens)
    b, _ = top_inputs_side(_float(xb, bf16[1]), k, layout, positions=tokens)
    return {"k": int(k), "a": a, "b": b, "response": what}
