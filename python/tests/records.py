"""Comparing layer records of the results schema across fronts (a helper of the tests, not a
test module)."""

from __future__ import annotations

import math
from typing import Any, Iterable, List, Mapping, Sequence, Tuple

#: Keys under which every number is a fraction of neurons (mms at each ε, the interval ends of
#: mms, the rotation null's draws and summaries, trained - untrained): computed the same way
#: from the same decisions, so they must be identical, not close.
EXACT_KEYS = ("mms", "centered_mms", "null", "trained_minus_untrained")


def _exact(path: Sequence[Any]) -> bool:
    return any(p in EXACT_KEYS for p in path if isinstance(p, str))


def differences(x: Any, y: Any, tol: float = 1e-10, path: Tuple[Any, ...] = (), skip: Iterable[str] = ()) -> List[str]:
    """Where two JSON values differ: integers, strings, booleans, None and every number under
    :data:`EXACT_KEYS` exactly; other floats within ``tol`` relative to max(1, |x|, |y|).
    ``skip``: keys left out at any depth."""
    skip = tuple(skip)
    out: List[str] = []
    where = "/".join(str(p) for p in path) or "<root>"
    if isinstance(x, Mapping) and isinstance(y, Mapping):
        kx = {k for k in x if k not in skip}
        ky = {k for k in y if k not in skip}
        if kx != ky:
            out.append(f"{where}: keys {sorted(kx ^ ky)} in only one")
        for k in sorted(kx & ky):
            out += differences(x[k], y[k], tol, path + (k,), skip)
        return out
    if isinstance(x, list) and isinstance(y, list):
        if len(x) != len(y):
            return [f"{where}: lengths {len(x)} and {len(y)}"]
        for i, (a, b) in enumerate(zip(x, y)):
            out += differences(a, b, tol, path + (i,), skip)
        return out
    if isinstance(x, float) or isinstance(y, float):
        if isinstance(x, bool) or isinstance(y, bool) or x is None or y is None:
            return [] if x == y else [f"{where}: {x!r} != {y!r}"]
        if _exact(path):
            return [] if x == y else [f"{where}: {x!r} != {y!r} (must be identical)"]
        fx, fy = float(x), float(y)
        if math.isnan(fx) and math.isnan(fy):
            return []
        if abs(fx - fy) <= tol * max(1.0, abs(fx), abs(fy)):
            return []
        return [f"{where}: {fx!r} and {fy!r} differ by {abs(fx - fy):.3g}"]
    return [] if (type(x) is type(y) and x == y) else [f"{where}: {x!r} != {y!r}"]


def assert_records_equal(
    r1: Sequence[Mapping[str, Any]], r2: Sequence[Mapping[str, Any]], tol: float = 1e-10, skip: Iterable[str] = ()
) -> None:
    """Two lists of layer records agree (see :func:`differences`)."""
    diffs = differences(list(r1), list(r2), tol, skip=skip)
    assert not diffs, "\n".join(diffs[:20])
