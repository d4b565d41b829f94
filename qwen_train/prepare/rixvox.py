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
`bad_metadata` reject naming the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from qwen_train.prepare.records import AudioRef, ImportReject, Item, SourceRow
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


def _num_rows(shard: Path) -> int | None:
    try:
        return int(pq.ParquetFile(shard).metadata.num_rows)
    except Exception:  # noqa: BLE001 - any unreadable footer makes the shard one reject
        return None


def count(src: SourceSpec, work: Path) -> int:
    return sum(_num_rows(s) or 1 for s in _shards(src))


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


def _item(n: int, rec: dict[str, Any], shard: Path, index: int, rel: str) -> Item:
    orig_id = row_id(rec, f"{shard.stem}-{index}")
    speaker = speaker_of(rec)
    if speaker is None:
        detail = f"{rel} row {index}: no speaker field ({', '.join(SPEAKER_KEYS)})"
        return ImportReject(n, orig_id, "bad_metadata", detail)
    audio = rec.get("audio")
    ref: AudioRef | None = None
    if isinstance(audio, dict) and audio.get("bytes"):
        ref = AudioRef("bytes", data=bytes(audio["bytes"]))
    elif isinstance(audio, dict) and audio.get("path"):
        path = Path(str(audio["path"]))
        ref = AudioRef("file", str(path if path.is_absolute() else shard.parent / path))
    elif isinstance(rec.get("path"), str):
        ref = AudioRef("file", str(shard.parent / rec["path"]))
    if ref is None:
        return ImportReject(n, orig_id, "missing_audio", f"{rel} row {index}: no audio bytes or path")
    meta = {k: _text(rec.get(k)) for k in META_KEYS if rec.get(k) is not None}
    return SourceRow(n=n, orig_id=orig_id, speaker=speaker, text=_text(rec.get("text")), audio=ref, meta=meta)


def rows(src: SourceSpec, work: Path, start: int = 0) -> Iterator[Item]:
    root = Path(src.path)
    n = 0
    for shard in _shards(src):
        rel = str(shard.relative_to(root)) if shard != root else shard.name
        total = _num_rows(shard)
        if total is None:
            if n >= start:
                yield ImportReject(n, rel, "bad_metadata", f"{rel}: not a readable parquet file; re-download it")
            n += 1
            continue
        if n + total <= start:
            n += total
            continue
        index = 0
        for batch in pq.ParquetFile(shard).iter_batches(batch_size=BATCH_ROWS):
            for rec in batch.to_pylist():
                if n >= start:
                    yield _item(n, rec, shard, index, rel)
                n += 1
                index += 1
