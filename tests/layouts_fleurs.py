"""FLEURS `sv_se` as google/fleurs's parquet export, in both layouts, beside the same rows as published TSVs.

`folders` is the Hub's parquet branch (`sv_se/validation/0000.parquet`), `names`
the older converter (`sv_se/fleurs-validation-00000-of-00002.parquet`). Both
hold one validation shard of good and corrupt rows, one validation shard that
is not parquet at all, and one test shard. `write_tsv` writes the good rows in
the published layout (`data/sv_se/{split}.tsv` + extracted `audio/{split}/`),
so a test can check that both readers name a recording alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from tests.prepare_layouts import Clip, wav_bytes

Layout = Literal["folders", "names"]
LAYOUTS: tuple[Layout, ...] = ("folders", "names")
GENDER_LABELS = ("MALE", "FEMALE", "OTHER")  # the TSV's words for class labels 0, 1, 2

SCHEMA = pa.schema([
    ("id", pa.int32()), ("num_samples", pa.int32()), ("path", pa.string()),
    ("audio", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
    ("transcription", pa.string()), ("raw_transcription", pa.string()), ("gender", pa.int64()),
    ("lang_id", pa.int64()), ("language", pa.string()), ("lang_group_id", pa.int64()),
])


@dataclass(frozen=True)
class Good:
    """One good recording: `split` as the TSVs spell it (dev, test); audio as bytes, or a wav beside the shard."""

    split: str
    sentence_id: int
    name: str
    clip: Clip
    gender: int
    as_file: bool = False


def good_rows(clips: list[Clip]) -> list[Good]:
    """Four dev rows in bytes (two readers for each of sentences 1010, 1011) and one by path; three test rows."""
    dev = [Good("dev", 1010 + i // 2, f"{9100 + i}.wav", clips[i], i % 2) for i in range(4)]
    dev.append(Good("dev", 1020, "9104.wav", clips[4], 1, as_file=True))
    test = [Good("test", 2000 + i, f"{9200 + i}.wav", clips[5 + i], (i + 1) % 2) for i in range(3)]
    return dev + test


def shard_name(layout: Layout, split: str, k: int, of: int) -> str:
    """Where shard k of a split lies, relative to sv_se/; the export's split is `validation`, the TSVs' `dev`."""
    pq_split = "validation" if split == "dev" else split
    return f"{pq_split}/{k:04d}.parquet" if layout == "folders" else f"fleurs-{pq_split}-{k:05d}-of-{of:05d}.parquet"


def _record(sentence_id: int, path: str | None, audio: dict[str, Any] | None, raw: str | None,
            gender: int = 1) -> dict[str, Any]:
    return {"id": sentence_id, "num_samples": 0, "path": path, "audio": audio,
            "transcription": None if raw is None else raw.lower().strip(".?!"), "raw_transcription": raw,
            "gender": gender, "lang_id": 86, "language": "Swedish", "lang_group_id": 0}


def _good_record(row: Good) -> dict[str, Any]:
    data = None if row.as_file else wav_bytes(row.clip.samples())
    audio = {"bytes": data, "path": row.name if row.as_file else f"{row.split}/{row.name}"}
    rec = _record(row.sentence_id, row.name, audio, row.clip.text, row.gender)
    rec["num_samples"] = len(row.clip.samples())
    return rec


def _bad_records(layout: Layout, clips: list[Clip]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Rows a reader must refuse, each with the reason it must give."""
    nothing = {"bytes": None, "path": None}
    recs = [
        _record(1030, "gone.wav", None, "Hej på dig."),                          # names a wav that is not there
        _record(1031, None, nothing, "Hej på dig igen."),                         # no bytes, no path at all
        _record(1032, "out.wav", {"bytes": None, "path": "/etc/hostname"}, "Ut härifrån."),
        _record(1033, "noise.wav", {"bytes": b"not a wav" * 40, "path": "noise.wav"}, "Bara brus här."),
        _record(1034, "notext.wav", {"bytes": wav_bytes(clips[0].samples()), "path": None}, None),
    ]
    first = shard_name(layout, "dev", 0, 2)
    nameless = f"dev/{Path(first).stem}-6"  # no file name anywhere: the shard's stem and the row's index
    reasons = {"dev/gone": "missing_audio", nameless: "missing_audio", "dev/out": "path_escape",
               "dev/noise": "decode_error", "dev/notext": "bad_metadata"}
    return recs, reasons


def write_parquet(root: Path, layout: Layout, clips: list[Clip]) -> dict[str, str | None]:
    """The export under root/sv_se; returns {orig_id: expected reason or None} for every row and broken shard."""
    lang = root / "sv_se"
    rows = good_rows(clips)
    expect: dict[str, str | None] = {f"{r.split}/{Path(r.name).stem}": None for r in rows}
    bad, reasons = _bad_records(layout, clips)
    expect.update(reasons)
    for split, of in (("dev", 2), ("test", 1)):
        recs = [_good_record(r) for r in rows if r.split == split] + (bad if split == "dev" else [])
        shard = lang / shard_name(layout, split, 0, of)
        shard.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(recs, schema=SCHEMA), shard)
        for r in rows:
            if r.split == split and r.as_file:
                (shard.parent / r.name).write_bytes(r.clip.path.read_bytes())
    broken = lang / shard_name(layout, "dev", 1, 2)
    broken.write_bytes(b"PAR1 cut short by a failed download")
    expect[str(broken.relative_to(root))] = "bad_metadata"
    return expect


def write_tsv(root: Path, clips: list[Clip]) -> None:
    """The good rows in the published layout: data/sv_se/{dev,test}.tsv with extracted audio/{split}/."""
    lang = root / "data" / "sv_se"
    for split in ("dev", "test"):
        chosen = [r for r in good_rows(clips) if r.split == split]
        (lang / "audio" / split).mkdir(parents=True)
        lines = []
        for r in chosen:
            (lang / "audio" / split / r.name).write_bytes(r.clip.path.read_bytes())
            norm = r.clip.text.lower().strip(".?!")
            lines.append("\t".join([str(r.sentence_id), r.name, r.clip.text, norm, norm.replace(" ", "|"),
                                    str(len(r.clip.samples())), GENDER_LABELS[r.gender]]))
        (lang / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
