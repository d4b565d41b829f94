"""Which checkpoint is best: the one rule that retention keeps, the gate judges by default and the daemon marks.

The rule (RULE): among the scored checkpoints, those whose clones reached the generation limit or came out
silent in at most MAX_FAILED_SHARE of the rows are the candidates (all of them when none is); of those,
the lowest CER, then the highest speaker similarity, then the newer step. A checkpoint without a measured
CER ranks after every one with it.

Why CER first: intelligibility is what a language-expansion fine-tune is for, and the ASR judge's CER is
the score with the firmest footing (its judge is a Swedish model, and it needs no calibration). Why the
failure filter: CER is pooled over every clone, but a model that never stops or goes silent on one row in
ten has a fault CER does not weigh as the operator would (upstream reports about 0.5% of clones never
stopping; ten times that is a broken checkpoint, whatever it says when it does speak). Similarity breaks
ties rather than filters, because on a bundle whose verifier calibration says "not measurable" it means
little, and the gate holds the chosen checkpoint to the base's similarity on its own. The newest step last:
of two equal checkpoints, the one that trained longer.

The daemon's table and dashboard (qwen_daemon.protocol.scores.best_step) apply this same rule to the same
records, so all of them name the same checkpoint. No torch.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from qwen_train.checkpoint_files import list_checkpoints, step_of
from qwen_train.scores.identity import digest_or_none
from qwen_train.scores.record import Scores, read_scores, scored_steps

MAX_FAILED_SHARE = 0.10
RULE = (f"lowest CER, then highest speaker similarity, then the newer step, among checkpoints whose clones hit "
        f"the generation limit or came out silent in at most {MAX_FAILED_SHARE:.0%} of rows")


def failed_share(scores: Scores) -> float:
    """The share of clones that ran to the limit or had no speech (a clone that did both counts once); from the
    rows where the record has them, else the two shares' sum (at most 1)."""
    summed = min(1.0, scores.limit_share + scores.silent_share)
    if scores.per_row:  # the rows count a clone that did both once; the record's own shares still bound it
        return max(sum(r.hit_limit or r.silent for r in scores.per_row) / len(scores.per_row),
                   max(scores.limit_share, scores.silent_share))
    return summed


def _rank(scores: Scores) -> tuple[bool, float, float, int]:
    """Larger is better."""
    cer = scores.cer if scores.cer is not None else float("inf")
    similarity = scores.similarity if scores.similarity is not None else float("-inf")
    return scores.cer is not None, -cer, similarity, scores.step or 0


def best_of(records: Iterable[Scores]) -> Scores | None:
    """The best checkpoint's scores by RULE (the base row never counts); None when none is scored."""
    scored = [s for s in records if s.step is not None]
    eligible = [s for s in scored if failed_share(s) <= MAX_FAILED_SHARE] or scored
    return max(eligible, key=_rank) if eligible else None


def kept_scores(run_dir: Path) -> dict[int, Scores]:
    """The scores of the run's kept checkpoints, by step: only a record of the model the checkpoint holds now
    (identity.py); unreadable or stale files are left out, so their checkpoints count as unscored."""
    try:
        kept = {step_of(c.name): c for c in list_checkpoints(run_dir)}
    except OSError:
        return {}
    found: dict[int, Scores] = {}
    for step, path in scored_steps(run_dir).items():
        if step not in kept:
            continue
        try:
            record = read_scores(path)
        except ValueError:
            continue
        if record.model_digest == digest_or_none(kept[step]):
            found[step] = record
    return found


def best_step(run_dir: Path) -> int | None:
    """The step of the best kept checkpoint by RULE, or None when no kept checkpoint has scores."""
    best = best_of(kept_scores(run_dir).values())
    return best.step if best is not None else None
