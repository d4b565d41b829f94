"""What retention keeps beyond the newest `posture.keep_last` when a run is scored. No torch.

With `scores.enabled`, the checkpointer (train/checkpointing/checkpointer.py) keeps, besides the newest
`keep_last` durable checkpoints:

- the best-scored kept checkpoint by best.RULE, whatever its age, so the checkpoint to promote is still
  there when the operator knows it is the one (a newer best frees the old one for deletion);
- with `posture.keep_unscored` (the default), every older checkpoint that has no scores yet: the daemon
  scores each new durable checkpoint as its own job, which waits while a shared card has no room, so a
  checkpoint must not be deleted before anyone has listened to it.

The disk plan (plan/disk.py) counts the best-scored checkpoint and one waiting checkpoint beside the kept
ones: scoring normally keeps up within a checkpoint interval. When it does not and the disk cannot hold the
next checkpoint beside the waiting ones, the waiting ones are let go, oldest first, one at a time until the
next checkpoint fits (`release_one`; each deletion is an event in the run's history naming the checkpoint
that was never scored), rather than ending the run failed_disk_full; the best-scored one and the newest
`keep_last` are never let go for room. Only when nothing is left to let go does the disk-full end follow.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from qwen_train.checkpoint_files import list_checkpoints, step_of
from qwen_train.scores.best import best_of, kept_scores
from qwen_train.spec import Posture, ScoresSpec

BEST = "the best-scored checkpoint"
WAITING = "waiting for its scores"


def protected(run_dir: Path, posture: Posture, scores: ScoresSpec) -> dict[Path, str]:
    """The checkpoints older than the newest `keep_last` that retention keeps all the same, and why."""
    if not scores.enabled:
        return {}
    ckpts = list_checkpoints(run_dir)
    older = ckpts[:-posture.keep_last] if posture.keep_last > 0 else ckpts
    scored = kept_scores(run_dir)
    best = best_of(scored.values())
    kept: dict[Path, str] = {}
    for ckpt in older:
        step = step_of(ckpt.name)
        if best is not None and step == best.step:
            kept[ckpt] = BEST
        elif posture.keep_unscored and step not in scored:
            kept[ckpt] = WAITING
    return kept


def release_one(run_dir: Path, posture: Posture, scores: ScoresSpec, spare: Path | None = None) -> Path | None:
    """Delete the oldest checkpoint kept only because it waits for its scores (never `spare`, the checkpoint a
    resume came from); the one deleted, or None when there is none to let go."""
    waiting = [c for c, why in protected(run_dir, posture, scores).items() if why == WAITING and c != spare]
    if not waiting:
        return None
    shutil.rmtree(waiting[0])
    return waiting[0]
