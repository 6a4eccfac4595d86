"""spanmatch.torch under torch.distributed: 2 processes (gloo, CPU), uneven shards, same result."""

from __future__ import annotations

import json
import math
import os
import socket
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("tqdm")
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402
from torch import nn  # noqa: E402

import spanmatch.torch as smt  # noqa: E402

from records import assert_records_equal  # noqa: E402

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")

SIZES = [8, 8, 5, 8, 3, 8, 6]  # batch sizes of the whole data set (7 batches, 46 inputs)


def make(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(6, 8, 3, padding=1, stride=2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 16, 10),
        nn.ReLU(),
    )


def batches():
    g = torch.Generator().manual_seed(7)
    return [(torch.randn(n, 3, 8, 8, generator=g), torch.zeros(n)) for n in SIZES]


def _with_baseline(kw):
    """The scenario's keyword arguments, with ``baseline_pair`` made into two fresh models."""
    kw = dict(kw)
    if kw.pop("baseline_pair", False):
        kw["baseline"] = (make(2), make(3))
    return kw


def run(data, cross: bool, **kw):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return smt.compare(make(0), make(1), data, cross=cross, progress=False, **_with_baseline(kw))


CONTROLS = dict(baseline_pair=True, null="rotate", null_draws=4, bootstrap=30, simple=0.5, top_inputs=3, seed=1)
SCENARIOS = {
    "uneven": ([[0, 1, 2, 3, 4], [5, 6]], False, {}),
    "cross": ([[0, 2, 4, 6], [1, 3, 5]], True, dict(measures=("cka", "one_to_one"))),  # interleaved shards
    "empty-rank": ([[], list(range(7))], False, {}),  # rank 0 sees no batch at all
    "empty-everywhere": ([[], []], False, {}),
    # Contiguous uneven shards; one chunk per batch: the chunks hold the same inputs.
    "controls": ([[0, 1, 2, 3], [4, 5, 6]], False, dict(CONTROLS, chunks=7)),
    # Chunk 1 (batches 3 and 4) straddles the two ranks: summed over them.
    "controls-straddle": ([[0, 1, 2, 3], [4, 5, 6]], False, dict(CONTROLS, chunks=3)),
    "top-empty-rank": ([[], list(range(7))], False, dict(top_inputs=4)),
    # Every pair compared (pool), in several passes within max_memory.
    "cross-pool-budget": ([[0, 2, 4, 6], [1, 3, 5]], True, dict(pool="mean", max_memory=188_000)),
    # A NaN in rank 1's shard (NAN_BATCH): at its first batch (before the ranks agree on the
    # layers), and later in the pass. Every rank must stop with an error, none wait.
    "nan-first": ([[0, 1, 2], [-1, 3, 4]], False, {}),
    "nan-later": ([[0, 1, 2], [3, -1, 4]], False, {}),
}

NAN_BATCH = -1  # shard entry: a batch of NaN images


def nan_batch():
    return (torch.full((4, 3, 8, 8), float("nan")), torch.zeros(4))


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    """Runs every scenario in one process group (one spawn for the whole module)."""
    import warnings

    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        data = batches()
        for name, (shards, cross, kw) in SCENARIOS.items():
            mine = [nan_batch() if i == NAN_BATCH else data[i] for i in shards[rank]]
            a, b = make(0), make(1)
            before = [p.detach().clone() for p in (*a.parameters(), *b.parameters())]
            try:
                r = smt.compare(a, b, mine, cross=cross, progress=False, **_with_baseline(kw))
                out = r.to_dict()
                out["passes"] = r.memory.passes
            except (ValueError, RuntimeError) as e:
                out = {"error": f"{type(e).__name__}: {e}"}
            out["models_unchanged"] = all(
                torch.equal(x, y) for x, y in zip(before, (*a.parameters(), *b.parameters()))
            ) and not any(m._forward_hooks for m in (*a.modules(), *b.modules()))
            with open(os.path.join(out_dir, f"{name}.rank{rank}.json"), "w") as f:
                json.dump(out, f)
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """What each rank returned, per scenario: {scenario: [rank 0's dict, rank 1's dict]}."""
    out_dir = tmp_path_factory.mktemp("ddp")
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    ctx = mp.spawn(_worker, args=(2, free_port(), str(out_dir)), nprocs=2, join=False)
    deadline = time.monotonic() + 150
    while not ctx.join(timeout=1):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.terminate()
            pytest.fail("the distributed workers did not finish within 150 s")
    found = {}
    for name in SCENARIOS:
        found[name] = []
        for r in range(2):
            with open(out_dir / f"{name}.rank{r}.json") as f:
                found[name].append(json.load(f))
    return found


def assert_close(d1, d2, tol=1e-9):
    assert [l["name"] for l in d1["comparisons"][0]["layers"]] == [l["name"] for l in d2["comparisons"][0]["layers"]]
    for l1, l2 in zip(d1["comparisons"][0]["layers"], d2["comparisons"][0]["layers"]):
        assert l1["rows"] == l2["rows"]
        assert l1["shape_a"] == l2["shape_a"]
        for k in ("thresholds_a", "thresholds_b"):
            np.testing.assert_allclose(
                [np.nan if v is None else v for v in l1[k]],
                [np.nan if v is None else v for v in l2[k]],
                atol=tol,
            )
        for m1, m2 in zip(l1["matches"], l2["matches"]):
            assert (m1["eps"], m1["a"], m1["b"], m1["mms"]) == (m2["eps"], m2["a"], m2["b"], m2["mms"])
        for k in ("cka_linear", "cka_linear_debiased"):
            assert math.isclose(l1["measures"][k], l2["measures"][k], rel_tol=tol)


@pytest.mark.parametrize("scenario", ["uneven", "cross", "empty-rank", "cross-pool-budget"])
def test_ddp_equals_single_process(scenario, ranks):
    shards, cross, kw = SCENARIOS[scenario]
    d0, d1 = ranks[scenario]
    assert "error" not in d0, d0
    r = run(batches(), cross, **kw)
    single = r.to_dict()
    single["passes"] = r.memory.passes
    assert d0 == d1  # every rank returns the same result
    assert d0["comparisons"][0]["layers"][0]["rows"] == sum(SIZES) * 64
    assert d0["comparisons"][0]["layers"][0]["shape_a"] == [sum(SIZES), 6, 8, 8]
    assert_close(d0, single)
    assert d0["passes"] == single["passes"]
    if "max_memory" in kw:
        assert d0["passes"] > 1
    if cross:
        c0, cs = d0["cross"], single["cross"]
        assert c0["layers_a"] == cs["layers_a"]
        assert c0["mms"] == cs["mms"]
        assert c0.get("view") == cs.get("view")
        np.testing.assert_allclose(
            np.array(c0["cka_linear"], dtype=float), np.array(cs["cka_linear"], dtype=float), rtol=1e-9
        )
        for k in (cs.get("measures") or {}):
            np.testing.assert_allclose(
                np.array(c0["measures"][k], dtype=float), np.array(cs["measures"][k], dtype=float), rtol=1e-9, atol=1e-12
            )
        if "measures" in kw:
            assert "one_to_one" in c0["measures"]


@pytest.mark.parametrize("scenario", ["nan-first", "nan-later"])
def test_ddp_a_failing_rank_stops_every_rank(scenario, ranks):
    """Rank 1 meets a NaN: it raises the NaN error (naming the model, layer and batch), rank 0
    a RuntimeError naming rank 1 and that message, both at once (before, rank 0 waited in the
    next collective until gloo's timeout); both leave their models as they were, and the
    process group goes on to the next scenario."""
    r0, r1 = ranks[scenario]
    batch = {"nan-first": 0, "nan-later": 1}[scenario]
    assert r1["error"].startswith("ValueError: non-finite value nan in the output of module"), r1
    assert f"model a on rank 1: batch {batch}," in r1["error"], r1
    assert r0["error"].startswith("RuntimeError: rank 1 failed during the pass"), r0
    assert r1["error"].split(": ", 1)[1] in r0["error"]
    assert r0["models_unchanged"] and r1["models_unchanged"]


def test_ddp_no_batch_anywhere(ranks):
    for d in ranks["empty-everywhere"]:
        assert "no batch on any rank" in d.get("error", "")


@pytest.mark.parametrize("scenario", ["controls", "controls-straddle", "top-empty-rank"])
def test_ddp_controls_and_top_inputs_equal_single_process(scenario, ranks):
    """Untrained pair, rotation null, centred, bootstrap intervals (chunks gathered over the
    ranks), simple matches, verdict and top inputs (global indices, lists merged): every field
    of every layer record equals one process over the same batches in rank order (numbers to
    1e-10, mms, interval ends, null draws, indices and verdicts identical)."""
    shards, cross, kw = SCENARIOS[scenario]
    d0, d1 = ranks[scenario]
    assert "error" not in d0, d0
    assert d0 == d1
    data = batches()
    ordered = [data[i] for s in shards for i in s]
    single = run(ordered, cross, **kw).to_dict()
    assert_close(d0, single)
    assert_records_equal(d0["comparisons"][0]["layers"], single["comparisons"][0]["layers"], tol=1e-10)
    for l0 in d0["comparisons"][0]["layers"]:
        top = l0["top_inputs"]
        assert min(min(row) for row in top["a"]["indices"]) >= 0
        assert max(max(row) for row in top["b"]["indices"]) >= SIZES[0]  # from rank 1 too
        if "null" in kw:
            assert l0["verdict"] and "simple" in l0 and l0["untrained"]["intervals"]
            assert l0["intervals"]["chunks"] == kw["chunks"]
