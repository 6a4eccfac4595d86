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
from typing import Any, Dict, List, Optional, Sequence, Tuple

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

    def __repr__(self) -> str:
        n, k = self.indices.shape
        pos = "" if self.positions is None else ", with positions"
        return f"TopInputs({n} neurons x k={k}{pos})"


def responses(
    t: torch.Tensor, channels_first: bool, mask: Optional[torch.Tensor]
) -> Tuple[torch.Tensor, Optional[torch.Tensor], torch.Tensor]:
    """Per input and neuron, the largest activation over positions: ``(values [B, C],
    positions [B, C] or None, valid [B])``; ``valid`` is False for an input without any
    (unmasked) position. ``mask`` ([B, T]) applies to a ``[B, T, C]`` token output."""
    b = t.shape[0]
    if t.dim() == 2:
        return t, None, torch.ones(b, dtype=torch.bool, device=t.device)
    if channels_first:
        y = t.flatten(2)  # [B, C, P]
        if y.shape[2] == 0:
            raise ValueError("top_inputs: an output without positions")
        v, p = y.max(dim=2)
        return v, p, torch.ones(b, dtype=torch.bool, device=t.device)
    y = t.flatten(1, -2)  # [B, P, C]
    if mask is not None:
        m = mask.to(y.device)
        y = y.masked_fill(~m[:, :, None], float("-inf"))
        valid = m.any(dim=1)
    else:
        valid = torch.ones(b, dtype=torch.bool, device=t.device)
    v, p = y.max(dim=1)
    return v, p, valid


class TopK:
    """The running top-k of one layer (see the module docstring)."""

    def __init__(self, k: int, width: int, device: torch.device, positions: bool) -> None:
        self.k = int(k)
        self.values = torch.full((self.k, width), float("-inf"), dtype=torch.float64, device=device)
        self.index = torch.full((self.k, width), -1, dtype=torch.int64, device=device)
        self.pos = torch.full((self.k, width), -1, dtype=torch.int64, device=device) if positions else None

    def update(
        self, values: torch.Tensor, positions: Optional[torch.Tensor], valid: torch.Tensor, first_index: int
    ) -> None:
        """Adds a batch: ``values [B, C]`` (the responses of inputs ``first_index ..``)."""
        dev = self.values.device
        b, c = values.shape
        v = values.to(dev, torch.float64)
        idx = torch.arange(first_index, first_index + b, dtype=torch.int64, device=dev)
        idx = idx[:, None].expand(b, c)
        ok = valid.to(dev)
        if not bool(ok.all()):
            v = v.masked_fill(~ok[:, None], float("-inf"))
            idx = idx.masked_fill(~ok[:, None], -1)
        cand_v = torch.cat([self.values, v])
        cand_i = torch.cat([self.index, idx])
        order = torch.sort(cand_v, dim=0, descending=True, stable=True).indices[: self.k]
        self.values = torch.gather(cand_v, 0, order)
        self.index = torch.gather(cand_i, 0, order)
        if self.pos is not None:
            p = positions.to(dev, torch.int64) if positions is not None else torch.zeros_like(idx)
            if not bool(ok.all()):
                p = p.masked_fill(~ok[:, None], -1)
            self.pos = torch.gather(torch.cat([self.pos, p]), 0, order)

    def arrays(self) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
        """``(values, indices, positions)`` as ``[k, C]`` numpy arrays (CPU)."""
        pos = None if self.pos is None else self.pos.cpu().numpy()
        return self.values.cpu().numpy(), self.index.cpu().numpy(), pos


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


def to_payload(a: Optional[TopInputs], b: Optional[TopInputs], k: int) -> Dict[str, Any]:
    """The ``top_inputs`` block of one layer record."""
    out: Dict[str, Any] = {"k": int(k), "response": "max over positions"}
    if a is not None:
        out["a"] = a.to_dict()
    if b is not None:
        out["b"] = b.to_dict()
    return out


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
