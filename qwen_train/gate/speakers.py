"""The verdict's per-speaker rows: each held-out voice's clones, scored by every judge that ran.

A mean over all clones can hide one voice the model cannot clone (four good
speakers and one lost one still average well), so the verdict lists each
held-out speaker on its own: how many clones it had and how many were
unusable, the verifier's and the base encoder's mean cosine, and its pooled
CER and WER. A judge that did not run leaves its column empty (None), never
zero; within a judge that ran, an unscored clone counts 0 and an unheard one
as an empty transcript, as in the criteria.

No torch here: these are numbers already measured.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING

from qwen_train.gate.cer import corpus_cer, corpus_wer
from qwen_train.gate.verdict import SpeakerRow

if TYPE_CHECKING:
    from qwen_train.gate.clones import Clone


def mean_or_zero(values: list[float | None]) -> float:
    """The mean with an unscored clone counted as 0 (0.0 for no values)."""
    return sum(v if v is not None else 0.0 for v in values) / len(values) if values else 0.0


def _rate(score: Callable[[list[tuple[str, str]]], float], pairs: list[tuple[str, str]]) -> float | None:
    try:
        return score(pairs)
    except ValueError:  # no reference text after normalisation
        return None


def _row(speaker: str, clones: list[Clone], verified: bool, based: bool, heard: bool) -> SpeakerRow:
    pairs = [(c.row.text, c.transcript or "") for c in clones]
    return SpeakerRow(
        speaker=speaker, clones=len(clones), unusable=sum(not c.usable for c in clones),
        similarity=mean_or_zero([c.similarity for c in clones]) if verified else None,
        base_similarity=mean_or_zero([c.base_similarity for c in clones]) if based else None,
        cer=_rate(corpus_cer, pairs) if heard else None,
        wer=_rate(corpus_wer, pairs) if heard else None,
    )


def speaker_rows(clones: list[Clone], verified: bool, based: bool, heard: bool) -> list[SpeakerRow]:
    """One row per held-out speaker, in speaker order. The flags say which judges ran: the verifier, the
    base encoder, the ASR."""
    by_speaker: dict[str, list[Clone]] = defaultdict(list)
    for clone in clones:
        by_speaker[clone.row.speaker_id].append(clone)
    return [_row(s, by_speaker[s], verified, based, heard) for s in sorted(by_speaker)]
