"""What importers yield and what the journal stores. No torch.

Importers turn a publisher's layout into `Item`s: either a `SourceRow` (audio
location, text, speaker) or an `ImportReject` (the layout itself is broken for
that row: a missing label file, a TSV line that does not parse). Both carry the
row's position `n` within its source so the journal can resume exactly.
"""

from __future__ import annotations

from typing import Literal

import msgspec

RejectReason = Literal[
    "bad_metadata",
    "missing_audio",
    "missing_label",
    "missing_ref_audio",
    "path_escape",
    "decode_error",
    "truncated",
    "empty_audio",
    "silent",
    "clipping",
    "non_speech",
    "sample_rate",
    "too_short",
    "too_long",
    "speech_rate",
    "empty_text",
    "not_swedish",
    "duplicate_id",
    "low_alignment",
    "mostly_noise",
    "music",
    "noise",
    "long_silence",
    "overlapping_speech",
    "low_confidence",
]

AudioKind = Literal["file", "bytes", "smp", "span"]

# What a publisher says of a row beyond its text and speaker (RixVox's start, end, bleu_score; Waxholm's
# noise-marker count): kept through the journal into the bundle's manifest, never used to decode audio.
Meta = dict[str, str | int | float | bool]


class AudioRef(msgspec.Struct, frozen=True):
    """Where a row's audio is: a file soundfile can read, encoded bytes, a Waxholm .smp file, or a span of
    `frames` frames from frame `start` of a long recording (read by seeking, never by decoding the whole)."""

    kind: AudioKind
    path: str = ""
    data: bytes = b""
    start: int = 0
    frames: int = 0


class SourceRow(msgspec.Struct, frozen=True):
    """One utterance as its source describes it (text not yet normalised)."""

    n: int
    orig_id: str
    speaker: str
    text: str
    audio: AudioRef
    ref_audio: str | None = None
    meta: Meta = {}


class ImportReject(msgspec.Struct, frozen=True):
    n: int
    orig_id: str
    reason: RejectReason
    detail: str


Item = SourceRow | ImportReject


class Processed(msgspec.Struct, frozen=True, tag="row"):
    """One journal line: the outcome for row `n` of `source`.

    Accepted rows carry the sha256 of their 24 kHz wav in the work dir;
    rejected rows carry the reason and a detail an operator can act on.
    """

    source: str
    n: int
    orig_id: str
    speaker: str = ""
    text: str = ""
    audio_sha: str | None = None
    duration_s: float = 0.0
    speech_s: float = 0.0
    span_s: float = 0.0
    non_speech_ratio: float = 0.0
    rate_in: int = 0
    reason: RejectReason | None = None
    detail: str = ""
    meta: Meta = {}


class SourceEnd(msgspec.Struct, frozen=True, tag="end"):
    """Journal marker: every row of `source` (0..rows-1) is journaled."""

    source: str
    rows: int


class Reject(msgspec.Struct, frozen=True):
    """A line of the bundle's rejects file."""

    source: str
    orig_id: str
    n: int
    reason: str
    detail: str
