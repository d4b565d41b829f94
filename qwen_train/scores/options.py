"""What a `qwen-train score` call asks for, and whether a scores file already answers it.

Apart from the command so the scoring session (session.py) and the gate (gate/listen.py) can read them without
importing the command that starts the session: one direction, no circle.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import msgspec

from qwen_train.scores.judges import JudgeDirs
from qwen_train.scores.listening import ListeningSet
from qwen_train.scores.record import Scores


class ScoreUsageError(ValueError):
    """What was asked cannot be scored; the message names the thing and what to do (exit USAGE)."""


class Stopped(Exception):
    """SIGTERM: stop where we are; everything written so far is whole."""


@dataclass(frozen=True)
class ScoreOptions:
    run_dir: Path
    checkpoint: int | None = None
    all_unscored: bool = False
    base: bool = False
    asr: Path | None = None
    verifier: Path | None = None
    device: str = "auto"
    plan: bool = False

    @property
    def everything(self) -> bool:
        return self.checkpoint is None and not self.all_unscored and not self.base


def is_current(path: Path, digest: str, lset: ListeningSet, judges: JudgeDirs) -> Scores | None:
    """The scores at `path` when they are of this model, this set and these judges; else None."""
    try:
        scores = msgspec.json.decode(path.read_bytes(), type=Scores)
    except (OSError, msgspec.MsgspecError):
        return None
    same = (scores.model_digest == digest and scores.listening_set == lset.digest and
            scores.asr == judges.asr_name and scores.verifier == judges.verifier_name)
    return scores if same else None
