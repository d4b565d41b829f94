"""The promotion gate's verdict file: the contract between the gate, the daemon and the dashboard.

A trained model becomes a sidecar candidate only if every criterion passes.
The verdict lists each criterion with what was measured, the threshold it
was held to and a sentence saying why it passed or failed, so an operator
reading it (or the dashboard showing it) never has to rerun the gate to know
what to fix. `passed` is true only when every criterion passed; a criterion
that could not be measured is a failure, never a pass (the gate fails closed).

Written atomically to RUN_DIR/gate/verdict.json by `qwen-train gate`.
Governance reads only `passed` (qwen_daemon.governance.GateVerdict).
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
    "speaker_similarity",  # cloned held-out voices sound like their references
    "intelligibility",  # ASR of generated held-out Swedish text matches it (character error rate)
    "resource_evidence",  # the daemon's resource summary exists and covers the run
    "provenance",  # bundle fingerprint, spec and code revision all recorded
]
CRITERIA: tuple[CriterionName, ...] = (
    "ended_cleanly", "eval_beats_base", "speaker_similarity", "intelligibility", "resource_evidence", "provenance",
)


class Criterion(msgspec.Struct, frozen=True):
    """One criterion's outcome. `measured`/`threshold` are None where the criterion is a yes/no fact."""

    name: CriterionName
    passed: bool
    detail: str
    measured: float | None = None
    threshold: float | None = None


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
