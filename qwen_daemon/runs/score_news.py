"""What a scoring job found, told where an operator looks later: the run's events and journald.

When a launch of RUN.score ends (however it ended: one killed mid-way wrote
some records, and those count), each record it wrote becomes one event on run
RUN (`qwen-daemon show RUN`, the dashboard's events) and one journald entry
with the scores as structured fields (QWEN_RUN_ID, QWEN_SCORE_STEP, one field
per score, its judges), so `journalctl QWEN_RUN_ID=RUN QWEN_SCORE_STEP=500`
finds it. A record counts as the launch's when it was measured after the
launch began, which also holds across a daemon restart (the monitor's
reconciliation ends the launch and calls this).
"""

from __future__ import annotations

import logging
import time

from qwen_daemon.jobs.kinds.score import SCORE, fresh_scores, scores_of
from qwen_daemon.protocol import best_step
from qwen_daemon.protocol.display import PLAIN
from qwen_daemon.protocol.scores import COLUMNS, DNSMOS_JUDGE, VAD_JUDGE, ScorePoint, score_point, value
from qwen_daemon.runs.record import RunRecord
from qwen_daemon.runs.registry import Registry
from qwen_daemon.systemd.journal import JournalWriter
from qwen_train.scores.record import Scores

log = logging.getLogger(__name__)


def step_words(step: int | None) -> str:
    return "the base model" if step is None else f"step {step}"


def score_line(run: str, point: ScorePoint, best: int | None = None) -> str:
    """One line: whose scores, each measured one by its label, and whether it is the best checkpoint now."""
    measured = [f"{c.label} {PLAIN.decimal(v)}" for c in COLUMNS if (v := value(point, c)) is not None]
    mark = " (best checkpoint so far)" if point.step is not None and point.step == best else ""
    return f"run {run}: {step_words(point.step)} scored{mark}: {', '.join(measured) or 'nothing measured'}"


def journal_fields(run: str, scores: Scores, best: int | None) -> dict[str, object]:
    """The record as journald fields: who, which model and listening set, each score measured, its judges."""
    fields: dict[str, object] = {
        "QWEN_RUN_ID": run,
        "QWEN_SCORE_STEP": "base" if scores.step is None else scores.step,
        "QWEN_SCORE_CHECKPOINT": scores.checkpoint,
        "QWEN_SCORE_MODEL_DIGEST": scores.model_digest,
        "QWEN_SCORE_LISTENING_SET": scores.listening_set,
        "QWEN_SCORE_ROWS": scores.rows,
        "QWEN_SCORE_ASR": scores.asr or "none",
        "QWEN_SCORE_VERIFIER": scores.verifier or "none",
        "QWEN_SCORE_DNSMOS": scores.dnsmos or DNSMOS_JUDGE,
        "QWEN_SCORE_VAD": scores.vad or VAD_JUDGE,
        "QWEN_SCORE_BEST": int(scores.step is not None and scores.step == best),
    }
    point = score_point(scores)
    for column in COLUMNS:
        measured = value(point, column)
        if measured is not None:
            fields[f"QWEN_SCORE_{column.key.upper()}"] = f"{measured:.6g}"
    if scores.calibration is not None and scores.calibration.eer is not None:
        fields["QWEN_SCORE_VERIFIER_EER"] = f"{scores.calibration.eer:.6g}"
    return fields


class ScoreNews:
    """The monitor's end hook for scoring jobs: events on the scored run, entries in the journal."""

    def __init__(self, registry: Registry, journal: JournalWriter | None) -> None:
        self.registry = registry
        self.journal = journal

    def launch_ended(self, record: RunRecord) -> None:
        if record.kind != SCORE.info.kind or record.parent is None:
            return
        found = scores_of(record)
        fresh = fresh_scores(record, found)
        if found is None or not fresh:
            return
        best = best_step([score_point(s) for s in found.checkpoints])
        for scores in fresh:
            line = score_line(record.parent, score_point(scores), best)
            self.registry.add_event(record.parent, "scores", line, time.time())
            if self.journal is not None:
                self.journal.send(line, journal_fields(record.parent, scores, best))
            log.info("%s", line)
