"""What listening to one checkpoint found: the record a run dir keeps, one file per checkpoint. No torch.

`RUN_DIR/scores/step-NNNNNNNN.json` for a durable checkpoint, `RUN_DIR/scores/base.json` for the base model
(the reference row, cached by the base model's digest and the listening set's). Written atomically by whoever
scores (`qwen-train score`), read by the daemon (`qwen-daemon scores`, the API, the dashboard), the gate and the
checkpointer's retention. Every score names its judge; a score that could not be measured is None with a reason.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

SCORES_DIR = "scores"
BASE_FILE = "base.json"


def step_file(step: int) -> str:
    return f"step-{step:08d}.json"


class Calibration(msgspec.Struct, frozen=True):
    """How well the speaker verifier separates this bundle's real held-out speakers."""

    verifier: str
    same_pairs: int
    different_pairs: int
    same_scores: list[float]
    different_scores: list[float]
    eer: float | None  # equal error rate over those pairs
    threshold: float | None  # the score at the EER
    same_median: float | None  # the real same-speaker level similarity is a share of
    measurable: bool
    reason: str = ""  # why not measurable (EER over the limit, too few pairs)


class RowScore(msgspec.Struct, frozen=True):
    """One clone of one listening row."""

    row_id: str
    speaker_id: str
    cer: float | None = None
    wer: float | None = None
    heard_language: str | None = None
    similarity: float | None = None
    rate_ratio: float | None = None  # clone speech seconds / real recording speech seconds
    hit_limit: bool = False  # generation ran to max_new_tokens without end of speech
    silent: bool = False  # no speech found in the clone
    audio: str = ""  # the clone's wav, relative to the run dir
    # Added by the scorer (optional, so a record without them still reads):
    kind: str = ""  # held_out_speaker or held_out_utterance
    text: str = ""  # what the clone was asked to say
    transcript: str | None = None  # what the ASR judge (forced Swedish) heard; None when no ASR ran
    dnsmos_sig: float | None = None
    dnsmos_bak: float | None = None
    dnsmos_ovrl: float | None = None
    seconds: float = 0.0  # the clone's length
    speech_s: float | None = None  # the clone's speech by the VAD
    real_speech_s: float | None = None  # the real recording's speech by the VAD
    frames: int = 0  # codec frames generated
    max_new_tokens: int = 0  # the clone's generation limit
    error: str | None = None  # why generation failed (the clone then counts as silent)


class Scores(msgspec.Struct, frozen=True):
    """One model's scores on the listening set; `step` None for the base model."""

    step: int | None
    checkpoint: str  # the checkpoint dir's name, or "base"
    model_digest: str
    listening_set: str  # digest of the set (rows, seeds, generation length)
    rows: int
    cer: float | None = None
    wer: float | None = None
    asr: str = ""  # the ASR judge (model dir or hub id)
    swedish_share: float | None = None  # clones the unforced ASR judge hears as Swedish
    similarity: float | None = None  # mean verifier score, clone against its speaker's real recording
    similarity_share: float | None = None  # similarity over calibration.same_median
    verifier: str = ""
    dnsmos_sig: float | None = None
    dnsmos_bak: float | None = None
    dnsmos_ovrl: float | None = None
    rate_ratio: float | None = None  # median over rows
    limit_share: float = 0.0  # clones that ran to the generation limit
    silent_share: float = 0.0  # clones with no speech
    calibration: Calibration | None = None
    notes: dict[str, str] = {}  # score name -> why it is None
    measured_at: float = 0.0
    seconds: float = 0.0
    device: str = ""
    per_row: list[RowScore] = []
    # Added by the scorer (optional, so a record without them still reads):
    language: str = ""  # the language the clones were generated with ("auto" for the base: zero-shot)
    dnsmos: str = ""  # the quality judge, named
    vad: str = ""  # the speech detector, named
    seed: int = 0  # the set's seed (each clone used seed + its index)


def read_scores(path: Path) -> Scores:
    """One record; ValueError naming the file when it is unreadable or malformed."""
    try:
        return msgspec.json.decode(path.read_bytes(), type=Scores)
    except (OSError, msgspec.MsgspecError) as exc:
        raise ValueError(f"{path}: unreadable scores: {exc}") from None


def scored_steps(run_dir: Path) -> dict[int, Path]:
    """The checkpoints of a run that have scores, by step."""
    folder = run_dir / SCORES_DIR
    out: dict[int, Path] = {}
    for path in sorted(folder.glob("step-*.json")) if folder.is_dir() else []:
        try:
            out[int(path.stem.removeprefix("step-"))] = path
        except ValueError:
            continue
    return out
