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

from typing import Any, Optional

import numpy as np

from ._api import Accumulator, Stats, analyse, flat_length
from ._options import Options, options_from
from ._result import Result

__all__ = ["compare", "stats"]


def _chunk_flat(xa: np.ndarray, xb: np.ndarray, layout: str) -> np.ndarray:
    """Flat statistics of one chunk (runs on a worker)."""
    return Accumulator(layout).update(np.asarray(xa), np.asarray(xb)).to_flat()


def stats(xa: Any, xb: Any, layout: str = "nchw", split_every: int = 8) -> Stats:
    """The finished statistics of two dask arrays chunked along the rows (the first axis).

    Both arrays must have the same number of inputs and the same chunks along the first axis;
    other axes are brought to one chunk each. Returns a :class:`spanmatch.Stats` equal to one
    in-memory pass (up to summation order, about 1e-15 relative).
    """
    import dask
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
    if split_every < 2:
        raise ValueError(f"split_every must be at least 2, got {split_every}")
    ba = xa.to_delayed().ravel()
    bb = xb.to_delayed().ravel()
    # The widths (hence the flat length): from one tiny local accumulator of the same shapes.
    probe = Accumulator(layout)
    probe.update(np.zeros((1,) + xa.shape[1:], np.float32), np.zeros((1,) + xb.shape[1:], np.float32))
    length = flat_length(probe.n1, probe.n2)
    parts = [
        da.from_delayed(dask.delayed(_chunk_flat)(pa, pb, layout), shape=(length,), dtype=np.float64)
        for pa, pb in zip(ba, bb)
    ]
    total = da.stack(parts).sum(axis=0, split_every=split_every).compute()
    return Stats.from_flat(total, probe.n1, probe.n2)


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
    fields). ``bootstrap`` is not available here (it needs per-chunk statistics of consecutive
    inputs; use :func:`spanmatch.compare` or :func:`spanmatch.analyse` with ``chunks=``).
    """
    opts = options_from(options, kwargs, "spanmatch.dask.compare", extra=("layout", "split_every", "name"))
    if opts.bootstrap is not None:
        raise ValueError(
            "spanmatch.dask.compare: bootstrap needs per-chunk statistics of consecutive inputs; "
            "compute them with spanmatch.dask.stats on slices and pass them to spanmatch.analyse(chunks=...)"
        )
    st = stats(xa, xb, layout=layout, split_every=split_every)
    return analyse({name: st}, opts, shapes={name: (xa.shape, xb.shape)}, layout=layout, front="dask")
