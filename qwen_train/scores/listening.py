"""The listening set: the held-out rows every checkpoint and the base model clone, the same each time. No torch.

Made from the bundle alone (its eval split and anchors) and the spec's `scores` section, so whoever scores a
run (the CLI, the daemon's job, the gate) derives the very same set, and its digest says so in every scores
file. Half the rows are held-out speakers' (voices the run never trained on: does it still clone?) and half
held-out utterances of trained speakers (texts it never saw in voices it did: has it learnt Swedish?); a kind
that runs short leaves its places to the other. Within a kind, speakers take turns so a small set still
covers as many voices as it can, and each speaker's rows are taken in an order the seed shuffles (not the
manifest's, which a corpus often sorts by length). The row an anchor was cut from is left out while others
remain: a clone of it would be compared with the very recording its voice prompt came from.

Each row keeps its real recording (what the clone's similarity and speaking rate are measured against) and
its speaker's reference clip (the anchor: the voice prompt), both relative to the bundle.
"""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from pathlib import Path

import msgspec

from qwen_train.bundle.manifest import ANCHORS, Row, read_bundle_info, read_manifest, read_record
from qwen_train.safe_read import decode_json
from qwen_train.spec import ScoresSpec

SET_FORMAT = 1
KINDS = ("held_out_speaker", "held_out_utterance")
SLACK_FRAMES = 12  # a second of codec frames on top of length_factor x the real recording's


class ListeningRow(msgspec.Struct, frozen=True):
    """One text in one voice; `seed` seeds its clone's sampling, `max_new_tokens` bounds its clone."""

    index: int
    row_id: str
    speaker_id: str
    kind: str  # held_out_speaker or held_out_utterance
    text: str
    audio: str  # the real recording, relative to the bundle
    ref_audio: str  # the speaker's reference clip (the voice prompt), relative to the bundle
    duration_s: float
    frames: int  # the real recording's codec frames
    seed: int
    max_new_tokens: int


class ListeningSet(msgspec.Struct, frozen=True):
    bundle: str  # the bundle dir
    fingerprint: str  # the bundle's fingerprint, part of the digest
    rows: list[ListeningRow]
    seed: int
    max_new_tokens: int
    length_factor: float
    format: int = SET_FORMAT

    @property
    def digest(self) -> str:
        """What the set is, not where the bundle lies: the fingerprint, the rows and their bounds."""
        body = msgspec.json.encode([self.format, self.fingerprint, self.seed, self.max_new_tokens,
                                    self.length_factor, self.rows])
        return hashlib.sha256(body).hexdigest()


class _Anchor(msgspec.Struct):
    from_row: str = ""


def _anchor_rows(bundle: Path) -> set[str]:
    """The rows the bundle's reference clips were cut from (none when it records no anchors)."""
    try:
        anchors = decode_json(read_record(bundle, ANCHORS), dict[str, _Anchor], ANCHORS)
    except ValueError:
        return set()
    return {a.from_row for a in anchors.values() if a.from_row}


def row_limit(row: Row, scores: ScoresSpec) -> int:
    """The most codec frames a clone of `row` may take before it counts as never ending."""
    return min(scores.max_new_tokens, int(row.frames * scores.length_factor) + SLACK_FRAMES)


def _fits(row: Row, scores: ScoresSpec) -> bool:
    return row.frames * scores.length_factor + SLACK_FRAMES <= scores.max_new_tokens


def _queues(rows: list[Row], rng: random.Random) -> list[list[Row]]:
    """Each speaker's rows in a seeded order, speakers sorted: a turn-taking order over voices."""
    by_speaker: dict[str, list[Row]] = defaultdict(list)
    for row in sorted(rows, key=lambda r: r.id):
        by_speaker[row.speaker_id].append(row)
    queues = []
    for speaker in sorted(by_speaker):
        queue = by_speaker[speaker]
        rng.shuffle(queue)
        queues.append(queue)
    return queues


def _turns(queues: list[list[Row]]) -> list[Row]:
    """One row of each speaker, then a second of each, ...: every voice before any voice twice."""
    out: list[Row] = []
    depth = 0
    while any(depth < len(q) for q in queues):
        out += [q[depth] for q in queues if depth < len(q)]
        depth += 1
    return out


def _candidates(rows: list[Row], kind: str, bundle: Path, scores: ScoresSpec) -> list[Row]:
    """A kind's eval rows, without anchor sources and over-long rows while others are left."""
    mine = [r for r in rows if r.split == "eval" and r.eval_kind == kind]
    sources = _anchor_rows(bundle)
    for keep in (lambda r: r.id not in sources, lambda r: _fits(r, scores)):
        kept = [r for r in mine if keep(r)]
        mine = kept or mine
    return mine


def _pick(ordered: dict[str, list[Row]], size: int) -> list[Row]:
    """Half from each kind, alternating; a kind that runs short leaves its places to the other."""
    picked: list[Row] = []
    cursors = {kind: 0 for kind in KINDS}
    while len(picked) < size and any(cursors[k] < len(ordered[k]) for k in KINDS):
        for kind in KINDS:
            if len(picked) < size and cursors[kind] < len(ordered[kind]):
                picked.append(ordered[kind][cursors[kind]])
                cursors[kind] += 1
    return picked


def listening_set(bundle: Path, scores: ScoresSpec) -> ListeningSet:
    """The set for this bundle and spec section; ValueError when the bundle has no held-out rows.

    The fingerprint is the one bundle.json records (verifying the whole bundle is the trainer's and the
    gate's business, and would hash every file of a large one each time a checkpoint is scored)."""
    fingerprint = read_bundle_info(bundle).fingerprint
    rows = read_manifest(bundle)
    rng = random.Random(scores.seed)
    ordered = {kind: _turns(_queues(_candidates(rows, kind, bundle, scores), rng)) for kind in KINDS}
    picked = _pick(ordered, scores.rows)
    if not picked:
        raise ValueError(f"bundle {bundle} has no held-out rows (eval split) to listen to: build it with held-out "
                         "speakers or utterances")
    listening = [ListeningRow(index=i, row_id=r.id, speaker_id=r.speaker_id, kind=str(r.eval_kind), text=r.text,
                              audio=r.audio, ref_audio=r.ref_audio, duration_s=r.duration_s, frames=r.frames,
                              seed=scores.seed + i, max_new_tokens=row_limit(r, scores))
                 for i, r in enumerate(picked)]
    return ListeningSet(bundle=str(bundle), fingerprint=fingerprint, rows=listening, seed=scores.seed,
                        max_new_tokens=scores.max_new_tokens, length_factor=scores.length_factor)
