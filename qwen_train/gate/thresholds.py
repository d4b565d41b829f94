"""The gate's thresholds and measurement bounds: one JSON file, every field optional.

The defaults are meant for the real 1.7B model and a real Swedish ASR model;
each says where its number comes from. The listening criteria (similarity,
intelligibility, speaking rate, end of speech, quality) read the scores of
the judged checkpoint and of the base model (qwen_train/scores).
Tiny or random models cannot meet them, and that is the point: a test or a
smoke run that loosens a threshold has to say so in a file that the verdict
records. The measurement bounds (rows, generated length, seed) live in the
same file so that one file is enough to rerun the same judgement.

Unknown fields are rejected: a misspelt threshold must not silently fall back
to its default.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from qwen_train.spec import ScoresSpec


class ThresholdsError(ValueError):
    """A thresholds file that cannot be used; the message names the file and the field."""


class Thresholds(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    # -- speaker_similarity (the verifier's cosine of each clone to its row's real recording, from the scores) --
    # An absolute floor on the clones' mean cosine. None (the default): the calibrated level instead, the score
    # at which the verifier's errors on this bundle's real speakers balance (its EER threshold): a clone below
    # it is one the verifier would call another speaker. A fixed 0.75 had no footing (GE2E puts different
    # speakers near 0.6 and the same near 0.8; an x-vector verifier has its own scale); set it only for a
    # verifier whose scale you know, or to loosen a test.
    min_speaker_similarity: float | None = None
    # The same mean in the base model's own speaker encoder (the x-vector voice cloning conditions on): a
    # second figure, lenient by nature (it is the encoder the model was asked to match), held to its own floor.
    min_base_encoder_similarity: float = 0.5
    # Above this EER on the bundle's real speakers the verifier cannot separate them and similarity is "not
    # measurable" (scores/calibration.py: published verifiers reach a few percent on clean real speech).
    max_verifier_eer: float = 0.15
    # How much of the real same-speaker level (calibration's median) the fine-tune may lose against the base's
    # clones of the same rows: 0.05 of a GE2E median near 0.85 is about 0.04 cosine, less than the whole gap
    # between same- and different-speaker cosines on cloned speech (0.63-0.68 against 0.58-0.60 in a public
    # fine-tuning report), so a fine-tune that loses more has lost the voice, not a rounding.
    similarity_margin: float = 0.05
    # -- intelligibility (CER by the ASR judge, forced Swedish, greedy, no language model) --
    # KB-Whisper's published error on real read Swedish is a few percent WER (FLEURS, Common Voice), a CER of
    # about a third of that; greedy decoding without a language model and synthetic prosody add errors a
    # listener does not hear, so the ceiling allows several times the judge's own; the guard that matters is
    # "better than the base" below, which the ceiling only backs.
    max_cer: float = 0.25
    # The least the judged CER must lie below the base model's on the same rows (0: strictly below, the point
    # of a language-expansion fine-tune; a negative value allows a worse CER, for tests of random models).
    min_cer_gain: float = 0.0
    # -- speaking_rate (clone speech seconds over the real recording's, by Silero VAD; the median over rows) --
    # A speaker's own readings of one text vary by about a tenth in length; 0.8-1.25 (a fifth faster to a
    # quarter slower, symmetric on a log scale) is outside that, where the upstream double label shift's
    # speed-up (faster every epoch) shows within a few epochs.
    min_rate_ratio: float = 0.8
    max_rate_ratio: float = 1.25
    # The least share of rows whose clone and real recording both have speech, for a rate to be measured.
    min_rate_rows: float = 0.5
    # -- end_of_speech (clones that ran to the generation limit or had no speech, over all clones) --
    # Upstream reports about 0.5% of clones never emitting end-of-speech; on a 12-row set one such clone is
    # 8%, so 0.10 forgives one unlucky clone and fails two (about 30 times the reported rate).
    max_end_failures: float = 0.10
    # -- quality (DNSMOS P.835 OVRL, a 1-5 MOS predicted from the audio alone) --
    # How far the fine-tune's mean OVRL may fall below the base's on the same rows. DNSMOS predicts a clip's
    # P.835 MOS to within a few tenths, and the DNS Challenge told systems apart at about 0.1-0.2 MOS on
    # averages over many clips; a drop of more than 0.2 on the same texts and voices is lost quality.
    max_ovrl_drop: float = 0.2
    # A clone whose loudest sample is below this (full scale 1.0; 1e-3 is -60 dBFS) is silence, not a voice:
    # the base encoder does not score it and it is transcribed as nothing in the per-speaker rows.
    min_clone_peak: float = 1e-3
    # Largest share of the resource summary's time span that may be gaps (no sampler running).
    max_resource_gap_fraction: float = 0.10
    # Held-out eval rows scored for both models (the same rows, in manifest order).
    eval_max_rows: int = 256
    # The listening set's bounds: rows, codec frames per clone at most (12 per second: 360 is 30 s), the seed.
    # None (the default): the run spec's `scores` section, so the gate reads the scores `qwen-train score` (the
    # daemon) already wrote; a value here makes the gate's own set, scored into RUN_DIR/scores/gate-DIGEST/.
    clone_max_rows: int | None = None
    max_new_tokens: int | None = None
    seed: int | None = None


def _check(t: Thresholds, source: str) -> Thresholds:
    problems = []
    for name in ("min_speaker_similarity", "min_base_encoder_similarity"):
        if getattr(t, name) is not None and not -1.0 <= getattr(t, name) <= 1.0:
            problems.append(f"{name} {getattr(t, name)} is not a cosine in [-1, 1]")
    for name in ("max_verifier_eer", "min_rate_rows", "max_end_failures"):
        if not 0.0 <= getattr(t, name) <= 1.0:
            problems.append(f"{name} {getattr(t, name)} is not a share in [0, 1]")
    if not 0 < t.min_rate_ratio <= t.max_rate_ratio:
        problems.append(f"min_rate_ratio {t.min_rate_ratio} and max_rate_ratio {t.max_rate_ratio} are no band")
    if t.min_clone_peak < 0:
        problems.append(f"min_clone_peak {t.min_clone_peak} is negative")
    if t.max_cer < 0:
        problems.append(f"max_cer {t.max_cer} is negative")
    if not 0.0 <= t.max_resource_gap_fraction <= 1.0:
        problems.append(f"max_resource_gap_fraction {t.max_resource_gap_fraction} is not in [0, 1]")
    for name in ("eval_max_rows", "clone_max_rows", "max_new_tokens"):
        if getattr(t, name) is not None and getattr(t, name) <= 0:
            problems.append(f"{name} must be positive, got {getattr(t, name)}")
    if problems:
        raise ThresholdsError(f"{source}: " + "; ".join(problems))
    return t


def decode_thresholds(data: bytes, source: str) -> Thresholds:
    try:
        thresholds = msgspec.json.decode(data, type=Thresholds)
    except msgspec.ValidationError as exc:
        fields = ", ".join(f for f in Thresholds.__struct_fields__)
        raise ThresholdsError(f"{source}: invalid thresholds: {exc} (known fields: {fields})") from None
    except msgspec.DecodeError as exc:
        raise ThresholdsError(f"{source}: not valid JSON: {exc}") from None
    return _check(thresholds, source)


def load_thresholds(path: Path | None) -> Thresholds:
    """The defaults when no file is given; otherwise the file, checked."""
    if path is None:
        return Thresholds()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ThresholdsError(f"cannot read thresholds file {path}: {exc.strerror}; fix --thresholds") from None
    return decode_thresholds(raw, str(path))


def listening_spec(t: Thresholds, scores: ScoresSpec) -> ScoresSpec:
    """The run's listening set section with the thresholds' bounds (those given) in place of its own."""
    bounds = {"rows": t.clone_max_rows, "max_new_tokens": t.max_new_tokens, "seed": t.seed}
    return msgspec.structs.replace(scores, **{k: v for k, v in bounds.items() if v is not None})


def thresholds_record(t: Thresholds, scores: ScoresSpec | None = None) -> dict[str, float]:
    """The thresholds as the verdict records them (all numbers): a bound left to the run's spec is recorded
    as the value used (`scores`, the listening set's section), a floor left to calibration is not listed."""
    record = {name: float(getattr(t, name)) for name in Thresholds.__struct_fields__ if getattr(t, name) is not None}
    if scores is not None:
        record |= {"clone_max_rows": float(scores.rows), "max_new_tokens": float(scores.max_new_tokens),
                   "seed": float(scores.seed)}
    return record
