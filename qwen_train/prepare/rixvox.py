"""KBLab RixVox: Riksdag speech in parquet shards with per-row speaker metadata.

Layout as the Hub serves it (`data/{split}/*.parquet`, or the parquet export
`default/{split}/NNNN.parquet`): one row per observation (up to 30 s, 16 kHz
mono), an `audio` struct column `{bytes, path}` (the Hugging Face Audio
feature: encoded file bytes, or a path relative to the shard), `text`, and
speaker metadata. RixVox v1 names the speaker by `intressent_id` (Riksdag
person id) and `speaker`, and the observation by `dokid`, `anforande_nummer`,
`observation_nr`; v2 uses `speaker_id`/`person_id`, `name` and `speech_id`.
The speaker key is the first stable id present (person ids before names:
names collide and change with titles).

Shards are read in sorted order, one record batch at a time; a resumed window
skips whole shards by their row count in the parquet footer, never reading
the audio bytes it does not need. A shard that cannot be opened is one
`bad_metadata` reject naming the file; one that is not a regular file (a FIFO
would block the parquet reader) is never opened. A shard or an audio path
that resolves outside the dataset root is `path_escape`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from qwen_train.bundle.paths import PathEscape, resolve_inside
from qwen_train.prepare.records import AudioRef, ImportReject, Item, RejectReason, SourceRow
from qwen_train.prepare.spec import SourceSpec

SPEAKER_KEYS = ("intressent_id", "speaker_id", "person_id", "riksdagen_id", "speaker", "name")
META_KEYS = ("speaker", "name", "party", "gender", "birth_year", "electoral_district", "district")
BATCH_ROWS = 64


def _shards(src: SourceSpec) -> list[Path]:
    root = Path(src.path)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(f"rixvox: {root} does not exist; point the source at the dataset's data/ directory")
    shards = sorted(root.rglob("*.parquet"))
    if src.splits:
        shards = [p for p in shards if any(part in src.splits for part in p.relative_to(root).parts[:-1])]
    return shards


def _base(src: SourceSpec) -> Path:
    """The dataset root every shard and audio path must stay inside (a single shard's directory)."""
    root = Path(src.path)
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


def _num_rows(base: Path, shard: Path) -> int | None:
    if shard_problem(base, shard) is not None:
        return None
    try:
        return int(pq.ParquetFile(shard).metadata.num_rows)
    except Exception:  # noqa: BLE001 - any unreadable footer makes the shard one reject
        return None


def count(src: SourceSpec, work: Path) -> int:
    return sum(_num_rows(_base(src), s) or 1 for s in _shards(src))


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def row_id(rec: dict[str, Any], fallback: str) -> str:
    """The publisher's observation id, so a row can be traced back to the Riksdag record."""
    v1 = [rec.get(k) for k in ("dokid", "anforande_nummer", "observation_nr")]
    if all(x is not None for x in v1):
        return "-".join(str(x) for x in v1)
    if rec.get("speech_id") is not None:
        tail = rec.get("chunk_id", rec.get("start"))
        return f"{rec['speech_id']}" + (f"-{tail}" if tail is not None else "")
    audio = rec.get("audio")
    if isinstance(audio, dict) and audio.get("path"):
        return Path(str(audio["path"])).stem
    return fallback


def speaker_of(rec: dict[str, Any]) -> str | None:
    for key in SPEAKER_KEYS:
        value = _text(rec.get(key))
        if value:
            return value
    return None


def _audio_ref(base: Path, shard: Path, named: str) -> AudioRef:
    """A file the record names (absolute, or relative to its shard), once it resolves inside the root."""
    path = Path(named)
    return AudioRef("file", str(resolve_inside(base, path if path.is_absolute() else shard.parent / path)))


def _item(n: int, rec: dict[str, Any], shard: Path, index: int, rel: str, base: Path) -> Item:
    orig_id = row_id(rec, f"{shard.stem}-{index}")
    speaker = speaker_of(rec)
    if speaker is None:
        detail = f"{rel} row {index}: no speaker field ({', '.join(SPEAKER_KEYS)})"
        return ImportReject(n, orig_id, "bad_metadata", detail)
    audio = rec.get("audio")
    ref: AudioRef | None = None
    try:
        if isinstance(audio, dict) and audio.get("bytes"):
            ref = AudioRef("bytes", data=bytes(audio["bytes"]))
        elif isinstance(audio, dict) and audio.get("path"):
            ref = _audio_ref(base, shard, str(audio["path"]))
        elif isinstance(rec.get("path"), str):
            ref = _audio_ref(base, shard, rec["path"])
    except PathEscape as exc:
        return ImportReject(n, orig_id, "path_escape", f"{rel} row {index}: {exc}: refused, a corpus stays inside "
                            "its root")
    if ref is None:
        return ImportReject(n, orig_id, "missing_audio", f"{rel} row {index}: no audio bytes or path")
    meta = {k: _text(rec.get(k)) for k in META_KEYS if rec.get(k) is not None}
    return SourceRow(n=n, orig_id=orig_id, speaker=speaker, text=_text(rec.get("text")), audio=ref, meta=meta)


def rows(src: SourceSpec, work: Path, start: int = 0) -> Iterator[Item]:
    root, base = Path(src.path), _base(src)
    n = 0
    for shard in _shards(src):
        rel = str(shard.relative_to(root)) if shard != root else shard.name
        total = _num_rows(base, shard)
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
                    yield _item(n, rec, shard, index, rel, base)
                n += 1
                index += 1
