"""KTH Waxholm: `.smp` speech files with `.smp.mix` label files, as KTH ships them, or `.wav` copies.

Layout (the corpus README): `fp20NN/fp20NN.S.UU.smp`, the speaker coded by the
two digits after `fp20`. Some users convert each `.smp` to a `.wav` once
(`fp20NN.S.UU.wav`, or `fp20NN.S.UU.smp.wav`) and keep the `.smp.mix` labels
beside them; such a `.wav` stands in for its `.smp` when no `.smp` is there
(an `.smp` wins: it is the original), with the same id, speaker and label.

An `.smp` file starts with a 1024-byte text header of `key=value` lines closed
by a line holding `=`. KTH's own tools (Snack) write CRLF lines and pad the
rest of the 1024 bytes with NULs; older files use LF lines with `; comments`.
The signal starts at byte 1024 in both: Snack takes the header as a fixed 1024
bytes and carries no offset field, and the HF loading script's
`soundfile.read(..., format="RAW", start=512)` counts frames, not bytes, so its
512 mono 16-bit frames are the same 1024 bytes. Samples are 16-bit,
big-endian unless `msb=last`, at `sftot` Hz (16 kHz) and `nchans` channels.
The transcript is in the `.mix` file (waxholm_labels.py: ISO 646-SE text, noise
markers stripped and counted). Files without a label file "should not be used
for training or testing" (README): they are `missing_label`. A label that is
mostly noise markers (over the source's `max_noise_ratio`) is `mostly_noise`.
A file (or the directory holding it) that resolves outside the corpus root is
`path_escape`; a body that ends inside a sample is `truncated`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qwen_train.bundle.paths import PathEscape, resolve_inside
from qwen_train.prepare.audio import TruncatedAudio, read_audio_file
from qwen_train.prepare.records import AudioKind, AudioRef, ImportReject, Item, SourceRow
from qwen_train.prepare.spec import SourceSpec
from qwen_train.prepare.waxholm_labels import Label, parse_mix
from qwen_train.prepare.waxholm_labels import mix_text as mix_text  # re-exported: callers read labels from here
from qwen_train.safe_read import MiB, read_regular

HEADER_BYTES = 1024
LABEL_LIMIT = 1 * MiB  # a .mix label is a transcript and a phone alignment: a few KiB
_SPEAKER = re.compile(r"fp20(\d\d)")
# What may stand for an utterance, best first: the original, then a .wav converted from it.
_AUDIO_SUFFIXES: tuple[tuple[str, AudioKind], ...] = ((".smp", "smp"), (".smp.wav", "file"), (".wav", "file"))
EXPECTED_LAYOUT = ("fpNNNN/fpNNNN.S.UU.smp files with fpNNNN.S.UU.smp.mix labels beside them, or .wav files "
                   "converted from them (fpNNNN.S.UU.wav or fpNNNN.S.UU.smp.wav) beside the same .smp.mix labels")


class SmpError(ValueError):
    """An .smp file whose header or body cannot be read; the message names the field."""


def parse_smp_header(raw: bytes) -> dict[str, str]:
    """`key=value` lines (CRLF or LF, `; comments` allowed) up to the line holding only `=`."""
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
    """(frames, channels) float32 in [-1, 1) and the sampling rate; the body starts at byte 1024."""
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


def speaker_of(path: Path) -> str:
    match = _SPEAKER.search(path.name)
    return f"fp20{match.group(1)}" if match else path.parent.name


@dataclass(frozen=True)
class Utterance:
    """One utterance of the corpus: the file its audio is read from and the stem its label is named by."""

    audio: Path
    kind: AudioKind
    stem: str

    @property
    def label(self) -> Path:
        return self.audio.with_name(f"{self.stem}.smp.mix")

    @property
    def order(self) -> Path:
        """Where its `.smp` is or would be: the order of a corpus is the same whichever form it is kept in,
        and an all-`.smp` corpus keeps the order (so the journal's row numbers) it always had."""
        return self.audio.with_name(f"{self.stem}.smp")


def _candidates(root: Path) -> Iterable[tuple[int, Utterance]]:
    """Every file that may stand for an utterance, with its rank (0 best)."""
    for rank, (suffix, kind) in enumerate(_AUDIO_SUFFIXES):
        for path in root.rglob(f"*{suffix}"):
            stem = path.name[: -len(suffix)]
            if stem and not (suffix == ".wav" and stem.endswith(".smp")):  # x.smp.wav is ranked above
                yield rank, Utterance(path, kind, stem)


def _utterances(root: Path) -> list[Utterance]:
    """One utterance per stem and folder (its best-ranked file), in corpus order; an empty corpus is an error:
    a root pointed one folder off would otherwise give an empty source and no word of why."""
    if not root.is_dir():
        raise FileNotFoundError(f"waxholm: {root} is not a directory; point the source at the corpus root")
    best: dict[Path, tuple[int, Utterance]] = {}
    for rank, utt in _candidates(root):
        held = best.get(utt.order)
        if held is None or rank < held[0]:
            best[utt.order] = (rank, utt)
    if not best:
        raise FileNotFoundError(f"waxholm: {root} holds no .smp files and no .wav files: expected {EXPECTED_LAYOUT}")
    return [best[key][1] for key in sorted(best)]


def count(src: SourceSpec, work: Path) -> int:
    return len(_utterances(Path(src.path)))


def rows(src: SourceSpec, work: Path, start: int = 0) -> Iterator[Item]:
    root = Path(src.path)
    for n, utt in enumerate(_utterances(root)):
        if n < start:
            continue
        yield _item(root, n, utt, src.noise_ceiling)


def _read_label(root: Path, n: int, utt: Utterance) -> tuple[Path, bytes] | ImportReject:
    """The audio's real path and the label's bytes, or why the row cannot be read (without reading the audio)."""
    rel = utt.audio.relative_to(root)
    try:
        audio = resolve_inside(root, utt.audio)
        if not utt.label.exists():
            return ImportReject(n, utt.stem, "missing_label",
                                f"{rel}: no {utt.label.name}; unlabelled files are unusable")
        return audio, read_regular(resolve_inside(root, utt.label), LABEL_LIMIT, what="waxholm label")
    except PathEscape as exc:
        return ImportReject(n, utt.stem, "path_escape", f"{rel}: {exc}: refused, a corpus stays inside its root")
    except (ValueError, OSError) as exc:  # UnsafeFile: a FIFO, a device or an oversized file named as a label
        return ImportReject(n, utt.stem, "bad_metadata", f"{utt.label.relative_to(root)}: {exc}")


def _noise_reject(n: int, utt: Utterance, where: Path, label: Label, ceiling: float) -> ImportReject | None:
    """`mostly_noise` when the label's markers outweigh its words past the source's ceiling."""
    if label.noise_ratio <= ceiling:
        return None
    return ImportReject(n, utt.stem, "mostly_noise",
                        f"{where}: {label.markers} noise markers against {label.words} words (ratio "
                        f"{label.noise_ratio:.2f}), over max_noise_ratio {ceiling:g}; 1 keeps every row")


def _item(root: Path, n: int, utt: Utterance, ceiling: float) -> Item:
    read = _read_label(root, n, utt)
    if isinstance(read, ImportReject):
        return read
    audio, raw = read
    where = utt.label.relative_to(root)
    label = parse_mix(raw.decode("latin-1"))
    if label is None:
        return ImportReject(n, utt.stem, "bad_metadata", f"{where} has no TEXT: line")
    noisy = _noise_reject(n, utt, where, label, ceiling)
    if noisy is not None:
        return noisy
    return SourceRow(n=n, orig_id=utt.stem, speaker=speaker_of(utt.audio), text=label.text,
                     audio=AudioRef(utt.kind, str(audio)), meta=label.meta())
