"""spanmatch.dask on a real local cluster of worker processes."""

from __future__ import annotations

import numpy as np
import pytest

import spanmatch
import spanmatch.dask
from conftest import planted

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        processes=True, n_workers=2, threads_per_worker=1, dashboard_address=None, memory_limit="2GiB"
    )
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


def _rel(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.abs(x - y).max() / max(np.abs(y).max(), 1e-300))


def test_dask_equals_in_memory(client) -> None:
    a, b = planted(rows=5003, shared=8, private=5, noise=0.2, seed=3)
    xa = da.from_array(a, chunks=(700, -1))
    xb = da.from_array(b, chunks=(700, -1))
    got = spanmatch.dask.stats(xa, xb, split_every=3)
    ref = spanmatch.Accumulator().update(a, b).finish()
    assert got.rows == 5003 and (got.n1, got.n2) == (13, 13)
    assert _rel(got.gram, ref.gram) < 1e-12
    assert _rel(got.sums, ref.sums) < 1e-12
    r = spanmatch.dask.compare(xa, xb, eps=(0.2, 0.5, 0.9), measures=("cka",))
    m = spanmatch.compare(a, b, eps=(0.2, 0.5, 0.9), measures=("cka",))
    for x, y in zip(r["layer"].matches, m["layer"].matches):
        assert x.a.tolist() == y.a.tolist() and x.b.tolist() == y.b.tolist()
    np.testing.assert_allclose(r["layer"].thresholds_a, m["layer"].thresholds_a, atol=1e-12)
    assert r["layer"].measures["cka_linear_debiased"] == pytest.approx(
        m["layer"].measures["cka_linear_debiased"], abs=1e-12
    )


def test_dask_conv_layout_and_rechunking(client) -> None:
    rng = np.random.default_rng(0)
    a = np.maximum(rng.standard_normal((40, 6, 4, 4)), 0).astype(np.float32)
    b = np.maximum(a[:, ::-1] + 0.3 * rng.standard_normal(a.shape), 0).astype(np.float32)
    xa = da.from_array(a, chunks=(7, 3, 4, 4))      # split channels too: brought to one chunk
    xb = da.from_array(b, chunks=(9, -1, -1, -1))   # other row chunks: aligned to a's
    got = spanmatch.dask.stats(xa, xb)
    ref = spanmatch.Accumulator().update(a, b).finish()
    assert got.rows == 40 * 16
    assert _rel(got.gram, ref.gram) < 1e-12


def test_dask_errors(client) -> None:
    a, b = planted(rows=100)
    with pytest.raises(ValueError, match="100 inputs but b has 99"):
        spanmatch.dask.compare(da.from_array(a), da.from_array(b[:99]))
    with pytest.raises(TypeError, match="expected two dask arrays"):
        spanmatch.dask.compare(a, b)


def test_dask_bootstrap_equals_the_numpy_front(client) -> None:
    """bootstrap on Dask: chunks of consecutive inputs by the engine's rule (not the arrays' own
    row chunks of 700), the same intervals as spanmatch.compare on the same arrays and seed."""
    a, b = planted(rows=3001, shared=8, private=5, noise=0.2, seed=4)
    xa, xb = da.from_array(a, chunks=(700, -1)), da.from_array(b, chunks=(700, -1))
    kw = dict(eps=(0.2, 0.5), measures=("cka",), bootstrap=40, chunks=9, seed=3)
    ri = spanmatch.dask.compare(xa, xb, **kw)["layer"].intervals
    mi = spanmatch.compare(a, b, **kw)["layer"].intervals
    assert (ri["resamples"], ri["chunks"], ri["seed"], ri["level"]) == (40, 9, mi["seed"], mi["level"])
    assert ri["mms"] == mi["mms"]
    measures = [k for k in mi if k not in ("level", "resamples", "chunks", "seed", "mms")]
    assert sorted(measures) == sorted(k for k in ri if k not in ("level", "resamples", "chunks", "seed", "mms"))
    assert "cka_linear" in measures
    for k in measures:
        assert ri[k]["lo"] == pytest.approx(mi[k]["lo"], abs=1e-12), k
        assert ri[k]["hi"] == pytest.approx(mi[k]["hi"], abs=1e-12), k
    # A real interval, not a point; and the chunks' sum is the whole data.
    assert mi["cka_linear"]["hi"] > mi["cka_linear"]["lo"] + 1e-4
    parts = spanmatch.dask.chunk_stats(xa, xb, 9)
    bounds = [(c * 3001 + 8) // 9 for c in range(9)] + [3001]
    assert [p.rows for p in parts] == [hi - lo for lo, hi in zip(bounds, bounds[1:])]
    assert sum(p.rows for p in parts) == 3001
    with pytest.raises(ValueError, match="3002 chunks for the bootstrap, but 3001 inputs"):
        spanmatch.dask.chunk_stats(xa, xb, 3002)
