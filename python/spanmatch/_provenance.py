"""What a results file records to repeat it (``provenance``, docs/results-schema.md): the engine
fills the version, the front, the seeds and the CPU; fronts and users add what they know."""

from __future__ import annotations

import json
from typing import Any, Dict, Mapping, MutableMapping, Optional

__all__ = ["RESERVED", "merge"]

#: Fields the engine records itself; a user's ``provenance=`` cannot replace them.
RESERVED = ("spanmatch_version", "front", "seeds", "cpu")


def merge(report: MutableMapping[str, Any], given: Optional[Mapping[str, Any]], inputs: Optional[int] = None) -> None:
    """Adds ``given`` (a user's ``provenance=``) and the number of ``inputs`` (when known) to
    ``report["provenance"]``, in place. ``datasets`` is a list of ``{"name", "sha256"}`` (or a
    dict name -> sha256), appended to those recorded; ``inputs`` an integer; any other field is
    kept as given (JSON values)."""
    prov: Dict[str, Any] = report.setdefault("provenance", {})
    if inputs is not None and prov.get("inputs") is None:
        prov["inputs"] = int(inputs)
    if not given:
        return
    if not isinstance(given, Mapping):
        raise TypeError(f"provenance: expected a dict of fields, got {type(given).__name__}")
    for key, value in given.items():
        if key in RESERVED:
            raise ValueError(
                f"provenance: '{key}' is recorded by spanmatch itself; give your own under another name"
            )
        if key == "datasets":
            items = [{"name": k, "sha256": v} for k, v in value.items()] if isinstance(value, Mapping) else list(value)
            for d in items:
                if not (isinstance(d, Mapping) and isinstance(d.get("name"), str) and isinstance(d.get("sha256"), str)):
                    raise ValueError(
                        "provenance: datasets must be a list of {'name': str, 'sha256': str} (or a dict name -> sha256)"
                    )
            prov.setdefault("datasets", []).extend({"name": d["name"], "sha256": d["sha256"]} for d in items)
        elif key == "inputs":
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"provenance: inputs must be a non-negative integer, got {value!r}")
            prov["inputs"] = value
        else:
            try:
                json.dumps(value)
            except (TypeError, ValueError):
                raise TypeError(f"provenance: '{key}' is not JSON serialisable ({type(value).__name__})") from None
            prov[key] = value
