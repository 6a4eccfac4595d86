#!/usr/bin/env python3
"""Print the README's per-layer table of a `spanmatch reproduce` run (Markdown) from its results.json.

    python3 scripts/readme_table.py spanmatch-report/results.json

Columns: mms at ε = 0.25 (mean ± s.d. over the trained seed pairs) and at ε = 0.5 with the envelope
of the 95% bootstrap intervals, the centred mms, the untrained baseline, trained minus untrained,
the rotation null, the shuffled-images null, the simple matches at their ε (mean number per
trained pair, and the largest), linear CKA and the verdict (docs/controls.md; "mixed" when the
pairs disagree). Reads results schema version 3 (docs/results-schema.md); for an older
results.json, convert it first: ``spanmatch.Result.from_json(old).to_json(new)``. Standard
library only.
"""

from __future__ import annotations

import json
import statistics
import sys
from typing import Any, Dict, List, Optional


def mean(xs: List[float]) -> Optional[float]:
    return statistics.fmean(xs) if xs else None


def fmt(x: Optional[float], signed: bool = False) -> str:
    if x is None:
        return "—"
    s = f"{x:+.3f}" if signed else f"{x:.3f}"
    return s.replace("-", "−")


def mms(l: Dict[str, Any], i: int) -> float:
    return l["matches"][i]["mms"]


def main(path: str) -> None:
    with open(path, encoding="utf-8") as f:
        r: Dict[str, Any] = json.load(f)
    if r.get("schema_version") != 3:
        sys.exit(
            f"{path}: results schema_version {r.get('schema_version')!r}; this script reads version 3 "
            "(convert with spanmatch.Result.from_json(path).to_json(new_path))"
        )
    eps = r["eps"]
    i25 = eps.index(0.25) if 0.25 in eps else 0
    i50 = eps.index(0.5) if 0.5 in eps else len(eps) - 1
    by_kind: Dict[str, List[Dict[str, Any]]] = {}
    for c in r["comparisons"]:
        by_kind.setdefault(c["kind"], []).append(c)

    def layers(kind: str, name: str) -> List[Dict[str, Any]]:
        return [l for c in by_kind.get(kind, []) for l in c["layers"] if l["name"] == name]

    simple_eps = next(
        (l["simple"]["eps"] for c in by_kind.get("pair", []) for l in c["layers"] if l.get("simple")),
        None,
    )
    head = [
        "layer", "kind", "neurons", "rows", f"mms ε={eps[i25]:g}", f"mms ε={eps[i50]:g} [95% interval]",
        f"centred ε={eps[i50]:g}", f"untrained ε={eps[i50]:g}", "trained − untrained",
        f"rotation null ε={eps[i50]:g}", f"shuffled null ε={eps[i50]:g}",
    ]
    if simple_eps is not None:
        head.append(f"simple matches ε={simple_eps:g} (largest)")
    head += ["linear CKA", "verdict"]
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join(["---"] * 2 + ["---:"] * (len(head) - 3) + ["---"]) + "|")
    for info in r["layers"]:
        name = info["name"]
        pairs = layers("pair", name)
        untrained = layers("untrained", name)
        nulls = layers("null", name)
        m25 = [mms(l, i25) for l in pairs]
        m50 = [mms(l, i50) for l in pairs]
        iv = [l["intervals"]["mms"][i50] for l in pairs if l.get("intervals") and l["intervals"]["mms"][i50]]
        interval = f" [{min(b['lo'] for b in iv):.3f}, {max(b['hi'] for b in iv):.3f}]" if iv else ""
        centred = [mms(l["centered"], i50) for l in pairs if l.get("centered")]
        u50 = [l["untrained"]["mms"][i50] for l in pairs if l.get("untrained")] or [mms(l, i50) for l in untrained]
        rot = [l["null"]["per_eps"][i50]["mean"] for l in pairs if l.get("null")]
        cka = [l["measures"]["cka_linear"] for l in pairs if l.get("measures") and "cka_linear" in l["measures"]]
        words = sorted({l["verdict"] for l in pairs if l.get("verdict")})
        verdict = words[0] if len(words) == 1 else (f"mixed ({', '.join(words)})" if words else "—")
        sd = f" ± {statistics.stdev(m25):.3f}" if len(m25) > 1 else ""
        row = [
            name, info["kind"], str(info["neurons"]), f"{info['rows']:,}",
            fmt(mean(m25)) + sd, fmt(mean(m50)) + interval, fmt(mean(centred)), fmt(mean(u50)),
            fmt(mean(m50) - mean(u50), signed=True) if m50 and u50 else "—",
            fmt(mean(rot)), fmt(mean([mms(l, i50) for l in nulls])),
        ]
        if simple_eps is not None:
            s = [l["simple"] for l in pairs if l.get("simple")]
            count = mean([x["count"] for x in s])
            largest = max((x["largest"] for x in s), default=0)
            row.append(f"{count:.0f} ({largest})" if count is not None else "—")
        row += [fmt(mean(cka)), verdict]
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: scripts/readme_table.py RESULTS_JSON")
    main(sys.argv[1])
