"""The upstream fine-tuning JSONL: one object per line with `audio`, `text`, `ref_audio`.

This is the shape Qwen3-TTS's `finetuning/` recipe reads, and the shape of our
espeak-ng demo corpus. Relative paths are relative to the JSONL's directory.
Upstream has no speaker field: rows that share a `ref_audio` share a voice, so
the reference file's stem names the speaker unless a `speaker` field says
otherwise. A declared `ref_audio` that does not exist is `missing_ref_audio`.
The corpus root is the source's `root` (`bundle build --root`), by default the
JSONL's directory: formatting scripts often write absolute paths to audio kept
elsewhere, and those are read when they lie inside the root. An `audio` or
`ref_audio` that resolves outside it (`../`, an absolute path elsewhere, a
symlinked file or directory leading out) is `path_escape`, its detail naming
the root and how to declare another, and nothing outside is read.
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
# Said with every path_escape: where the corpus's audio lies is the user's to declare, by one of these.
ROOT_OPTIONS = "declare another root with the source's `root` (prepare spec) or `--root` (qwen-train bundle build)"


class UpstreamLine(msgspec.Struct):
    audio: str
    text: str
    ref_audio: str | None = None
    speaker: str | None = None
    id: str | None = None


def corpus_root(src: SourceSpec) -> Path:
    """The declared root, else the JSONL's directory; a declared one that is no directory stops the source,
    since every row would otherwise be refused one by one."""
    if src.root is None:
        return Path(src.path).parent
    root = Path(src.root)
    if not root.is_dir():
        raise FileNotFoundError(f"upstream_jsonl: root {root} is not a directory; set the source's `root` "
                                "(`--root` for bundle build) to the directory the corpus's audio lies in")
    return root


def _lines(src: SourceSpec) -> list[bytes]:
    path = Path(src.path)
    if not path.exists():
        raise FileNotFoundError(f"upstream_jsonl: {path} is not a file; point the source at the .jsonl")
    corpus_root(src)
    return read_regular(path, MANIFEST_LIMIT, what="upstream_jsonl corpus manifest").splitlines()


def count(src: SourceSpec, work: Path) -> int:
    return len(_lines(src))


def rows(src: SourceSpec, work: Path, start: int = 0) -> Iterator[Item]:
    base, root = Path(src.path).parent, corpus_root(src)
    for n, line in enumerate(_lines(src)):
        if n < start:
            continue
        try:
            obj = msgspec.json.decode(line, type=UpstreamLine)
        except msgspec.MsgspecError as exc:
            yield ImportReject(n, f"line{n + 1}", "bad_metadata", f"line {n + 1}: {exc}")
            continue
        yield _item(root, base, n, obj)


def _item(root: Path, base: Path, n: int, obj: UpstreamLine) -> Item:
    orig_id = obj.id or Path(obj.audio).stem
    try:
        audio = resolve_inside(root, obj.audio, base)
        ref = resolve_inside(root, obj.ref_audio, base) if obj.ref_audio else None
    except PathEscape as exc:
        return ImportReject(n, orig_id, "path_escape",
                            f"line {n + 1}: {exc}: refused, a corpus stays inside its root; {ROOT_OPTIONS}")
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
