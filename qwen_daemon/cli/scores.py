"""`qwen-daemon scores NAME [--json]`: a run's listening scores, checkpoint by checkpoint, against the base model.

One row per scored checkpoint (oldest first) under the base model's row, one
column per score, the best checkpoint by protocol.scores.BEST_RULE marked; then
who measured each score (the judges), the verifier's calibration on the
bundle's real speakers, why any score was not measured, the kept checkpoints
still to be scored, and any scores file the daemon had to leave out. A run's
history (`qwen-daemon history NAME`) ends with the same table, from its points.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from qwen_daemon.cli.args import name_arg
from qwen_daemon.cli.render import table
from qwen_daemon.protocol import BEST_RULE, RunScores, ScorePoint
from qwen_daemon.protocol.client import DaemonClient
from qwen_daemon.protocol.display import PLAIN
from qwen_daemon.protocol.scores import COLUMNS, judge_name, notes_by_reason, score_point, value
from qwen_train.scores.record import Calibration

BEST_MARK = "*"


def points_table(points: Sequence[ScorePoint], base: ScorePoint | None, best: int | None) -> str:
    """STEP and one column per score; the base row first, the best step marked."""
    rows = [["STEP", *(c.label.upper() for c in COLUMNS)]]
    for point in ([base] if base is not None else []) + list(points):
        step = "base" if point.step is None else f"{point.step}{' ' + BEST_MARK if point.step == best else ''}"
        rows.append([step, *(PLAIN.decimal(value(point, c)) for c in COLUMNS)])
    return table(rows)


def judges_lines(points: Sequence[ScorePoint]) -> list[str]:
    """Who measured which score: one line per judge, in the order the columns name them."""
    judges: dict[str, list[str]] = {}
    for column in COLUMNS:
        judges.setdefault(judge_name(column, points), []).append(column.label.upper())
    return [f"  {', '.join(labels)} by {judge}" for judge, labels in judges.items()]


def calibration_line(calibration: Calibration) -> str:
    eer = PLAIN.decimal(calibration.eer, 3)
    pairs = f"{calibration.same_pairs} same-speaker and {calibration.different_pairs} different-speaker pairs"
    verdict = "separates them" if calibration.measurable else f"NOT MEASURABLE: {calibration.reason}"
    return (f"verifier {calibration.verifier} on the bundle's real speakers: EER {eer} over {pairs}, "
            f"same-speaker median {PLAIN.decimal(calibration.same_median, 3)}; {verdict}")


def notes_lines(points: Sequence[ScorePoint]) -> list[str]:
    """Each reason once, with the score it concerns and where (the base, the steps) it holds."""
    return [f"  {label} ({', '.join(where)}): {why}" for (label, why), where in notes_by_reason(points).items()]


def scores_text(scores: RunScores) -> str:
    """The table and everything an operator needs to read it."""
    points = [score_point(s) for s in scores.checkpoints]
    base = score_point(scores.base) if scores.base is not None else None
    every = ([base] if base is not None else []) + points
    best = f"best: step {scores.best}" if scores.best is not None else "no best yet"
    lines = [f"run {scores.run}: {len(points)} checkpoint{'s' if len(points) != 1 else ''} scored, "
             f"{'a base row' if base is not None else 'no base row yet'}; {best}"]
    if every:
        lines += [points_table(points, base, scores.best), f"{BEST_MARK} best by rule: {scores.best_rule}",
                  "judges:", *judges_lines(every)]
    calibrated = next((s.calibration for s in [*scores.checkpoints, *([scores.base] if scores.base else [])][::-1]
                       if s.calibration is not None), None)
    if calibrated is not None:
        lines.append(calibration_line(calibrated))
    notes = notes_lines(every)
    lines += ["not measured:", *notes] if notes else []
    scored = {s.step for s in scores.checkpoints}
    waiting = [str(step) for step in scores.kept if step not in scored]
    lines += [f"kept checkpoints without scores yet: {', '.join(waiting)}"] if waiting else []
    lines += [f"left out: {p.error}" for p in scores.problems]
    return "\n".join(lines)


def history_scores_lines(points: Sequence[ScorePoint], base: ScorePoint | None, best: int | None) -> list[str]:
    """A history's score curves as the same table (no lines where nothing was scored)."""
    if not points and base is None:
        return []
    return [f"listening scores ({BEST_MARK} best by rule: {BEST_RULE}):", points_table(points, base, best)]


def _scores(client: DaemonClient, args: argparse.Namespace) -> Any:
    return client.scores(args.name)


def add_parser(sub: Any, common: argparse.ArgumentParser, wrap: Any) -> None:
    """`wrap` turns a (client, args) call into cli/main.py's command runner (errors, --json, text)."""
    p = sub.add_parser("scores", parents=[common], help="a run's listening scores, checkpoint by checkpoint",
                       description="Run NAME's listening scores (RUN_DIR/scores/): each scored checkpoint against "
                                   "the base model, each score with its judge, the best checkpoint marked.")
    p.add_argument("name", metavar="NAME", type=name_arg, help="run name")
    p.set_defaults(func=wrap(_scores))
