"""KBLab RixVox in either of the layouts users have: KBLab's own, or parquet with the audio inside.

* KBLab/rixvox (v1, 5,500 h) as KBLab publishes it: `data/{split}_metadata.parquet`
  and `data/{split}/{split}_{n}.tar.gz`. Read by rixvox_archives.py; this is the
  layout a download of the dataset repo gives, and the one chosen whenever a
  `*_metadata.parquet` is present.
* KBLab/rixvox-v2 and re-pushed copies: parquet shards (`data/{split}/*.parquet`,
  `data/{split}-00000-of-00002.parquet`, or the export's
  `default/{split}/NNNN.parquet`) with an `audio` struct column `{bytes, path}`
  (the Hugging Face Audio feature) beside the text and speaker metadata. Read
  by parquet_shards.py. v1-style copies name the speaker by `intressent_id`
  and the observation by `dokid`, `anforande_nummer`, `observation_nr`; v2 uses
  `speaker_id`/`person_id`, `name` and `speech_id`. The speaker key is the
  first stable id present (person ids before names: names collide and change
  with titles).

`splits` picks files by folder name or by the split word in the file name
(splits.py), in both layouts.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from qwen_train.bundle.paths import PathEscape
from qwen_train.prepare import parquet_shards, rixvox_archives
from qwen_train.prepare.records import ImportReject, Item, SourceRow
from qwen_train.prepare.spec import SourceSpec
from qwen_train.prepare.splits import select

SPEAKER_KEYS = ("intressent_id", "speaker_id", "person_id", "riksdagen_id", "speaker", "name")


def _shards(src: SourceSpec) -> list[Path]:
    root = Path(src.path)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(f"rixvox: {root} does not exist; point the source at the dataset's data/ directory")
    shards = sorted(root.rglob("*.parquet"))
    if not shards:
        raise FileNotFoundError(f"rixvox: {root} holds no parquet file; point the source at the dataset's data/ "
                                "directory (KBLab/rixvox: {split}_metadata.parquet and {split}/*.tar.gz)")
    return select(root, shards, src.splits, f"rixvox {root}")


def count(src: SourceSpec, work: Path) -> int:
    if rixvox_archives.is_published_layout(src):
        return rixvox_archives.count(src, work)
    return parquet_shards.count(parquet_shards.base_of(Path(src.path)), _shards(src))


def rows(src: SourceSpec, work: Path, start: int = 0) -> Iterator[Item]:
    if rixvox_archives.is_published_layout(src):
        yield from rixvox_archives.rows(src, work, start)
        return
    root = Path(src.path)
    base = parquet_shards.base_of(root)

    def make(n: int, rec: dict[str, Any], shard: Path, index: int, rel: str) -> Item:
        return _item(n, rec, shard, index, rel, base, src.bleu_floor)

    yield from parquet_shards.walk(root, _shards(src), start, make)


def notes(src: SourceSpec, work: Path) -> dict[str, int]:
    return rixvox_archives.notes(src, work) if rixvox_archives.is_published_layout(src) else {}


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


def _item(n: int, rec: dict[str, Any], shard: Path, index: int, rel: str, base: Path, bleu_floor: float) -> Item:
    orig_id = row_id(rec, f"{shard.stem}-{index}")
    speaker = speaker_of(rec)
    if speaker is None:
        detail = f"{rel} row {index}: no speaker field ({', '.join(SPEAKER_KEYS)})"
        return ImportReject(n, orig_id, "bad_metadata", detail)
    low = rixvox_archives.low_alignment(n, orig_id, rec, bleu_floor, f"{rel} row {index}")
    if low is not None:
        return low
    try:
        ref = parquet_shards.audio_ref(base, shard, rec)
    except PathEscape as exc:
        return ImportReject(n, orig_id, "path_escape", f"{rel} row {index}: {exc}: refused, a corpus stays inside "
                            "its root")
    if ref is None:
        return ImportReject(n, orig_id, "missing_audio", f"{rel} row {index}: no audio bytes or path (the KBLab/"
                            "rixvox layout has no audio column: point the source at the folder holding "
                            "{split}_metadata.parquet and the {split}/ archives)")
    return SourceRow(n=n, orig_id=orig_id, speaker=speaker, text=_text(rec.get("text")), audio=ref,
                     meta=rixvox_archives.row_meta(rec))
