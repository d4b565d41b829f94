"""KTH Waxholm: `.smp` speech files with `.smp.mix` label files, as KTH ships them.

Layout (the corpus README): `fp20NN/fp20NN.S.UU.smp`, the speaker coded by the
two digits after `fp20`. An `.smp` file starts with a 1024-byte text header of
`key=value ; comment` lines closed by a line holding `=`; the signal follows as
16-bit samples, big-endian (`msb=first`), at `sftot` Hz (16 kHz) and `nchans`
channels. The orthographic transcript is the line after `TEXT:` in the `.mix`
file, written in 7-bit Swedish ASCII (ISO 646-SE): `{` ä, `}` å, `|` ö and
`[` Ä, `]` Å, `\\` Ö. Files without a label file "should not be used for
training or testing" (README): they are rejected as `missing_label`. A file
(or the directory holding it) that resolves outside the corpus root is
`path_escape`; a body that ends inside a sample is `truncated`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from qwen_train.bundle.paths import PathEscape, resolve_inside
from qwen_train.prepare.audio import TruncatedAudio, read_audio_file
from qwen_train.prepare.records import AudioRef, ImportReject, Item, SourceRow
from qwen_train.prepare.spec import SourceSpec
from qwen_train.safe_read import MiB, read_regular

HEADER_BYTES = 1024
LABEL_LIMIT = 1 * MiB  # a .mix label is a transcript and a phone alignment: a few KiB
_ISO646_SE = str.maketrans({"{": "ä", "}": "å", "|": "ö", "[": "Ä", "]": "Å", "\\": "Ö"})
_SPEAKER = re.compile(r"fp20(\d\d)")


class SmpError(ValueError):
    """An .smp file whose header or body cannot be read; the message names the field."""


def parse_smp_header(raw: bytes) -> dict[str, str]:
    """`key=value ; comment` lines up to the line holding only `=`."""
    fields: dict[str, str] = {}
    text = raw[:HEADER_BYTES].decode("latin-1")
    for line in text.splitlines():
        body = line.split(";", 1)[0].strip().strip("\x00")
        if body == "=":
            return fields
        if "=" in body:
            key, value = body.split("=", 1)
            fields[key.strip()] = value.strip()
    raise SmpError("header has no closing '=' line in its first 1024 bytes: not a Waxholm .smp file")


def read_smp(path: Path) -> tuple[np.ndarray, int]:
    """(frames, channels) float32 in [-1, 1) and the sampling rate."""
    raw = read_audio_file(path)
    if len(raw) < HEADER_BYTES:
        raise SmpError(f"{len(raw)} bytes, shorter than the 1024-byte header")
    header = parse_smp_header(raw)
    if header.get("file", "samp") != "samp":
        raise SmpError(f"file={header.get('file')!r}, expected 'samp' (a sampled signal)")
    try:
        rate = int(header["sftot"])
        channels = int(header.get("nchans", "1"))
    except (KeyError, ValueError):
        raise SmpError("header lacks a numeric sftot (sampling frequency) or nchans") from None
    order = {"first": ">", "last": "<"}.get(header.get("msb", "first"))
    if order is None or rate <= 0 or channels <= 0:
        raise SmpError(f"unsupported header msb={header.get('msb')!r} sftot={rate} nchans={channels}")
    body = raw[HEADER_BYTES:]
    if len(body) % (2 * channels):
        raise TruncatedAudio(f"the body is {len(body)} bytes, which ends inside a sample ({channels} channel(s) of "
                             "16 bits): the file is cut short; fetch it again")
    samples = np.frombuffer(body, dtype=f"{order}i2").reshape(-1, channels)
    return samples.astype(np.float32) / 32768.0, rate


def mix_text(mix: str) -> str | None:
    """The orthographic line after `TEXT:`, decoded from ISO 646-SE, spacing of punctuation tidied."""
    lines = mix.splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith("TEXT:"):
            inline = line.split("TEXT:", 1)[1].strip()
            text = inline or next((x.strip() for x in lines[i + 1 :] if x.strip()), "")
            text = re.sub(r"\s+([.,?!])", r"\1", text.translate(_ISO646_SE))
            return text
    return None


def speaker_of(path: Path) -> str:
    match = _SPEAKER.search(path.name)
    return f"fp20{match.group(1)}" if match else path.parent.name


def _files(root: Path) -> list[Path]:
    if not root.is_dir():
        raise FileNotFoundError(f"waxholm: {root} is not a directory; point the source at the corpus root")
    return sorted(root.rglob("*.smp"))


def count(src: SourceSpec, work: Path) -> int:
    return len(_files(Path(src.path)))


def rows(src: SourceSpec, work: Path, start: int = 0) -> Iterator[Item]:
    root = Path(src.path)
    for n, smp in enumerate(_files(root)):
        if n < start:
            continue
        yield _item(root, n, smp)


def _item(root: Path, n: int, smp: Path) -> Item:
    orig_id = smp.name[: -len(".smp")]
    label = smp.with_name(smp.name + ".mix")
    rel = smp.relative_to(root)
    try:
        audio = resolve_inside(root, smp)
        if not label.exists():
            return ImportReject(n, orig_id, "missing_label", f"{rel}: no {label.name}; unlabelled files are unusable")
        raw = read_regular(resolve_inside(root, label), LABEL_LIMIT, what="waxholm label")
    except PathEscape as exc:
        return ImportReject(n, orig_id, "path_escape", f"{rel}: {exc}: refused, a corpus stays inside its root")
    except (ValueError, OSError) as exc:  # UnsafeFile: a FIFO, a device or an oversized file named as a label
        return ImportReject(n, orig_id, "bad_metadata", f"{rel}.mix: {exc}")
    text = mix_text(raw.decode("latin-1"))
    if text is None:
        return ImportReject(n, orig_id, "bad_metadata", f"{rel}.mix has no TEXT: line")
    return SourceRow(n=n, orig_id=orig_id, speaker=speaker_of(smp), text=text, audio=AudioRef("smp", str(audio)))
