"""From journaled rows to the bundle's rows: outliers, shares, roles and splits.

Everything here is a pure function of the journal and the seed, so a resumed
run and an uninterrupted one select the same rows into the same splits.

Splits, per source, by role:
* train: `held_out_speakers` whole speakers (or the fraction, whichever is
  more) go to eval as `held_out_speaker`; each remaining speaker with enough
  rows gives `held_out_utterances` rows to eval as `held_out_utterance`;
* eval / benchmark: every row is evaluation. Speaker ids are scoped by source
  (`fleurs:...` never equals `rixvox:...`), so these are held-out speakers.

The split can come out with no eval rows (no held-out speakers asked for and no
speaker with rows to spare). `check_eval_split` refuses that for a bundle meant
for the language-expansion lane, which needs held-out speakers; for any other
lane it is a note: runs on the bundle train and report eval as not available.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from qwen_train.bundle.manifest import EvalKind
from qwen_train.prepare.records import Processed, Reject
from qwen_train.prepare.reject_summary import journal_path, rejects_text
from qwen_train.prepare.spec import PrepareSpec, Role, SourceSpec
from qwen_train.prepare.validate import chars_per_second, rate_outliers
from qwen_train.spec import Lane, SpecError


@dataclass(frozen=True)
class Selected:
    entry: Processed
    role: Role
    split: str
    eval_kind: EvalKind | None

    @property
    def speaker_id(self) -> str:
        return f"{self.entry.source}:{self.entry.speaker}"

    @property
    def row_id(self) -> str:
        return f"{self.entry.source}:{self.entry.orig_id}"


@dataclass
class Selection:
    rows: list[Selected]
    rejects: list[Reject]
    unselected: dict[str, int]
    held_out_speakers: list[str]


def _unit(seed: int, *parts: str) -> float:
    """A stable uniform number in [0, 1) for (seed, parts): share sampling without RNG state."""
    digest = hashlib.sha256("\0".join([str(seed), *parts]).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def select(spec: PrepareSpec, entries: list[Processed]) -> Selection:
    by_source: dict[str, list[Processed]] = defaultdict(list)
    rejects: list[Reject] = []
    for e in entries:
        if e.reason is None:
            by_source[e.source].append(e)
        else:
            rejects.append(Reject(e.source, e.orig_id, e.n, e.reason, e.detail))
    rows: list[Selected] = []
    unselected: dict[str, int] = {}
    held: list[str] = []
    for src in spec.sources:
        accepted = by_source.get(src.label, [])
        rates = {e.orig_id: chars_per_second(e.text, max(e.span_s, 1e-3)) for e in accepted}
        outliers = rate_outliers(rates, spec.limits.rate_outlier_mads)
        kept: list[Processed] = []
        for e in accepted:
            if e.orig_id in outliers:
                rejects.append(Reject(e.source, e.orig_id, e.n, "speech_rate", outliers[e.orig_id]))
            elif _unit(spec.seed, "share", src.label, e.orig_id) < src.share:
                kept.append(e)
        unselected[src.label] = len(accepted) - len(outliers) - len(kept)
        lost = [r for r in rejects if r.source == src.label]
        src_rows, src_held = split_source(spec, src, kept, lost, unselected[src.label])
        rows.extend(src_rows)
        held.extend(src_held)
    rejects.sort(key=lambda r: ([s.label for s in spec.sources].index(r.source), r.n))
    return Selection(rows=rows, rejects=rejects, unselected=unselected, held_out_speakers=sorted(held))


def no_speakers_message(
    spec: PrepareSpec, src: SourceSpec, kept: int, speakers: int, want: int, lost: Sequence[Reject], unselected: int
) -> str:
    """What emptied the source (reasons, examples, the journal) before the split's advice, so the fix aimed at
    is the data's, not the split's."""
    head = f"source {src.label!r} has {speakers} speaker(s) after validation ({kept} row(s) kept)"
    if not speakers or lost:
        head += f"; {rejects_text(lost, journal_path(spec), unselected)}\n"
    else:
        head += ". "
    return (f"{head}Holding out {want} speaker(s) would leave none to train on. "
            + ("Fix what rejected its rows first. " if not speakers and lost else "")
            + "Lower split.held_out_speakers (bundle build: --held-out-speakers; 0 for a single-speaker bundle) "
              "or add speakers.")


def split_source(
    spec: PrepareSpec, src: SourceSpec, kept: list[Processed], lost: Sequence[Reject] = (), unselected: int = 0
) -> tuple[list[Selected], list[str]]:
    role = src.resolved_role
    if role != "train":
        return [Selected(e, role, "eval", "held_out_speaker") for e in kept], sorted(
            {f"{e.source}:{e.speaker}" for e in kept}
        )
    by_speaker: dict[str, list[Processed]] = defaultdict(list)
    for e in kept:
        by_speaker[e.speaker].append(e)
    speakers = sorted(by_speaker)
    rng = random.Random(f"{spec.seed}:{src.label}")
    want = max(spec.split.held_out_speakers, math.ceil(spec.split.held_out_speaker_fraction * len(speakers)))
    if want and len(speakers) <= want:
        raise SpecError(no_speakers_message(spec, src, len(kept), len(speakers), want, lost, unselected))
    held = set(rng.sample(speakers, want)) if want else set()
    out: list[Selected] = []
    for spk in speakers:
        spk_rows = sorted(by_speaker[spk], key=lambda e: e.orig_id)
        if spk in held:
            out.extend(Selected(e, role, "eval", "held_out_speaker") for e in spk_rows)
            continue
        n_utt = spec.split.held_out_utterances if len(spk_rows) > spec.split.held_out_utterances else 0
        picked = set(rng.sample([e.orig_id for e in spk_rows], n_utt)) if n_utt else set()
        for e in spk_rows:
            if e.orig_id in picked:
                out.append(Selected(e, role, "eval", "held_out_utterance"))
            else:
                out.append(Selected(e, role, "train", None))
    out.sort(key=lambda s: s.entry.n)
    return out, sorted(f"{src.label}:{s}" for s in held)


def check_eval_split(selection: Selection, lane: Lane | None) -> str | None:
    """SpecError for a language-expansion bundle without held-out speakers; a note when eval is empty, else None."""
    evals = sum(s.split == "eval" for s in selection.rows)
    if lane == "language-expansion" and not any(s.eval_kind == "held_out_speaker" for s in selection.rows):
        raise SpecError(
            f"the language-expansion lane needs held-out speakers (eval on voices never trained on), and this "
            f"bundle would have none ({evals} eval rows): set split.held_out_speakers (bundle build: "
            "--held-out-speakers) to 1 or more, or add an eval-role source such as FLEURS"
        )
    if evals == 0:
        return "no eval rows (no held-out speakers or utterances): runs on it report eval as not available"
    return None
