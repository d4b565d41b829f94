"""The promotion gate's verdict file: the contract between the gate, the daemon and the dashboard.

A trained model becomes a sidecar candidate only if every criterion passes.
The verdict lists each criterion with what was measured, the threshold it
was held to and a sentence saying why it passed or failed, so an operator
reading it (or the dashboard showing it) never has to rerun the gate to know
what to fix. `passed` is true only when every criterion passed; a criterion
that could not be measured is a failure, never a pass (the gate fails closed).

Written atomically to RUN_DIR/gate/verdict.json by `qwen-train gate`.
Governance reads only `passed` (qwen_daemon.governance.GateVerdict).

The listening criteria read the scores of the judged checkpoint and of the
base model (qwen_train/scores: the same records `qwen-train score` writes),
and the verdict names the checkpoint judged and why it was the one.

The verdict also names its judges (which ASR model, which speaker verifier,
which encoder gave the second similarity figure), each criterion's further
figures (the base encoder's cosine beside the verifier's, WER beside CER), and
one row per held-out speaker. These came later: every one of them has a
default, so a verdict written before them still reads (with none listed), and
the dashboard says they were not recorded rather than inventing them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import msgspec

GATE_DIR = "gate"
VERDICT_FILE = "verdict.json"

CriterionName = Literal[
    "ended_cleanly",  # the run completed (or stopped gracefully) with no non-finite event left open
    "eval_beats_base",  # held-out eval loss of the trained model below the base model's
    "speaker_similarity",  # cloned voices sound like their speakers, as the base's do, to a calibrated verifier
    "intelligibility",  # ASR of the clones matches their texts (character error rate), better than the base
    "speaking_rate",  # the clones speak about as fast as the real recordings of the same texts
    "end_of_speech",  # the clones end: few ran to the generation limit or came out without speech
    "quality",  # DNSMOS OVRL of the clones not worse than the base's beyond a margin
    "resource_evidence",  # the daemon's resource summary exists and covers the run
    "provenance",  # bundle fingerprint, spec and code revision all recorded
]
CRITERIA: tuple[CriterionName, ...] = (
    "ended_cleanly", "eval_beats_base", "speaker_similarity", "intelligibility", "speaking_rate", "end_of_speech",
    "quality", "resource_evidence", "provenance",
)
LISTENING: tuple[CriterionName, ...] = ("speaker_similarity", "intelligibility", "speaking_rate", "end_of_speech",
                                        "quality")  # the criteria that read the listening scores


JudgeRole = Literal[
    "asr",  # transcribes the clones for intelligibility
    "speaker_verifier",  # the independent speaker verifier: speaker_similarity's measured value
    "speaker_encoder",  # the base model's own encoder: speaker_similarity's second figure
    "quality",  # DNSMOS P.835: quality's measured value
    "speech_detector",  # Silero VAD: speaking_rate, and end_of_speech's clones without speech
]


class Judge(msgspec.Struct, frozen=True):
    """A model that measured something for the verdict: what it is and where it came from."""

    role: JudgeRole
    kind: str  # "whisper" or "ctc"; "resemblyzer" or "xvector"; "base-encoder"
    model: str  # its directory, or the package that ships its weights (with the version)
    detail: str = ""  # how it was run: decoding, language, batch, device, sample rate


class Figure(msgspec.Struct, frozen=True):
    """A further number beside a criterion's `measured` one. `threshold` None: reported, not decided on."""

    name: str  # e.g. "base_encoder_cosine", "wer"
    value: float | None  # None: could not be measured (the detail says why)
    threshold: float | None = None
    passed: bool | None = None  # None where there is no threshold


class Criterion(msgspec.Struct, frozen=True):
    """One criterion's outcome. `measured`/`threshold` are None where the criterion is a yes/no fact."""

    name: CriterionName
    passed: bool
    detail: str
    measured: float | None = None
    threshold: float | None = None
    figures: list[Figure] = []


class SpeakerRow(msgspec.Struct, frozen=True):
    """One held-out speaker's clones, scored: means over its clones (a failed clone scores 0 / is unheard)."""

    speaker: str
    clones: int
    unusable: int = 0  # clones that failed, came out empty or silent
    similarity: float | None = None  # the speaker verifier's mean cosine
    base_similarity: float | None = None  # the base model's speaker encoder's mean cosine
    cer: float | None = None  # pooled over the speaker's clones
    wer: float | None = None


class GateVerdict(msgspec.Struct, frozen=True):
    run: str  # the run's name (its directory's name)
    run_dir: str
    model: str  # the exported model directory that was judged
    checkpoint_step: int
    base_model: str
    passed: bool
    criteria: list[Criterion]
    decided_at: float
    code_revision: str  # the judged model's, as its export.json records it ("" when it records none)
    gate_revision: str = ""  # the code that ran the gate (git commit or package version)
    thresholds: dict[str, float] = {}  # the thresholds and measurement bounds this verdict was decided with
    judges: list[Judge] = []  # the models that measured (none listed: written before judges were recorded)
    speakers: list[SpeakerRow] = []  # per held-out speaker (none: no clones, or written before rows were kept)
    checkpoint: str = ""  # the judged checkpoint's dir name ("" for an --export that names none)
    chosen_by: str = ""  # why that checkpoint: named, the best-scored by the stated rule, or the newest
    scores: str = ""  # the listening scores the criteria read, relative to the run dir
    base_scores: str = ""  # the base model's, relative to the run dir


def verdict_path(run_dir: Path) -> Path:
    return run_dir / GATE_DIR / VERDICT_FILE


def read_verdict(path: Path) -> GateVerdict:
    """ValueError naming the file when it is missing, truncated or not a verdict."""
    try:
        return msgspec.json.decode(path.read_bytes(), type=GateVerdict)
    except FileNotFoundError:
        raise ValueError(f"{path}: no gate verdict yet (run `qwen-train gate RUN_DIR`)") from None
    except (OSError, msgspec.MsgspecError) as exc:
        raise ValueError(f"{path}: unreadable gate verdict ({exc}); run the gate again to rewrite it") from None
