"""The gate's listening criteria, read from the scores of the judged checkpoint and of the base model. No torch.

- speaker_similarity: the verifier must separate this bundle's real speakers (calibration EER at most
  `max_verifier_eer`, else "not measurable" with calibration's reason); the clones' mean similarity must
  reach the calibrated level (the verifier's EER threshold on the real speakers) or the absolute floor a
  thresholds file sets, and lose at most `similarity_margin` of the real same-speaker level against the
  base's clones; the base model's own encoder is a second, lenient figure, as before (speaker.py).
- intelligibility: CER at most `max_cer` and below the base's by at least `min_cer_gain`; WER beside it.
- speaking_rate: the median clone-to-real speech-duration ratio within [min_rate_ratio, max_rate_ratio],
  measured on at least `min_rate_rows` of the rows.
- end_of_speech: clones that ran to the generation limit or had no speech, at most `max_end_failures`.
- quality: DNSMOS OVRL no more than `max_ovrl_drop` below the base's.
Each threshold's default is justified where it is defined (thresholds.py). Missing scores (no base row, a
judge that did not run) fail their criterion as "not measured", with the scores' own reason.
"""

from __future__ import annotations

import msgspec

from qwen_train.gate.clones import Clone
from qwen_train.gate.intelligibility import HEARD_CHARS, NO_ASR
from qwen_train.gate.speaker import similarity_criterion
from qwen_train.gate.thresholds import Thresholds
from qwen_train.gate.verdict import Criterion, CriterionName, Figure, Judge
from qwen_train.scores.best import failed_share
from qwen_train.scores.record import Scores


def not_measured(name: CriterionName, why: str, threshold: float | None = None) -> Criterion:
    return Criterion(name=name, passed=False, detail=f"not measured: {why}", threshold=threshold)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


# -- speaker_similarity --------------------------------------------------------------------------


def _level(judged: Scores, t: Thresholds) -> tuple[float | None, str]:
    """The similarity the clones must reach, and what it is; None when calibration cannot give one."""
    if t.min_speaker_similarity is not None:
        return t.min_speaker_similarity, "the thresholds' floor"
    calibration = judged.calibration
    if calibration is None or calibration.threshold is None:
        return None, ""
    return calibration.threshold, "the calibrated level (the verifier's EER threshold on the real speakers)"


def _unmeasurable(judged: Scores, t: Thresholds) -> str | None:
    calibration = judged.calibration
    if calibration is None:
        return "the scores record no verifier calibration"
    if calibration.eer is None:
        return calibration.reason
    if calibration.eer > t.max_verifier_eer:
        return (f"the verifier separates this bundle's real speakers with an EER of {calibration.eer:.1%}, above "
                f"max_verifier_eer {t.max_verifier_eer:.0%} (same-speaker median {_num(calibration.same_median)}): "
                "its similarity cannot tell a better clone from a worse one here; give a verifier that works on "
                "this audio (--verifier)")
    return None


def _base_margin(judged: Scores, base: Scores | None, t: Thresholds) -> tuple[Figure, str]:
    """The judged similarity against the base's less the margin (a share of the real same-speaker level)."""
    median = judged.calibration.same_median if judged.calibration is not None else None
    if base is None or base.similarity is None or judged.similarity is None or not median:
        return Figure("base_similarity", None, None, False), "the base's similarity is not measured"
    floor = base.similarity - t.similarity_margin * median
    ok = judged.similarity >= floor
    return (Figure("base_similarity", base.similarity, round(floor, 6), ok),
            f"base {base.similarity:.3f}: {'within' if ok else 'NOT within'} {t.similarity_margin:.0%} of the real "
            f"same-speaker level ({median:.3f}) of it")


def speaker_similarity(judged: Scores, base: Scores | None, clones: list[Clone], t: Thresholds, language: str,
                       verifier: Judge | None, base_error: str = "") -> Criterion:
    why = _unmeasurable(judged, t)
    level, what = _level(judged, t)
    core = similarity_criterion(clones, msgspec.structs.replace(t, min_speaker_similarity=level or 0.0), language,
                                verifier, base_error)
    figures = list(core.figures)
    if why is not None:
        return Criterion(name="speaker_similarity", passed=False, measured=core.measured, threshold=level,
                         detail=f"not measurable: {why} (measured {_num(core.measured)}; {core.detail})",
                         figures=figures)
    margin, margin_text = _base_margin(judged, base, t)
    share = judged.similarity_share
    figures += [margin, Figure("similarity_share", share)]
    passed = core.passed and bool(margin.passed)
    detail = f"{core.detail}; level: {what}; {margin_text}" + (f"; {share:.0%} of the real level" if share else "")
    return Criterion(name="speaker_similarity", passed=passed, measured=core.measured, threshold=level,
                     detail=detail, figures=figures)


# -- intelligibility -----------------------------------------------------------------------------


def _worst(judged: Scores) -> str:
    rows = [r for r in judged.per_row if r.cer is not None]
    if not rows:
        return ""
    worst = max(rows, key=lambda r: r.cer or 0.0)
    heard = repr(worst.transcript or "")  # escaped: a transcript's control characters never reach a terminal
    heard = heard if len(heard) <= HEARD_CHARS else heard[:HEARD_CHARS - 1] + "…"
    return f"; worst {worst.cer:.2f}: {worst.text!r} heard as {heard}"


def intelligibility(judged: Scores, base: Scores | None, t: Thresholds, asr: Judge | None,
                    asr_given: bool) -> Criterion:
    maximum = t.max_cer
    if not asr_given:
        return Criterion(name="intelligibility", passed=False, detail=NO_ASR, threshold=maximum)
    if judged.cer is None or judged.wer is None:
        return not_measured("intelligibility", judged.notes.get("cer", "no CER in the scores"), maximum)
    cer = judged.cer
    under = cer <= maximum
    if base is None or base.cer is None:
        gain, gain_text = Figure("base_cer", None, None, False), "base CER not measured"
    else:
        ceiling = base.cer - t.min_cer_gain
        gain = Figure("base_cer", base.cer, round(ceiling, 6), cer < ceiling)
        gain_text = f"base CER {base.cer:.3f}: {'better' if gain.passed else 'NOT better'}"
    detail = (f"CER {cer:.3f} {'<=' if under else '>'} {maximum:.3f}, WER {judged.wer:.3f}, over {judged.rows} "
              f"clones (ASR: {f'{asr.kind} {asr.model}' if asr else 'unnamed'}; texts normalised); {gain_text}")
    failed = sum(r.error is not None or not r.audio for r in judged.per_row)
    if failed:
        detail += f"; {failed} clone(s) empty or failed, transcribed as nothing"
    return Criterion(name="intelligibility", passed=under and bool(gain.passed), measured=cer, threshold=maximum,
                     detail=detail + _worst(judged), figures=[Figure("wer", judged.wer), gain])


# -- speaking_rate, end_of_speech, quality -------------------------------------------------------


def speaking_rate(judged: Scores, t: Thresholds) -> Criterion:
    band = f"[{t.min_rate_ratio:g}, {t.max_rate_ratio:g}]"
    measured = sum(r.rate_ratio is not None for r in judged.per_row)
    share = measured / judged.rows if judged.rows else 0.0
    enough = share >= t.min_rate_rows
    rows_text = f"{measured} of {judged.rows} rows with speech in both the clone and the real recording"
    if judged.rate_ratio is None:
        return Criterion(name="speaking_rate", passed=enough, threshold=t.max_rate_ratio,
                         detail=f"no rate: {rows_text} (min_rate_rows {t.min_rate_rows:.0%}"
                                f"{', so nothing to hold to the band' if enough else ''})",
                         figures=[Figure("rows_measured", share, t.min_rate_rows, enough)])
    inside = t.min_rate_ratio <= judged.rate_ratio <= t.max_rate_ratio
    detail = (f"median clone/real speech duration {judged.rate_ratio:.3f} {'inside' if inside else 'OUTSIDE'} "
              f"{band} ({'slower' if judged.rate_ratio > 1 else 'faster'} than the real recordings) over {rows_text}")
    return Criterion(name="speaking_rate", passed=inside and enough, measured=judged.rate_ratio,
                     threshold=t.max_rate_ratio if judged.rate_ratio > 1 else t.min_rate_ratio, detail=detail,
                     figures=[Figure("rows_measured", share, t.min_rate_rows, enough),
                              Figure("min_rate_ratio", t.min_rate_ratio), Figure("max_rate_ratio", t.max_rate_ratio)])


def end_of_speech(judged: Scores, base: Scores | None, t: Thresholds) -> Criterion:
    failures = failed_share(judged)  # a clone that ran to the limit and had no speech counts once
    passed = failures <= t.max_end_failures
    base_text = (f"; base {base.limit_share:.0%} and {base.silent_share:.0%}" if base is not None else "")
    detail = (f"{judged.limit_share:.0%} of clones ran to the generation limit without end-of-speech, "
              f"{judged.silent_share:.0%} had no speech: {failures:.0%} of clones failed, {'<=' if passed else '>'} "
              f"{t.max_end_failures:.0%}{base_text}")
    return Criterion(name="end_of_speech", passed=passed, measured=round(failures, 6), threshold=t.max_end_failures,
                     detail=detail, figures=[Figure("limit_share", judged.limit_share),
                                             Figure("silent_share", judged.silent_share)])


def quality(judged: Scores, base: Scores | None, t: Thresholds) -> Criterion:
    if judged.dnsmos_ovrl is None:
        return not_measured("quality", judged.notes.get("dnsmos_ovrl", "no clone was scored by DNSMOS"))
    if base is None or base.dnsmos_ovrl is None:
        return not_measured("quality", "the base model's DNSMOS OVRL is not measured")
    floor = round(base.dnsmos_ovrl - t.max_ovrl_drop, 6)
    passed = judged.dnsmos_ovrl >= floor
    detail = (f"DNSMOS OVRL {judged.dnsmos_ovrl:.2f} {'>=' if passed else '<'} {floor:.2f} (base "
              f"{base.dnsmos_ovrl:.2f} less {t.max_ovrl_drop:g}); SIG {_num(judged.dnsmos_sig)}, BAK "
              f"{_num(judged.dnsmos_bak)} (base {_num(base.dnsmos_sig)}, {_num(base.dnsmos_bak)})")
    return Criterion(name="quality", passed=passed, measured=judged.dnsmos_ovrl, threshold=floor, detail=detail,
                     figures=[Figure("dnsmos_sig", judged.dnsmos_sig), Figure("dnsmos_bak", judged.dnsmos_bak),
                              Figure("base_ovrl", base.dnsmos_ovrl)])
