"""spanmatch on Dask: compare two row-chunked dask arrays on a cluster.

Each row chunk becomes one accumulator on a worker; only its flat statistics
(``(n1 + n2)²`` numbers plus a few vectors) travel, summed by Dask's own tree reduction; the
client analyses the sum once. Needs ``pip install spanmatch[dask]``.

Example::

    from distributed import Client, LocalCluster
    import dask.array as da, spanmatch.dask
    client = Client(LocalCluster(processes=True, n_workers=2))
    xa = da.from_zarr(...)            # [N, C] or [N, C, H, W], chunked along N
    xb = da.from_zarr(...)
    result = spanmatch.dask.compare(xa, xb, eps=(0.25, 0.5))
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

import numpy as np

from ._api import Accumulator, Stats, _chunk_bounds, analyse, flat_length
from ._options import Options, options_from
from ._result import Result

__all__ = ["chunk_stats", "compare", "stats"]


def _chunk_flat(xa: np.ndarray, xb: np.ndarray, layout: str) -> np.ndarray:
    """Flat statistics of one chunk (runs on a worker)."""
    return Accumulator(layout).update(np.asarray(xa), np.asarray(xb)).to_flat()


def _checked(xa: Any, xb: Any) -> Tuple[Any, Any]:
    """The two arrays checked (dask arrays, same inputs) and rechunked: the same row chunks,
    one chunk along every other axis."""
    import dask.array as da

    if not (isinstance(xa, da.Array) and isinstance(xb, da.Array)):
        raise TypeError(
            f"spanmatch.dask: expected two dask arrays, got {type(xa).__name__} and {type(xb).__name__}"
        )
    if xa.ndim < 2 or xb.ndim < 2:
        raise ValueError(
            f"spanmatch.dask: arrays of shapes {xa.shape} and {xb.shape}; activations need at least 2 axes"
        )
    if xa.shape[0] != xb.shape[0]:
        raise ValueError(
            f"spanmatch.dask: a has {xa.shape[0]} inputs but b has {xb.shape[0]}; both must hold the same inputs"
        )
    if xa.chunks[0] != xb.chunks[0]:
        xb = xb.rechunk({0: xa.chunks[0]})
    xa = xa.rechunk({i: -1 for i in range(1, xa.ndim)})
    xb = xb.rechunk({i: -1 for i in range(1, xb.ndim)})
    return xa, xb


def _widths(xa: Any, xb: Any, layout: str) -> Tuple[int, int]:
    """(n1, n2): from one tiny local accumulator of the same shapes."""
    probe = Accumulator(layout)
    probe.update(np.zeros((1,) + xa.shape[1:], np.float32), np.zeros((1,) + xb.shape[1:], np.float32))
    return int(probe.n1), int(probe.n2)  # type: ignore[arg-type]


def _lazy_flat(xa: Any, xb: Any, layout: str, split_every: int, length: int) -> Any:
    """The flat statistics of two checked arrays, as a lazy dask array: one accumulator per row
    chunk, summed by a tree reduction ``split_every`` at a time."""
    import dask
    import dask.array as da

    parts = [
        da.from_delayed(dask.delayed(_chunk_flat)(pa, pb, layout), shape=(length,), dtype=np.float64)
        for pa, pb in zip(xa.to_delayed().ravel(), xb.to_delayed().ravel())
    ]
    return da.stack(parts).sum(axis=0, split_every=split_every)


def stats(xa: Any, xb: Any, layout: str = "nchw", split_every: int = 8) -> Stats:
    """The finished statistics of two dask arrays chunked along the rows (the first axis).

    Both arrays must have the same number of inputs and the same chunks along the first axis;
    other axes are brought to one chunk each. Returns a :class:`spanmatch.Stats` equal to one
    in-memory pass (up to summation order, about 1e-15 relative).
    """
    if split_every < 2:
        raise ValueError(f"split_every must be at least 2, got {split_every}")
    xa, xb = _checked(xa, xb)
    n1, n2 = _widths(xa, xb, layout)
    total = _lazy_flat(xa, xb, layout, split_every, flat_length(n1, n2)).compute()
    return Stats.from_flat(total, n1, n2)


def chunk_stats(xa: Any, xb: Any, chunks: int, layout: str = "nchw", split_every: int = 8) -> List[Stats]:
    """The statistics of ``chunks`` runs of consecutive inputs (input i in chunk ⌊i·chunks/N⌋,
    the engine's rule, whatever the arrays' own row chunks), all computed in one Dask graph:
    what the bootstrap resamples. Their sum is :func:`stats`."""
    import dask

    if split_every < 2:
        raise ValueError(f"split_every must be at least 2, got {split_every}")
    xa, xb = _checked(xa, xb)
    n = int(xa.shape[0])
    if not 1 <= chunks <= n:
        raise ValueError(f"{chunks} chunks for the bootstrap, but {n} inputs; use between 1 and {n} chunks")
    n1, n2 = _widths(xa, xb, layout)
    length = flat_length(n1, n2)
    bounds = _chunk_bounds(n, chunks)
    lazy = [_lazy_flat(xa[lo:hi], xb[lo:hi], layout, split_every, length) for lo, hi in zip(bounds, bounds[1:])]
    return [Stats.from_flat(v, n1, n2) for v in dask.compute(*lazy)]


def compare(
    xa: Any,
    xb: Any,
    options: Optional[Options] = None,
    *,
    layout: str = "nchw",
    split_every: int = 8,
    name: str = "layer",
    **kwargs: Any,
) -> Result:
    """Compares two dask arrays chunked along the rows (same inputs in the same order).

    One accumulator per chunk on the workers, a tree reduction of the flat statistics
    (``split_every`` at a time), one analysis on the client. ``options`` and the keyword
    arguments are those of :func:`spanmatch.compare` (a :class:`spanmatch.Options` and/or its
    fields). With ``bootstrap``, the statistics of ``chunks`` runs of consecutive inputs are
    computed in the same Dask graph (:func:`chunk_stats`) and the intervals equal
    :func:`spanmatch.compare`'s on the same arrays and seed.
    """
    opts = options_from(options, kwargs, "spanmatch.dask.compare", extra=("layout", "split_every", "name"))
    shapes = {name: (xa.shape, xb.shape)}
    if opts.bootstrap is None:
        st = stats(xa, xb, layout=layout, split_every=split_every)
        return analyse({name: st}, opts, shapes=shapes, layout=layout, front="dask")
    parts = chunk_stats(xa, xb, int(opts.chunks), layout=layout, split_every=split_every)
    total = np.zeros_like(parts[0].to_flat())
    for p in parts:  # in chunk order, as the numpy front merges them
        total += p.to_flat()
    st = Stats.from_flat(total, parts[0].n1, parts[0].n2)
    return analyse({name: st}, opts, shapes=shapes, layout=layout, front="dask", chunks={name: parts})
