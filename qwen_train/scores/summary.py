"""From the rows' results to one model's Scores: how each number is pooled over the listening set. No torch.

- CER and WER: jiwer's corpus rates after the gate's Swedish normalisation (gate/cer.py): total edits over
  total reference characters (words), so a clone that failed or never spoke counts every character wrong.
- Swedish share: clones heard as Swedish by the unforced ASR, over all clones (a silent one is not heard as
  Swedish).
- Similarity: the verifier's cosine of each clone to its row's real recording (the same speaker, another
  recording: what calibration's same-speaker pairs measure), mean over all rows, an unscored clone counted
  0 as in the gate; its share of the calibrated real same-speaker median when calibration says the verifier
  separates this bundle's speakers, else None with calibration's reason.
- DNSMOS SIG/BAK/OVRL: means over the usable clones (quality.py).
- Speaking rate: the median over rows of clone speech seconds / real speech seconds (a median: one runaway
  clone must not make the whole set look slow; the limit share reports it).
- End of speech: the share of clones that reached their generation limit, and of clones with no speech
  (failed, empty, or nothing the VAD calls speech).
A score whose judge did not run is None, and `notes` says why.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

from qwen_train.gate.cer import char_errors, corpus_cer, corpus_wer, word_errors
from qwen_train.scores.listening import ListeningRow, ListeningSet
from qwen_train.scores.record import Calibration, RowScore, Scores
from qwen_train.scores.work import RowWork

SWEDISH = "sv"


@dataclass(frozen=True)
class Judged:
    """Which judges ran (their names), and why any did not."""

    asr: str = ""
    verifier: str = ""
    dnsmos: str = ""
    vad: str = ""
    language_note: str = ""  # why no language was identified though an ASR ran
    notes: tuple[tuple[str, str], ...] = ()


def silent(work: RowWork) -> bool:
    return bool(work.error) or not work.audio or (work.speech_s is not None and work.speech_s <= 0.0)


def _rate(errors: tuple[int, int]) -> float | None:
    edits, total = errors
    return edits / total if total else None


def row_score(row: ListeningRow, work: RowWork) -> RowScore:
    heard = work.transcript
    mos = work.mos
    ratio = (work.speech_s / work.real_speech_s if work.speech_s and work.real_speech_s else None)
    return RowScore(
        row_id=row.row_id, speaker_id=row.speaker_id, kind=row.kind, text=row.text, transcript=heard,
        cer=_rate(char_errors(row.text, heard)) if heard is not None else None,
        wer=_rate(word_errors(row.text, heard)) if heard is not None else None,
        heard_language=work.heard_language, similarity=work.similarity,
        rate_ratio=round(ratio, 4) if ratio is not None else None, hit_limit=work.hit_limit, silent=silent(work),
        audio=work.audio, dnsmos_sig=mos.sig if mos else None, dnsmos_bak=mos.bak if mos else None,
        dnsmos_ovrl=mos.ovrl if mos else None, seconds=work.seconds, speech_s=work.speech_s,
        real_speech_s=work.real_speech_s, frames=work.frames, max_new_tokens=row.max_new_tokens, error=work.error,
    )


def _mean(values: Sequence[float | None]) -> float | None:
    found = [v for v in values if v is not None]
    return round(statistics.fmean(found), 4) if found else None


def _intelligibility(rows: Sequence[RowScore], notes: dict[str, str]) -> tuple[float | None, float | None]:
    if any(r.transcript is None for r in rows):
        return None, None
    pairs = [(r.text, r.transcript or "") for r in rows]
    try:
        return round(corpus_cer(pairs), 4), round(corpus_wer(pairs), 4)
    except ValueError:
        notes["cer"] = notes["wer"] = "the listening texts are empty after normalisation"
        return None, None


def _similarity(rows: Sequence[RowScore], calibration: Calibration | None,
                notes: dict[str, str]) -> tuple[float | None, float | None]:
    if not rows or all(r.similarity is None for r in rows) and "similarity" in notes:
        return None, None
    mean = round(sum(r.similarity or 0.0 for r in rows) / len(rows), 4)
    if calibration is None or not calibration.measurable or not calibration.same_median:
        notes["similarity_share"] = ("not measurable: " + calibration.reason if calibration is not None
                                     else "no verifier calibration")
        return mean, None
    return mean, round(mean / calibration.same_median, 4)


def _rate_ratio(rows: Sequence[RowScore], notes: dict[str, str]) -> float | None:
    ratios = [r.rate_ratio for r in rows if r.rate_ratio is not None]
    if not ratios:
        notes.setdefault("rate_ratio", "no row has speech in both its clone and its real recording")
        return None
    return round(statistics.median(ratios), 4)


def _swedish(rows: Sequence[RowScore], notes: dict[str, str]) -> float | None:
    if "swedish_share" in notes or any(r.heard_language is None and not r.silent for r in rows):
        return None
    return round(sum(r.heard_language == SWEDISH for r in rows) / len(rows), 4)


def summarize(lset: ListeningSet, works: Sequence[RowWork], *, step: int | None, checkpoint: str,
              model_digest: str, language: str, judged: Judged, calibration: Calibration | None,
              seconds: float, device: str) -> Scores:
    """The Scores record of one model over the whole set (every row's work complete)."""
    notes = dict(judged.notes)
    rows = [row_score(row, work) for row, work in zip(lset.rows, works, strict=True)]
    cer, wer = _intelligibility(rows, notes)
    similarity, share = _similarity(rows, calibration, notes)
    n = len(rows)
    return Scores(
        step=step, checkpoint=checkpoint, model_digest=model_digest, listening_set=lset.digest, rows=n,
        cer=cer, wer=wer, asr=judged.asr, swedish_share=_swedish(rows, notes), similarity=similarity,
        similarity_share=share, verifier=judged.verifier,
        dnsmos_sig=_mean([r.dnsmos_sig for r in rows]), dnsmos_bak=_mean([r.dnsmos_bak for r in rows]),
        dnsmos_ovrl=_mean([r.dnsmos_ovrl for r in rows]), rate_ratio=_rate_ratio(rows, notes),
        limit_share=round(sum(r.hit_limit for r in rows) / n, 4),
        silent_share=round(sum(r.silent for r in rows) / n, 4),
        calibration=calibration, notes=notes, measured_at=time.time(), seconds=round(seconds, 2), device=device,
        per_row=rows, language=language, dnsmos=judged.dnsmos, vad=judged.vad, seed=lset.seed,
    )
