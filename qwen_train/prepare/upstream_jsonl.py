"""The upstream fine-tuning JSONL: one object per line with `audio`, `text`, `ref_audio`.

This is the shape Qwen3-TTS's `finetuning/` recipe reads, and the shape of our
espeak-ng demo corpus. Paths are relative to the JSONL's directory. Upstream
has no speaker field: rows that share a `ref_audio` share a voice, so the
reference file's stem names the speaker unless a `speaker` field says
otherwise. A declared `ref_audio` that does not exist is `missing_ref_audio`.
The JSONL's directory is the corpus root: an `audio` or `ref_audio` that
resolves outside it (`../`, an absolute path elsewhere, a symlinked file or
directory leading out) is `path_escape`, and nothing outside is read.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgspec

from qwen_train.bundle.paths import PathEscape, resolve_inside
from qwen_train.prepare.records import AudioRef, ImportReject, Item, SourceRow
from qwen_train.prepare.spec import SourceSpec
from qwen_train.safe_read import MiB, read_regular

MANIFEST_LIMIT = 2048 * MiB  # a JSONL line per clip is ~200 bytes: ten million clips


class UpstreamLine(msgspec.Struct):
    audio: str
    text: str
    ref_audio: str | None = None
    speaker: str | None = None
    id: str | None = None


def _lines(src: SourceSpec) -> list[bytes]:
    path = Path(src.path)
    if not path.exists():
        raise FileNotFoundError(f"upstream_jsonl: {path} is not a file; point the source at the .jsonl")
    return read_regular(path, MANIFEST_LIMIT, what="upstream_jsonl corpus manifest").splitlines()


def count(src: SourceSpec, work: Path) -> int:
    return len(_lines(src))


def rows(src: SourceSpec, work: Path, start: int = 0) -> Iterator[Item]:
    base = Path(src.path).parent
    for n, line in enumerate(_lines(src)):
        if n < start:
            continue
        try:
            obj = msgspec.json.decode(line, type=UpstreamLine)
        except msgspec.MsgspecError as exc:
            yield ImportReject(n, f"line{n + 1}", "bad_metadata", f"line {n + 1}: {exc}")
            continue
        yield _item(base, n, obj)


def _item(base: Path, n: int, obj: UpstreamLine) -> Item:
    orig_id = obj.id or Path(obj.audio).stem
    try:
        audio = resolve_inside(base, obj.audio)
        ref = resolve_inside(base, obj.ref_audio) if obj.ref_audio else None
    except PathEscape as exc:
        return ImportReject(n, orig_id, "path_escape", f"line {n + 1}: {exc}: refused, a corpus stays inside its root")
    if not audio.exists():  # a FIFO or device exists: decoding refuses it by name
        return ImportReject(n, orig_id, "missing_audio", f"line {n + 1}: {obj.audio} does not exist")
    speaker = obj.speaker or (Path(obj.ref_audio).stem if obj.ref_audio else "default")
    return SourceRow(
        n=n,
        orig_id=orig_id,
        speaker=speaker,
        text=obj.text,
        audio=AudioRef("file", str(audio)),
        ref_audio=str(ref) if ref else None,
    )
