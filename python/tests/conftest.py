"""Shared helpers of the Python test suite: planted activations and the CLI binary."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def planted(
    rows: int = 400,
    shared: int = 6,
    private: int = 4,
    noise: float = 0.0,
    seed: int = 0,
) -> Tuple[np.ndarray, np.ndarray]:
    """Two layers sharing ``shared`` directions (mixed differently on each side) plus
    ``private`` independent neurons each; with ``noise`` = 0 the maximum match at any ε < the
    private neurons' sines is exactly the shared neurons."""
    rng = np.random.default_rng(seed)
    s = rng.standard_normal((rows, shared))
    a = np.concatenate([s @ rng.standard_normal((shared, shared)), rng.standard_normal((rows, private))], axis=1)
    b = np.concatenate([rng.standard_normal((rows, private)), s @ rng.standard_normal((shared, shared))], axis=1)
    if noise:
        a = a + noise * rng.standard_normal(a.shape)
        b = b + noise * rng.standard_normal(b.shape)
    return a, b


def cli_binary() -> Optional[Path]:
    """The `spanmatch` binary built by cargo (release first), or on PATH."""
    env = os.environ.get("SPANMATCH_BIN")
    if env:
        return Path(env)
    for profile in ("release", "debug"):
        p = ROOT / "target" / profile / "spanmatch"
        if p.is_file():
            return p
    found = shutil.which("spanmatch")
    return Path(found) if found else None


@pytest.fixture
def spanmatch_cli() -> Path:
    """The CLI; missing is a failure under CI (the README's test command builds it first)."""
    p = cli_binary()
    if p is None:
        if os.environ.get("CI"):
            pytest.fail("the spanmatch binary is missing: run `cargo build --release` first")
        pytest.skip("the spanmatch binary is not built (cargo build --release)")
    return p
