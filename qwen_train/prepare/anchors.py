"""One reference clip per speaker, copied into the bundle.

The rule (stated so an operator can predict it):
1. candidates are the speaker's selected rows that are not held-out
   utterances (a held-out utterance must not be its own reference);
2. among candidates lasting 3-8 s, take the one with the lowest non-speech
   ratio, then the longest, then the smallest id;
3. if none lasts 3-8 s but some are longer, cut 8 s from the longest one,
   starting at its first speech frame (leading silence is not a voice);
4. if all are shorter than 3 s, take the longest as it is and mark it short.
Anchors are 24 kHz mono 16-bit wavs at `anchors/<speaker>.wav`; the file name
is the speaker's local name, prefixed by its source only where two sources
share a name. Rows point at anchors inside the bundle, never outside it.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import msgspec
import numpy as np

from qwen_train.bundle.codes import read_mono_24k
from qwen_train.prepare.process import wav_bytes
from qwen_train.prepare.resample import TARGET_RATE
from qwen_train.prepare.select import Selected
from qwen_train.prepare.validate import HOP_S, SPEECH_RANGE_DB, frame_db

ANCHOR_MIN_S, ANCHOR_MAX_S = 3.0, 8.0
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class Anchor(msgspec.Struct, frozen=True):
    path: str
    from_row: str
    rule: str
    duration_s: float


def safe_name(name: str) -> str:
    """A file name from an id: unsafe characters become '_', never empty or hidden."""
    cleaned = _UNSAFE.sub("_", name).strip("._") or "_"
    return cleaned[:120]


def anchor_names(speaker_ids: list[str]) -> dict[str, str]:
    """speaker_id -> anchors/<name>.wav, unique within the bundle."""
    local = {sid: safe_name(sid.split(":", 1)[1]) for sid in speaker_ids}
    counts: dict[str, int] = defaultdict(int)
    for name in local.values():
        counts[name] += 1
    out: dict[str, str] = {}
    for sid, name in local.items():
        stem = name if counts[name] == 1 else safe_name(sid.replace(":", "-"))
        out[sid] = f"anchors/{stem}.wav"
    if len(set(out.values())) != len(out):
        out = {sid: f"anchors/{safe_name(sid.replace(':', '-'))}-{i}.wav" for i, sid in enumerate(sorted(out))}
    return out


def choose(rows: list[Selected]) -> tuple[Selected, str]:
    """Apply the rule above; returns the row and the rule that picked it."""
    candidates = [r for r in rows if r.eval_kind != "held_out_utterance"] or rows
    fitting = [r for r in candidates if ANCHOR_MIN_S <= r.entry.duration_s <= ANCHOR_MAX_S]
    if fitting:
        best = min(fitting, key=lambda r: (r.entry.non_speech_ratio, -r.entry.duration_s, r.entry.orig_id))
        return best, "clip_3_8s"
    longest = max(candidates, key=lambda r: (r.entry.duration_s, r.entry.orig_id))
    if longest.entry.duration_s > ANCHOR_MAX_S:
        return longest, "cut_8s"
    return longest, "short"


def cut_from_speech(audio: np.ndarray) -> np.ndarray:
    """8 s starting at the first speech frame (or at the end minus 8 s if that runs out)."""
    db = frame_db(audio, TARGET_RATE)
    speech = np.flatnonzero(db > db.max() - SPEECH_RANGE_DB)
    first = int(speech[0] * HOP_S * TARGET_RATE) if speech.size else 0
    length = int(ANCHOR_MAX_S * TARGET_RATE)
    start = max(0, min(first, audio.size - length))
    return audio[start : start + length]


def write_anchors(rows: list[Selected], wav_path: Callable[[str], Path], out: Path) -> dict[str, Anchor]:
    by_speaker: dict[str, list[Selected]] = defaultdict(list)
    for r in rows:
        by_speaker[r.speaker_id].append(r)
    names = anchor_names(sorted(by_speaker))
    (out / "anchors").mkdir(exist_ok=True)
    anchors: dict[str, Anchor] = {}
    for sid in sorted(by_speaker):
        row, rule = choose(by_speaker[sid])
        audio = read_mono_24k(wav_path(row.entry.audio_sha or ""))
        if rule == "cut_8s":
            audio = cut_from_speech(audio)
        (out / names[sid]).write_bytes(wav_bytes(audio))
        anchors[sid] = Anchor(names[sid], row.row_id, rule, round(audio.size / TARGET_RATE, 3))
    return anchors
