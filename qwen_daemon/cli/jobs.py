"""`qwen-daemon` commands for the other job kinds and a run's files: prepare, diagnose, gate, history, verdict.

  qwen-daemon prepare SPEC_FILE [--surface S] [--runner process|docker]   (a preprocess job)
  qwen-daemon diagnose NAME [--step N]     (the job NAME.diagnose replays run NAME)
  qwen-daemon gate NAME [--asr DIR] [--verifier DIR] [--thresholds F] [--checkpoint N]   (job NAME.gate judges NAME)
  qwen-daemon history NAME [--json]        (losses, evals and listening scores, as the dashboard gets them)
  qwen-daemon verdict NAME [--json]        (run NAME's gate verdict, criterion by criterion)

Split from cli.py to keep each module about one thing. Like `launch`, `prepare`
reads the spec file here (its relative paths resolve against the file) and
sends it inline, so the daemon needs no access to where the file lies. The
gate's paths are the daemon host's: relative ones are made absolute here,
against the current directory, as they would be on that host.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from qwen_daemon.cli.args import name_arg
from qwen_daemon.cli.render import table
from qwen_daemon.cli.scores import history_scores_lines
from qwen_daemon.protocol import GateVerdict, RunHistory
from qwen_daemon.protocol.client import DaemonClient
from qwen_daemon.protocol.display import PLAIN
from qwen_train.gate.report import judges_lines, speaker_lines
from qwen_train.prepare.spec import load_prepare_spec

SHOWN_LOSSES = 20


def _prepare(client: DaemonClient, args: argparse.Namespace) -> Any:
    return client.prepare(load_prepare_spec(args.spec_file), surface=args.surface, runner=args.runner)


def _diagnose(client: DaemonClient, args: argparse.Namespace) -> Any:
    return client.diagnose(args.name, args.step)


def _history(client: DaemonClient, args: argparse.Namespace) -> Any:
    return client.history(args.name)


def _absolute(path: Path | None) -> str | None:
    return None if path is None else str(path.absolute())


def _gate(client: DaemonClient, args: argparse.Namespace) -> Any:
    return client.gate(args.name, asr=_absolute(args.asr), thresholds=_absolute(args.thresholds),
                       checkpoint=args.checkpoint, verifier=_absolute(args.verifier))


def _verdict(client: DaemonClient, args: argparse.Namespace) -> Any:
    return client.verdict(args.name)


def verdict_text(verdict: GateVerdict) -> str:
    """The overall verdict, one row per criterion (what was measured against which threshold, and why), the
    judges that measured, and one row per held-out speaker."""
    overall = "PASSED" if verdict.passed else "NOT PASSED"
    lines = [f"run {verdict.run}: gate {overall} (checkpoint step {verdict.checkpoint_step}, "
             f"decided {PLAIN.timestamp(verdict.decided_at)}, code {verdict.code_revision})",
             f"model {verdict.model} against base {verdict.base_model}"]
    rows = [["CRITERION", "RESULT", "MEASURED", "THRESHOLD", "DETAIL"]]
    rows += [[c.name, "pass" if c.passed else "FAIL", PLAIN.decimal(c.measured), PLAIN.decimal(c.threshold),
              c.detail] for c in verdict.criteria]
    lines.append(table(rows))
    lines += [*judges_lines(verdict), *speaker_lines(verdict)]  # as the gate's own log says them
    return "\n".join(lines)


def history_text(history: RunHistory) -> str:
    """The newest loss points, every eval and the listening scores; --json has them all."""
    scored = history_scores_lines(history.scores, history.base_scores, history.best_score_step)
    if not history.losses and not history.evals:
        return "\n".join([f"run {history.name}: no losses or evals recorded yet", *scored])
    lines = []
    if history.losses:
        first, last = history.losses[0].step, history.losses[-1].step
        lines.append(f"run {history.name}: {len(history.losses)} loss points, steps {first}..{last}")
        rows = [["STEP", "TOTAL", "TALKER", "CODE PREDICTOR"]]
        rows += [[str(p.step), PLAIN.decimal(p.total), PLAIN.decimal(p.talker), PLAIN.decimal(p.code_predictor)]
                 for p in history.losses[-SHOWN_LOSSES:]]
        lines.append(table(rows))
    if history.evals:
        splits = sorted({split for e in history.evals for split in e.per_split})
        rows = [["EVAL STEP", "TOTAL", *(s.upper() for s in splits)]]
        rows += [[str(e.step), PLAIN.decimal(e.total), *(PLAIN.decimal(e.per_split.get(s)) for s in splits)]
                 for e in history.evals]
        lines.append(table(rows))
    return "\n".join(lines + scored)


def add_parsers(sub: Any, common: argparse.ArgumentParser, wrap: Any) -> None:
    """`wrap` turns a (client, args) call into cli.py's command runner (errors, --json, text)."""
    p = sub.add_parser("prepare", parents=[common], help="launch a preprocess job from a prepare spec file",
                       description="Launch a preprocess job (qwen-train prepare) from a prepare spec file. "
                                   "Run it again with `resume NAME`: it continues from its journal.")
    p.add_argument("spec_file", metavar="SPEC_FILE", type=Path,
                   help="prepare spec JSON; relative paths in it resolve against the file")
    p.add_argument("--surface", default=None, help="surface the job runs on (default: default)")
    p.add_argument("--runner", default=None, choices=["process", "docker"], help="(default: process)")
    p.set_defaults(func=wrap(_prepare))

    p = sub.add_parser("diagnose", parents=[common], help="replay an ended run to a step and diagnose it",
                       description="Start the job NAME.diagnose: replay run NAME from its nearest durable "
                                   "checkpoint and rewrite its diagnosis.json. The run must not be active.")
    p.add_argument("name", metavar="NAME", type=name_arg, help="run name")
    p.add_argument("--step", type=int, default=None, help="step to replay (default: the last non-finite event's)")
    p.set_defaults(func=wrap(_diagnose))

    p = sub.add_parser("gate", parents=[common], help="run the promotion gate on an ended training run",
                       description="Start the job NAME.gate: `qwen-train gate` judges run NAME's newest checkpoint "
                                   "(or --checkpoint) and writes its verdict; `verdict NAME` shows it. The run "
                                   "must have ended; paths are on the daemon's host, under its bind roots.")
    p.add_argument("name", metavar="NAME", type=name_arg, help="run name")
    p.add_argument("--asr", type=Path, default=None, metavar="DIR", help="ASR model dir for intelligibility")
    p.add_argument("--verifier", type=Path, default=None, metavar="DIR",
                   help="speaker-verification model dir (default: the gate's own resemblyzer)")
    p.add_argument("--thresholds", type=Path, default=None, metavar="FILE", help="thresholds JSON file")
    p.add_argument("--checkpoint", type=int, default=None, metavar="STEP", help="checkpoint step to judge")
    p.set_defaults(func=wrap(_gate))

    p = sub.add_parser("verdict", parents=[common], help="a run's promotion-gate verdict, criterion by criterion",
                       description="Run NAME's gate verdict (RUN_DIR/gate/verdict.json), criterion by criterion.")
    p.add_argument("name", metavar="NAME", type=name_arg, help="run name")
    p.set_defaults(func=wrap(_verdict))

    p = sub.add_parser("history", parents=[common], help="a run's per-step losses, evals and listening scores",
                       description="A run's per-step losses (at most 2000 points), evals and listening scores.")
    p.add_argument("name", metavar="NAME", type=name_arg, help="run name")
    p.set_defaults(func=wrap(_history))
