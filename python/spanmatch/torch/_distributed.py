"""Step 4, the reduction over ``torch.distributed`` ranks.

Every rank feeds its own shard. The statistics of disjoint inputs add up, so each tensor of
every accumulator is summed with ``all_reduce`` (in place, one tensor at a time: no second copy
of the statistics). The ranks first agree on the layers (the first rank that saw a batch
describes them; a rank without any batch takes that description). Top inputs are gathered and
merged with global input indices: rank 0's inputs first, then rank 1's, and so on.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import torch


def active() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    import torch.distributed as dist

    return dist.get_rank()


def gather(obj: Any) -> List[Any]:
    """Every rank's ``obj``, in rank order."""
    import torch.distributed as dist

    out: List[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def raise_if_any_failed(error: Optional[BaseException]) -> None:
    """Every rank calls this at the same point of the pass, with the exception it caught since
    the last such point (or None). If any rank failed, every rank raises: the failed ones their
    own exception, the others a ``RuntimeError`` naming the first failed rank and its message.
    Without it a rank that failed (a NaN in its shard, say) would leave the others waiting in
    the next collective until the process group's timeout."""
    msgs = gather(None if error is None else f"{type(error).__name__}: {error}")
    if error is not None:
        raise error
    failed = [(r, m) for r, m in enumerate(msgs) if m is not None]
    if failed:
        r, m = failed[0]
        raise RuntimeError(f"rank {r} failed during the pass, so every rank stops: {m}")


def agree(mine: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """The description of the layers that every rank uses: the first rank's that saw a batch.
    Raises ``ValueError`` when no rank saw a batch, or two ranks ran other layers."""
    metas = gather(mine)
    found = [(r, m) for r, m in enumerate(metas) if m is not None]
    if not found:
        raise ValueError("data: no batch on any rank; the data must yield at least one batch")
    r0, ref = found[0]
    for r, m in found[1:]:
        if m["order"] != ref["order"] or m["widths"] != ref["widths"]:
            raise ValueError(
                f"rank {r} ran other layers (or layer widths) than rank {r0}; every rank must run the "
                "same models on batches of the same kind"
            )
    return ref


def all_reduce(tensors: Sequence[torch.Tensor]) -> None:
    """Sums each tensor over the ranks, in place."""
    import torch.distributed as dist

    nccl = dist.get_backend() == "nccl"
    for t in tensors:
        if nccl and t.device.type != "cuda":
            on = t.cuda()
            dist.all_reduce(on, op=dist.ReduceOp.SUM)
            t.copy_(on.cpu())
        elif not nccl and t.device.type == "cuda":
            on = t.cpu()
            dist.all_reduce(on, op=dist.ReduceOp.SUM)
            t.copy_(on)
        else:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)


def world_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size()
