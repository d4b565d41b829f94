"""One `qwen-train score` call's work: which subjects, in which order, what is skipped, what it says.

The base model first when asked (the reference row every checkpoint is read against, and cached once),
then the checkpoints oldest first: under disk pressure the oldest waiting checkpoints are the first
retention lets go (scores/retention.py), so they are the first worth listening to. A checkpoint that
vanishes or breaks while it waits (retention took it, a corrupt file) is reported and the others are still
scored; the call then exits FAILED.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qwen_train import exitcodes
from qwen_train.checkpoint_files import CheckpointError, checkpoint_name, list_checkpoints
from qwen_train.scores.board import write_board
from qwen_train.scores.engine import Scorer, say
from qwen_train.scores.judges import JudgeDirs
from qwen_train.scores.listening import ListeningSet
from qwen_train.scores.models import Subject, base_subject, checkpoint_subject
from qwen_train.scores.options import ScoreOptions, is_current
from qwen_train.scores.record import SCORES_DIR, Scores
from qwen_train.spec import RunSpec


def summary_line(scores: Scores) -> str:
    def cell(name: str, value: float | None) -> str:
        return f"{name} {value:.3f}" if value is not None else f"{name} -"

    parts = [cell("CER", scores.cer), cell("similarity", scores.similarity), cell("OVRL", scores.dnsmos_ovrl),
             cell("rate", scores.rate_ratio), f"hit limit {scores.limit_share:.0%}",
             f"silent {scores.silent_share:.0%}"]
    return f"{scores.checkpoint}: " + ", ".join(parts) + f" ({scores.seconds:.0f} s)"


class Session:
    def __init__(self, run_dir: Path, spec: RunSpec, lset: ListeningSet, judges: JudgeDirs, device: Any) -> None:
        self.run_dir = run_dir
        self.scores_dir = run_dir / SCORES_DIR
        self.scorer = Scorer(run_dir, self.scores_dir, spec, lset, judges, device)
        self.spec = spec
        self.failed: list[str] = []

    def current(self, subject: Subject) -> Scores | None:
        return is_current(self.scores_dir / subject.file, subject.digest, self.scorer.lset, self.scorer.judges)

    def base(self) -> Scores | None:
        """The base row, scored now unless current."""
        subject = base_subject(self.spec)
        found = self.current(subject)
        if found is not None:
            say(f"base model {subject.path}: scored already ({subject.file})")
            return found
        scores = self.scorer.score(subject)
        say(summary_line(scores))
        return scores

    def checkpoints(self, opts: ScoreOptions) -> list[Path]:
        kept = list_checkpoints(self.run_dir)
        if opts.checkpoint is not None:
            return [c for c in kept if c.name == checkpoint_name(opts.checkpoint)]
        return kept if (opts.all_unscored or opts.everything) else []

    def checkpoint(self, ckpt: Path, base: Scores | None) -> None:
        try:
            subject = checkpoint_subject(ckpt, self.spec)
            if self.current(subject) is not None:
                return
            scores = self.scorer.score(subject)
        except (CheckpointError, FileNotFoundError) as exc:
            self.failed.append(f"{ckpt.name}: {exc}")
            say(f"{ckpt.name} could not be scored: {exc}")
            return
        write_board(self.run_dir, scores, base)
        say(summary_line(scores))

    def run(self, opts: ScoreOptions) -> int:
        base_wanted = opts.base or opts.everything
        base = self.base() if base_wanted else self._cached_base()
        for ckpt in self.checkpoints(opts):
            self.checkpoint(ckpt, base)
        if self.failed:
            say(f"{len(self.failed)} checkpoint(s) not scored: " + "; ".join(self.failed))
            return exitcodes.FAILED
        return exitcodes.COMPLETED

    def _cached_base(self) -> Scores | None:
        """The base row for TensorBoard's reference line, when it is current (never scored here)."""
        try:
            return self.current(base_subject(self.spec))
        except (OSError, ValueError):
            return None
