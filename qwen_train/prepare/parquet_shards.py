"""Parquet shards with a Hugging Face `Audio` column, walked in order and resumable without reading audio.

RixVox-v2, re-pushed RixVox copies and FLEURS's parquet export all store a row's
audio as the `Audio` feature's struct `{bytes, path}`: the encoded file, or a
path relative to the shard. Shards are read in sorted order, one record batch
at a time; a resumed window skips whole shards by the row count in their
footer, never reading audio it does not need. A shard that cannot be opened is
one `bad_metadata` reject naming the file; one that is not a regular file (a
FIFO would block the parquet reader) is never opened. A shard or an audio path
that resolves outside the dataset root is `path_escape`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from qwen_train.bundle.paths import PathEscape, resolve_inside
from qwen_train.prepare.records import AudioRef, ImportReject, Item, RejectReason

BATCH_ROWS = 64

# (n, record, shard, index in shard, shard's name relative to the root) -> one item
MakeItem = Callable[[int, dict[str, Any], Path, int, str], Item]


def base_of(root: Path) -> Path:
    """The dataset root every shard and audio path must stay inside (a single shard's directory)."""
    return root if root.is_dir() else root.parent


def shard_problem(base: Path, shard: Path) -> tuple[RejectReason, str] | None:
    """Why a shard must not be opened (outside the root, or not a regular file), or None."""
    try:
        real = resolve_inside(base, shard)
    except PathEscape as exc:
        return "path_escape", f"{exc}: refused, a corpus stays inside its root"
    if not real.is_file():  # the resolved target: a FIFO or a device here is never handed to the parquet reader
        return "bad_metadata", f"{shard.name} is not a regular file: refused"
    return None


def num_rows(base: Path, shard: Path) -> int | None:
    if shard_problem(base, shard) is not None:
        return None
    try:
        return int(pq.ParquetFile(shard).metadata.num_rows)
    except Exception:  # noqa: BLE001 - any unreadable footer makes the shard one reject
        return None


def count(base: Path, shards: list[Path]) -> int:
    """Rows a walk yields: a shard's footer count, or 1 for a shard that is one reject."""
    return sum(num_rows(base, s) or 1 for s in shards)


def audio_ref(base: Path, shard: Path, rec: dict[str, Any]) -> AudioRef | None:
    """The row's audio: the struct's bytes, else its path (or a top-level `path`), resolved inside the root.

    PathEscape when a named path leads out; None when the row names no audio at all.
    """
    audio = rec.get("audio")
    if isinstance(audio, dict) and audio.get("bytes"):
        return AudioRef("bytes", data=bytes(audio["bytes"]))
    named = audio.get("path") if isinstance(audio, dict) else None
    if not named and isinstance(rec.get("path"), str):
        named = rec["path"]
    if not named:
        return None
    path = Path(str(named))
    return AudioRef("file", str(resolve_inside(base, path if path.is_absolute() else shard.parent / path)))


def walk(root: Path, shards: list[Path], start: int, make: MakeItem) -> Iterator[Item]:
    """Every shard's rows from position `start` on, numbered across shards in order."""
    base = base_of(root)
    n = 0
    for shard in shards:
        rel = str(shard.relative_to(root)) if shard != root else shard.name
        total = num_rows(base, shard)
        if total is None:
            if n >= start:
                reason, detail = shard_problem(base, shard) or ("bad_metadata", "not a readable parquet file; "
                                                                "re-download it")
                yield ImportReject(n, rel, reason, f"{rel}: {detail}")
            n += 1
            continue
        if n + total <= start:
            n += total
            continue
        index = 0
        for batch in pq.ParquetFile(shard).iter_batches(batch_size=BATCH_ROWS):
            for rec in batch.to_pylist():
                if n >= start:
                    yield make(n, rec, shard, index, rel)
                n += 1
                index += 1
