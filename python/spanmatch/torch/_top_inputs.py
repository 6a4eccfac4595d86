"""Top inputs per neuron: for every neuron of a layer, the k inputs it responds to most.

An input's response is the neuron's largest activation over the input's positions (a
convolutional layer's spatial positions, a token layer's tokens; padding tokens left out),
or its activation for a layer with one row per input. The k largest responses are kept on the
models' device as three ``[k, neurons]`` tensors (value, input index, position), merged batch
by batch: memory O(k x neurons) per layer, whatever the number of inputs.

Order: value descending, ties broken by the lower input index. Every merge keeps this order
because the running list is sorted and a batch's inputs come after every input already seen
(a stable sort then keeps the lower index first among equal values); the merge of several
processes' lists sorts by (value descending, index ascending) explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

__all__ = ["TopInputs"]


@dataclass(frozen=True)
class TopInputs:
    """The inputs each neuron of one layer responds to most (``top_inputs=k``).

    Attributes:
        indices: ``[neurons, k]`` input indices, the largest response first (ties: lower index
            first); -1 where fewer than k inputs were seen. An index counts the inputs in data
            order (under ``torch.distributed``: rank 0's inputs, then rank 1's, ...).
        values: ``[neurons, k]`` the responses (the maximum over positions), NaN where the
            index is -1.
        positions: ``[neurons, k]`` where the maximum was (-1 where the index is -1): the token
            for a token layer, the flat position (row-major over ``positions_shape``) for a
            convolutional layer; None for a layer with one row per input.
        positions_shape: the per-input shape of the positions (``(H, W)`` for a 2-D
            convolution; None for tokens, whose count varies, and for one row per input).
        k: how many inputs were asked for.
    """

    indices: np.ndarray
    values: np.ndarray
    positions: Optional[np.ndarray]
    positions_shape: Optional[Tuple[int, ...]]
    k: int

    def to_dict(self) -> Dict[str, Any]:
        """Plain lists (NaN as None), the ``top_inputs`` block of the results schema."""
        vals = [[None if np.isnan(v) else float(v) for v in row] for row in self.values]
        out: Dict[str, Any] = {"indices": self.indices.tolist(), "values": vals}
        if self.positions is not None:
            out["positions"] = self.positions.tolist()
        if self.positions_shape is not None:
            out["positions_shape"] = list(self.positions_shape)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], k: Optional[int] = None) -> "TopInputs":
        """The inverse of :meth:`to_dict`: one side (``"a"`` or ``"b"``) of a record's
        ``top_inputs`` block, e.g. ``TopInputs.from_dict(layer.top_inputs["a"],
        layer.top_inputs["k"])`` for a result read back with ``Result.from_json``."""
        indices = np.asarray(d["indices"], dtype=np.int64).reshape(len(d["indices"]), -1)
        values = np.array(
            [[np.nan if v is None else float(v) for v in row] for row in d["values"]], dtype=np.float64
        ).reshape(indices.shape)
        positions = None if d.get("positions") is None else np.asarray(d["positions"], dtype=np.int64).reshape(indices.shape)
        shape = None if d.get("positions_shape") is None else tuple(int(v) for v in d["positions_shape"])
        return cls(indices, values, positions, shape, int(indices.shape[1] if k is None else k))

    def response(self) -> str:
        """How a response is measured for this layer (the record's ``response``)."""
        if self.positions is None:
            return "activation (one row per input)"
        if self.positions_shape is None:
            return "max over tokens (padding left out)"
        return "max over positions"

    def __repr__(self) -> str:
        n, k = self.indices.shape
        pos = "" if self.positions is None else ", with positions"
        return f"TopInputs({n} neurons x k={k}{pos})"


def responses(
    t: torch.Tensor, channels_first: bool, mask: Optional[torch.Tensor]
) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """Per input and neuron, the largest activation over positions: ``(values [B, C], valid
    [B], by_position)``. ``valid`` is False for an input without any (unmasked) position;
    ``by_position`` is the ``[B, C, P]`` tensor the maximum was taken over (None for a
    ``[B, C]`` output), from which :meth:`TopK.update` reads the positions of the entries it
    keeps. ``mask`` ([B, T]) applies to a ``[B, T, C]`` token output."""
    b = t.shape[0]
    ones = torch.ones(b, dtype=torch.bool, device=t.device)
    if t.dim() == 2:
        return t, ones, None
    if channels_first:
        y = t.flatten(2)  # [B, C, P]
        return y.amax(dim=2), ones, y
    y = t.flatten(1, -2)  # [B, P, C]
    valid = ones
    if mask is not None:
        m = mask.to(y.device)
        y = y.masked_fill(~m[:, :, None], float("-inf"))
        valid = m.any(dim=1)
    return y.amax(dim=1), valid, y.transpose(1, 2)


#: The lowest key: no input (an empty slot, or an input without any unmasked token).
_NO_KEY = -(2**63)
_LOW32 = 0xFFFFFFFF


def _keys(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Unique int64 keys in the order (value descending, index ascending) for float32 values:
    the float's bits mapped to an order-preserving int32 in the high half, ``2³² - 1 - index``
    in the low half. Exact: comparing keys is comparing (value, -index) lexicographically."""
    v = values.to(torch.float32) + 0.0  # -0.0 -> +0.0, so that the two zeros tie
    bits = v.view(torch.int32)
    ordered = bits ^ ((bits >> 31) & 0x7FFFFFFF)
    return (ordered.to(torch.int64) << 32) | (_LOW32 - index)


def _decode(keys: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(values float64, indices)`` of :func:`_keys` (index -1 and value -inf for no input)."""
    none = keys == _NO_KEY
    ordered = (keys >> 32).to(torch.int32)
    bits = ordered ^ ((ordered >> 31) & 0x7FFFFFFF)
    values = bits.view(torch.float32).to(torch.float64).masked_fill(none, float("-inf"))
    index = (_LOW32 - (keys & _LOW32)).masked_fill(none, -1)
    return values, index


class TopK:
    """The running top-k of one layer (see the module docstring), as ``[C, k]`` tensors.

    Responses that are float32 or narrower are kept as unique int64 keys (:func:`_keys`) and
    selected with one ``topk`` per batch (exact, ties to the lower index); float64 responses as
    values and indices, selected with a stable sort. Positions are looked up only for the
    entries that a batch brings in."""

    def __init__(self, k: int, width: int, device: torch.device, positions: bool) -> None:
        self.k = int(k)
        self.width = int(width)
        self.device = device
        self.keys: Optional[torch.Tensor] = None  # float32 path
        self.values: Optional[torch.Tensor] = None  # float64 path
        self.index: Optional[torch.Tensor] = None
        self.pos = torch.full((width, self.k), -1, dtype=torch.int64, device=device) if positions else None

    def update(
        self, values: torch.Tensor, valid: torch.Tensor, by_position: Optional[torch.Tensor], first_index: int
    ) -> None:
        """Adds a batch: ``values [B, C]``, the responses of inputs ``first_index ..``."""
        dev = self.device
        b, c = values.shape
        k = self.k
        vt = values.T.to(dev)  # [C, B]
        idx = torch.arange(first_index, first_index + b, dtype=torch.int64, device=dev).expand(c, b)
        ok = valid.to(dev)
        all_ok = bool(ok.all())
        if vt.dtype != torch.float64 and self.values is None:
            keys = _keys(vt, idx)
            if not all_ok:
                keys = keys.masked_fill(~ok[None, :], _NO_KEY)
            if self.keys is None:
                self.keys = torch.full((c, k), _NO_KEY, dtype=torch.int64, device=dev)
            self.keys, sel = torch.topk(torch.cat([self.keys, keys], dim=1), k, dim=1, sorted=True)
            got = self.keys != _NO_KEY
        else:  # exact float64 order: a stable sort, running entries (lower indices) first
            if self.values is None:
                self.values = torch.full((c, k), float("-inf"), dtype=torch.float64, device=dev)
                self.index = torch.full((c, k), -1, dtype=torch.int64, device=dev)
            v = vt.to(torch.float64)
            i = idx
            if not all_ok:
                v = v.masked_fill(~ok[None, :], float("-inf"))
                i = idx.masked_fill(~ok[None, :], -1)
            cand_v = torch.cat([self.values, v], dim=1)
            sel = torch.sort(cand_v, dim=1, descending=True, stable=True).indices[:, :k]
            self.values = torch.gather(cand_v, 1, sel)
            assert self.index is not None
            self.index = torch.gather(torch.cat([self.index, i], dim=1), 1, sel)
            got = self.index >= 0
        if self.pos is not None:
            fresh = sel >= k
            kept = torch.gather(self.pos, 1, sel.clamp(max=k - 1))
            if by_position is not None and bool(fresh.any()):
                # The first maximum over positions of the entries from this batch.
                local = (sel - k).clamp(min=0)  # [C, k] input of the batch (unused where not fresh)
                rows = by_position.to(dev).transpose(0, 1)  # [C, B, P]
                new_pos = torch.gather(rows, 1, local[:, :, None].expand(c, k, rows.shape[2])).argmax(dim=2)
                kept = torch.where(fresh, new_pos, kept)
            self.pos = kept.masked_fill(~got, -1)

    def arrays(self) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
        """``(values, indices, positions)`` as ``[k, C]`` numpy arrays (CPU)."""
        if self.keys is not None:
            values, index = _decode(self.keys)
        elif self.values is not None and self.index is not None:
            values, index = self.values, self.index
        else:  # no batch
            values = torch.full((self.width, self.k), float("-inf"), dtype=torch.float64)
            index = torch.full((self.width, self.k), -1, dtype=torch.int64)
        pos = None if self.pos is None else self.pos.T.cpu().numpy()
        return values.T.cpu().numpy(), index.T.cpu().numpy(), pos


def merge(
    parts: Sequence[Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]], k: int
) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """Merges several ``[k, C]`` lists (global input indices) into one: value descending,
    index ascending; entries with index -1 last."""
    vals = np.concatenate([p[0] for p in parts])
    idx = np.concatenate([p[1] for p in parts])
    has_pos = parts[0][2] is not None
    pos = np.concatenate([p[2] for p in parts]) if has_pos else None
    out_v = np.empty((k, vals.shape[1]))
    out_i = np.empty((k, vals.shape[1]), dtype=np.int64)
    out_p = np.empty((k, vals.shape[1]), dtype=np.int64) if has_pos else None
    for c in range(vals.shape[1]):
        missing = idx[:, c] < 0
        # lexsort: the last key is the primary one.
        order = np.lexsort((idx[:, c], -vals[:, c], missing))[:k]
        out_v[:, c] = vals[order, c]
        out_i[:, c] = idx[order, c]
        if out_p is not None and pos is not None:
            out_p[:, c] = pos[order, c]
    return out_v, out_i, out_p


def finish(
    values: np.ndarray,
    indices: np.ndarray,
    positions: Optional[np.ndarray],
    positions_shape: Optional[Tuple[int, ...]],
    k: int,
) -> TopInputs:
    """The public ``[neurons, k]`` form: NaN values and -1 positions where there is no input."""
    vals = values.T.astype(np.float64, copy=True)
    idx = indices.T.astype(np.int64, copy=True)
    vals[idx < 0] = np.nan
    pos = None
    if positions is not None:
        pos = positions.T.astype(np.int64, copy=True)
        pos[idx < 0] = -1
    return TopInputs(indices=idx, values=vals, positions=pos, positions_shape=positions_shape, k=int(k))


def to_payload(a: TopInputs, b: TopInputs, k: int) -> Dict[str, Any]:
    """The ``top_inputs`` block of one layer record."""
    ra, rb = a.response(), b.response()
    response = ra if ra == rb else f"a: {ra}; b: {rb}"
    return {"k": int(k), "a": a.to_dict(), "b": b.to_dict(), "response": response}


def gather_keys(
    trackers: Dict[Any, TopK],
) -> Dict[Any, Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]]:
    """Every tracker's arrays on the CPU (what one process contributes to the merge)."""
    return {key: t.arrays() for key, t in trackers.items()}


def shift(
    arrays: Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]], offset: int
) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """Local input indices -> global ones (``offset`` inputs on the ranks before this one)."""
    v, i, p = arrays
    i = np.where(i >= 0, i + int(offset), -1)
    return v, i, p


def merge_ranks(
    per_rank: List[Dict[Any, Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]]],
    offsets: Sequence[int],
    k: int,
) -> Dict[Any, Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]]:
    """Merges the trackers of every rank (global indices: each rank's offset added)."""
    keys: List[Any] = []
    for d in per_rank:
        for key in d:
            if key not in keys:
                keys.append(key)
    out = {}
    for key in keys:
        parts = [shift(d[key], off) for d, off in zip(per_rank, offsets) if key in d]
        out[key] = merge(parts, k)
    return out
