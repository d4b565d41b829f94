"""Bundle statistics: per source, role and speaker, plus the distributions that drive memory.

The maximum clip duration is a heuristic; these numbers let the operator
check it: the duration distribution, and the code-frame counts (12.5 per
second) that set the talker's sequence length and so its activation memory.
Rejects are counted under their reason per source, and rows left out by a
source's share are counted too: nothing leaves the bundle uncounted. What a
layout held that is no row (RixVox archive members no metadata row names) is
the source's `layout` entry.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import numpy as np

from qwen_train.bundle.manifest import Row
from qwen_train.prepare.records import Reject

DURATION_BINS = (0, 2, 4, 6, 8, 10, 15, 20, 30)


def distribution(values: list[float], digits: int = 3) -> dict[str, float]:
    if not values:
        return {"count": 0}
    arr = np.asarray(values, dtype=np.float64)
    pct = {f"p{p}": round(float(np.percentile(arr, p)), digits) for p in (5, 50, 95, 99)}
    return {"count": len(values), "total": round(float(arr.sum()), digits), "min": round(float(arr.min()), digits),
            **pct, "max": round(float(arr.max()), digits)}


def histogram(values: list[float]) -> dict[str, int]:
    edges = [*DURATION_BINS, float("inf")]
    out: dict[str, int] = {}
    for lo, hi in zip(edges, edges[1:], strict=False):
        label = f"{lo}-{hi}s" if hi != float("inf") else f">{lo}s"
        out[label] = sum(lo <= v < hi for v in values)
    return out


def _group(rows: list[Row]) -> dict[str, Any]:
    durations = [r.duration_s for r in rows]
    return {
        "rows": len(rows),
        "speakers": len({r.speaker_id for r in rows}),
        "hours": round(sum(durations) / 3600, 4),
        "train_rows": sum(r.split == "train" for r in rows),
        "eval_rows": sum(r.split == "eval" for r in rows),
    }


def bundle_stats(
    rows: list[Row],
    rejects: list[Reject],
    imported: dict[str, int],
    unselected: dict[str, int],
    anchors: dict[str, dict[str, Any]],
    notes: dict[str, dict[str, int]] | None = None,
) -> dict[str, Any]:
    by_source: dict[str, list[Row]] = defaultdict(list)
    by_role: dict[str, list[Row]] = defaultdict(list)
    by_speaker: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        by_source[r.source].append(r)
        by_role[r.role].append(r)
        by_speaker[r.speaker_id].append(r)
    reasons: dict[str, Counter[str]] = defaultdict(Counter)
    for rej in rejects:
        reasons[rej.source][rej.reason] += 1
    sources = {}
    for src, count in imported.items():
        src_rows = by_source.get(src, [])
        sources[src] = {
            "imported": count,
            "accepted": len(src_rows),
            "rejected": sum(reasons[src].values()),
            "rejected_by_reason": dict(sorted(reasons[src].items())),
            "unselected_by_share": unselected.get(src, 0),
            "roles": sorted({r.role for r in src_rows}),
            **_group(src_rows),
            "duration_s": distribution([r.duration_s for r in src_rows]),
            "frames": distribution([float(r.frames) for r in src_rows], 1),
            **({"layout": (notes or {})[src]} if (notes or {}).get(src) else {}),
        }
    return {
        "rows": len(rows),
        "train_rows": sum(r.split == "train" for r in rows),
        "eval_rows": sum(r.split == "eval" for r in rows),
        "eval_kinds": dict(sorted(Counter(r.eval_kind for r in rows if r.eval_kind).items())),
        "speakers": len(by_speaker),
        "rejected": len(rejects),
        "duration_s": distribution([r.duration_s for r in rows]),
        "duration_histogram": histogram([r.duration_s for r in rows]),
        "frames": distribution([float(r.frames) for r in rows], 1),
        "max_frames_per_row": max((r.frames for r in rows), default=0),
        "per_source": sources,
        "per_role": {role: _group(rs) for role, rs in sorted(by_role.items())},
        "per_speaker": {
            sid: {**_group(rs), "source": rs[0].source, "role": rs[0].role, "anchor": anchors.get(sid, {})}
            for sid, rs in sorted(by_speaker.items())
        },
    }
