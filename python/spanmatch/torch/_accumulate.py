"""Step 3, accumulation: the exact statistics of layer pairs, batch by batch.

Two kinds of accumulator ("units"), with one interface:

* :class:`Blocks` (torch products on the statistics' device, any precision): the statistics of
  layers that share their rows. Per layer ``k`` its Gram block ``D_k = X_kᵀX_k`` (the upper
  triangle of column chunks: half the products) and column sums; per compared pair ``(i, j)``
  the cross block ``C_ij = X_iᵀX_j``; the row-norm moments ``W = NᵀM`` and ``NᵀN`` (``N``: per
  row, each layer's squared norm); the row count. A layer pair's
  statistics are ``[[D_i, C_ij], [C_ijᵀ, D_j]]`` and the matching sums and moments, so a group
  holds only the blocks its pairs need: ``Σ n_k² + Σ n_i n_j`` values, not ``(Σ n_k)²``.
* :class:`NativePair` (CPU, float64): one layer pair in the engine's own accumulator (OpenBLAS
  ``dsyrk``, arrays read in place, rows gathered into blocks of at least 512).

With ``chunks`` (the bootstrap), a unit keeps the statistics of consecutive chunks of batches
apart: :meth:`end_chunk` files the current chunk's statistics (a flat vector, on the CPU) and
starts the next one; the pair's statistics are the sum of its chunks.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .._api import Accumulator, Stats, flat_length
from ._capture import NonFinite

#: Use the engine's accumulator for layer pairs on the CPU in float64 (tests switch it off to
#: check both paths).
NATIVE_CPU = True
#: Also in float32 (the engine's ``ssyrk`` per block of rows) rather than torch's matmul. Off:
#: on a 2-core machine torch's products win there, because the engine's OpenBLAS threads and
#: torch's OpenMP threads (still spinning after each layer) compete for the cores; see
#: docs/benchmarks.md. The benchmark's ``--engine32`` switches it on.
NATIVE_CPU_F32 = False
#: Columns per chunk of a Gram block (products of chunks below the diagonal are skipped).
CHUNK = 256

F64 = torch.float64


def column_chunks(width: int, target: int = CHUNK) -> List[Tuple[int, int]]:
    """Column chunks ``(start, end)`` of one layer, of about ``target`` columns each."""
    pieces = max(1, round(width / target))
    bounds = [(width * k) // pieces for k in range(pieces + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


@contextmanager
def highest_matmul(device: torch.device, precision: str) -> Iterator[None]:
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


def pair_flat(
    n1: int,
    n2: int,
    rows: float,
    gram: np.ndarray,
    sums: np.ndarray,
    w_a: np.ndarray,
    w_b: np.ndarray,
    aa: float,
    ab: float,
    bb: float,
) -> np.ndarray:
    """The engine's flat statistics of one pair (``Stats.to_flat``'s layout: header, sums, the
    two row-norm-weighted sums, the full symmetric Gram matrix)."""
    n = n1 + n2
    v = np.empty(flat_length(n1, n2))
    v[:6] = (n1, n2, rows, aa, ab, bb)
    v[6 : 6 + n] = sums
    v[6 + n : 6 + 2 * n] = w_a
    v[6 + 2 * n : 6 + 3 * n] = w_b
    v[6 + 3 * n :] = gram.reshape(-1)
    return v


class Blocks:
    """Statistics of layers with the same rows, torch products (see the module docstring).

    ``widths[k]`` neurons for slot ``k``; ``pairs``: the ``(i, j)`` slot pairs whose
    statistics are wanted (``i < j`` not required; ``i != j``).
    """

    kind = "blocks"

    def __init__(
        self,
        widths: Sequence[int],
        pairs: Sequence[Tuple[int, int]],
        device: torch.device,
        precision: str,
        chunks: int = 0,
    ) -> None:
        self.widths = [int(w) for w in widths]
        self.pairs = [(int(i), int(j)) for i, j in pairs]
        self.device = device
        self.precision = precision
        self.dtype = F64 if precision == "float64" else torch.float32
        self.offsets = np.concatenate([[0], np.cumsum(self.widths)]).astype(int).tolist()
        n, nl = self.offsets[-1], len(self.widths)
        self.diag = [torch.zeros(w, w, dtype=F64, device=device) for w in self.widths]
        self.cross = {p: torch.zeros(self.widths[p[0]], self.widths[p[1]], dtype=F64, device=device) for p in self.pairs}
        self.sums = torch.zeros(n, dtype=F64, device=device)
        self.w = torch.zeros(nl, n, dtype=F64, device=device)
        self.nn = torch.zeros(nl, nl, dtype=F64, device=device)
        self.counts = torch.zeros(1, dtype=F64, device=device)  # rows
        self.col_chunks = [column_chunks(w) for w in self.widths]
        self.chunks = int(chunks)
        self.chunk_flats: List[np.ndarray] = []
        self._symmetric = False

    @staticmethod
    def nbytes(widths: Sequence[int], pairs: Sequence[Tuple[int, int]], chunks: int = 0) -> int:
        """Bytes of the statistics (and of the chunks' flat vectors when ``chunks``)."""
        n = sum(widths)
        nl = len(widths)
        values = sum(w * w for w in widths) + sum(widths[i] * widths[j] for i, j in pairs)
        values += n + nl * n + nl * nl + 1
        if chunks:
            values += chunks * sum(flat_length(widths[i], widths[j]) for i, j in pairs)
        return 8 * values

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """A ``[R, C]`` copy in the products' dtype on the statistics' device."""
        c = int(x.shape[-1])
        out = torch.empty(x.shape, dtype=self.dtype, device=self.device)
        out.copy_(x)
        return out.reshape(-1, c)

    def update(self, blocks: Sequence[torch.Tensor]) -> None:
        """Adds one batch: ``blocks[k]`` the ``[R, widths[k]]`` rows of slot ``k``. A NaN or an
        infinity raises :class:`NonFinite` (naming the slot) before anything is added."""
        r = blocks[0].shape[0]
        col_sums = [x.sum(0) for x in blocks]
        finite = torch.stack([torch.isfinite(c).all() for c in col_sums])
        if not bool(finite.all()):  # a NaN or an infinity in the batch: say where, add nothing
            raise NonFinite(int((~finite).nonzero()[0].item()))
        f32 = self.precision != "float64"
        with highest_matmul(self.device, self.precision):
            for k, x in enumerate(blocks):
                d = self.diag[k]
                ch = self.col_chunks[k]
                for c, (s, e) in enumerate(ch):
                    xc = x[:, s:e]
                    for s2, e2 in ch[c:]:
                        if f32:
                            d[s:e, s2:e2] += (xc.T @ x[:, s2:e2]).to(F64)
                        else:
                            d[s:e, s2:e2].addmm_(xc.T, x[:, s2:e2])
            for (i, j), cb in self.cross.items():
                if f32:
                    cb += (blocks[i].T @ blocks[j]).to(F64)
                else:
                    cb.addmm_(blocks[i].T, blocks[j])
        # Reductions in the rows' own dtype (an upcasting reduction is several times slower);
        # in float32 mode the row norms and sums (moments for debiased CKA) are float32 too.
        norms = torch.stack([torch.linalg.vector_norm(x, dim=1).square() for x in blocks], dim=1)
        n32 = norms.T if norms.dtype != F64 else None
        norms = norms.to(F64)  # [R, L]
        for k, x in enumerate(blocks):
            s, e = self.offsets[k], self.offsets[k + 1]
            self.sums[s:e] += col_sums[k].to(F64)
            if n32 is None:
                self.w[:, s:e].addmm_(norms.T, x)
            else:
                self.w[:, s:e] += (n32 @ x).to(F64)
        self.nn.addmm_(norms.T, norms)
        self.counts += r

    # -- after the pass ------------------------------------------------------------------------

    def close(self, chunks_total: int) -> None:
        """End of the pass: with chunks, files the last chunk and empty ones up to
        ``chunks_total`` (chunks that this rank never saw)."""
        if self.chunks:
            while len(self.chunk_flats) < chunks_total:
                self.end_chunk()

    def tensors(self) -> List[torch.Tensor]:
        """What a reduction over ranks sums, in place."""
        if self.chunks:
            return [torch.from_numpy(v) for v in self.chunk_flats]
        return [*self.diag, *self.cross.values(), self.sums, self.w, self.nn, self.counts]

    def after_reduce(self) -> None:
        for v in self.chunk_flats:
            i, j = self.pairs[0]
            v[0], v[1] = self.widths[i], self.widths[j]  # the header's widths were summed

    def _symmetrise(self) -> None:
        if self._symmetric:
            return
        for d in self.diag:
            upper = torch.triu(d)
            d.copy_(upper + torch.triu(d, 1).T)
        self._symmetric = True

    def pair_flat(self, i: int, j: int) -> np.ndarray:
        """The engine's flat statistics of slot pair ``(i, j)`` (a new CPU array)."""
        self._symmetrise()
        wi, wj = self.widths[i], self.widths[j]
        g = np.empty((wi + wj, wi + wj))
        g[:wi, :wi] = self.diag[i].cpu().numpy()
        g[wi:, wi:] = self.diag[j].cpu().numpy()
        c = self.cross[(i, j)] if (i, j) in self.cross else self.cross[(j, i)].T
        c = c.cpu().numpy()
        g[:wi, wi:] = c
        g[wi:, :wi] = c.T
        o = self.offsets
        idx = np.r_[o[i] : o[i + 1], o[j] : o[j + 1]]
        sums = self.sums.cpu().numpy()[idx]
        w = self.w.cpu().numpy()
        nn_ = self.nn.cpu().numpy()
        rows = float(self.counts[0].item())
        return pair_flat(wi, wj, rows, g, sums, w[i, idx], w[j, idx], nn_[i, i], nn_[i, j], nn_[j, j])

    def pair_stats(self, i: int, j: int) -> Stats:
        """The statistics of slot pair ``(i, j)`` (after :meth:`close`)."""
        if self.chunks:
            return sum_chunks(self.chunk_flats, self.widths[i], self.widths[j])
        return Stats.from_flat(self.pair_flat(i, j), self.widths[i], self.widths[j])

    def chunk_stats(self) -> List[Stats]:
        """The statistics of every chunk of the unit's pair, in chunk order."""
        (i, j) = self.pairs[0]
        return [Stats.from_flat(v, self.widths[i], self.widths[j]) for v in self.chunk_flats]

    # -- chunks (one pair per unit) ------------------------------------------------------------

    def end_chunk(self) -> None:
        """Files the current chunk's statistics of the unit's pair and starts the next one."""
        (i, j) = self.pairs[0]
        self.chunk_flats.append(self.pair_flat(i, j))
        for t in (*self.diag, *self.cross.values(), self.sums, self.w, self.nn, self.counts):
            t.zero_()
        self._symmetric = False


class NativePair:
    """One layer pair in the engine's accumulator (CPU): OpenBLAS ``dsyrk`` (float64) or
    ``ssyrk`` (float32 products summed in float64), half the products of ``MᵀM``, arrays read
    in place in any strides; rows wait for a whole block (so that the one-row-per-input layers
    of a batch still make efficient products)."""

    kind = "native"

    def __init__(self, widths: Sequence[int], precision: str, chunks: int = 0) -> None:
        self.widths = [int(w) for w in widths]
        self.pairs = [(0, 1)]
        self.precision = precision
        self.acc: Optional[Accumulator] = Accumulator("nhwc", precision=precision)
        self.chunks = int(chunks)
        self.chunk_flats: List[np.ndarray] = []
        self._flat: Optional[np.ndarray] = None  # the statistics, after close()
        self._stats: Optional[Stats] = None  # ... and as Stats, once asked for (then no flat)

    @staticmethod
    def nbytes(widths: Sequence[int], chunks: int = 0) -> int:
        """Bytes of the statistics (the engine keeps the full (n1+n2)² Gram matrix), of the
        rows waiting for a block (512 rows) and of the chunks' flat vectors."""
        n1, n2 = int(widths[0]), int(widths[1])
        return 8 * (flat_length(n1, n2) * (1 + int(chunks)) + 512 * (n1 + n2))

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """The engine reads ``[B, ..., C]`` float views on the CPU in place."""
        if not x.is_floating_point():
            return x.float()
        if x.device.type != "cpu":
            return x.cpu()
        return x

    def update(self, blocks: Sequence[torch.Tensor]) -> None:
        assert self.acc is not None, "the pass is closed"
        self.acc.update(blocks[0], blocks[1])

    def _current_flat(self) -> np.ndarray:
        assert self.acc is not None, "the pass is closed"
        if self.acc.n1 is None:  # nothing accumulated (this rank, this chunk)
            v = np.zeros(flat_length(*self.widths))
            v[0], v[1] = self.widths
            return v
        return self.acc.to_flat()

    def end_chunk(self) -> None:
        """Files the current chunk's statistics and starts the next one in the same memory
        (a fresh accumulator per chunk faulted in new pages each time)."""
        assert self.acc is not None, "the pass is closed"
        flat = self.acc._take_flat()
        if flat is None:  # nothing accumulated (this rank, this chunk)
            flat = self._current_flat()
        self.chunk_flats.append(flat)

    def close(self, chunks_total: int) -> None:
        """End of the pass (see :meth:`Blocks.close`). The engine's accumulator is released:
        from here on the statistics live in the flat vectors only (one copy, not two)."""
        if self.chunks:
            while len(self.chunk_flats) < chunks_total:
                self.end_chunk()
        else:
            self._flat = self._current_flat()
        self.acc = None

    def tensors(self) -> List[torch.Tensor]:
        """What a reduction over ranks sums, in place (views of the flat vectors)."""
        if self.chunks:
            return [torch.from_numpy(v) for v in self.chunk_flats]
        assert self._flat is not None
        return [torch.from_numpy(self._flat)]

    def after_reduce(self) -> None:
        for v in self.chunk_flats + ([self._flat] if self._flat is not None else []):
            v[0], v[1] = self.widths  # the header's widths were summed over ranks

    def pair_stats(self, i: int, j: int) -> Stats:
        """The pair's statistics (after :meth:`close` and any reduction over ranks). Without
        chunks the flat vector is dropped once they are made (a GPT-2 MLP pair's is 300 MB)."""
        if self.chunks:
            return sum_chunks(self.chunk_flats, *self.widths)
        if self._stats is None:
            assert self._flat is not None
            self._stats = Stats.from_flat(self._flat, *self.widths)
            self._flat = None
        return self._stats

    def chunk_stats(self) -> List[Stats]:
        return [Stats.from_flat(v, *self.widths) for v in self.chunk_flats]


def sum_chunks(flats: Sequence[np.ndarray], n1: int, n2: int) -> Stats:
    """The statistics of all inputs: the sum of the chunks' (in chunk order, as the numpy
    front's ``merge`` does)."""
    total = np.zeros_like(flats[0])
    for v in flats:
        total += v
    return Stats.from_flat(total, n1, n2)
