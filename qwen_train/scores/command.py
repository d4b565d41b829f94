"""`qwen-train score RUN_DIR`: listen to a run's checkpoints (and the base model) and write their scores.

What it scores: `--checkpoint STEP` that kept checkpoint; `--all-unscored` every kept checkpoint without
current scores; `--base` the base model; none of the three: all of it (every unscored checkpoint and the
base). "Current" means a scores file of the same model (its digest), the same listening set and the same
judges: anything else is scored again, and anything current is skipped, so a call that was killed is
simply repeated (engine.py keeps every row's finished work). The base row is cached by the base model's
digest and the set's (RUN_DIR/scores/base.json) and is scored once.

It runs beside the run's trainer (which holds RUN_DIR/run.lock): it takes only RUN_DIR/scores/run.lock,
so two scorers never write one run's scores at once. A checkpoint's scores go to the run's TensorBoard at
its step (board.py). `--plan` prints what scoring needs of a GPU (plan.py) and scores nothing.

Exit codes (qwen_train/exitcodes.py): COMPLETED when everything asked for is scored; USAGE for a run dir,
step, judge or device that cannot be used (nothing written); RUN_LOCKED when another scorer holds the run;
FAILED when a checkpoint could not be scored (the others still are; the message says which and why);
FAILED_DISK_FULL when the disk could not take the scores; STOPPED on SIGTERM (what was done is kept).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from types import FrameType

import msgspec

from qwen_train import exitcodes
from qwen_train.checkpoint_files import CheckpointError, list_checkpoints, pick_checkpoint, read_meta
from qwen_train.disk import DiskFull
from qwen_train.run_lock import RunLocked, acquire
from qwen_train.scores.judges import JudgeDirs
from qwen_train.scores.listening import ListeningSet, listening_set
from qwen_train.scores.options import ScoreOptions, ScoreUsageError, Stopped
from qwen_train.scores.record import SCORES_DIR
from qwen_train.spec import RunSpec, SpecError, decode_spec, load_spec
from qwen_train.status import NONCE_ENV

RUN_SPEC_FILE = "spec.json"


def run_spec(run_dir: Path) -> RunSpec:
    """RUN_DIR/spec.json (the daemon writes it), else the newest checkpoint's recorded spec."""
    if (run_dir / RUN_SPEC_FILE).is_file():
        try:
            return load_spec(run_dir / RUN_SPEC_FILE)
        except SpecError as exc:
            raise ScoreUsageError(f"{exc}; fix or remove {run_dir / RUN_SPEC_FILE}") from None
    for ckpt in reversed(_kept(run_dir)):
        try:
            return decode_spec(read_meta(ckpt).spec, source=f"{ckpt}/meta.json")
        except (CheckpointError, SpecError):
            continue
    raise ScoreUsageError(f"{run_dir}: no run spec (no {RUN_SPEC_FILE}, no readable checkpoint): scoring needs "
                          "the run's spec for its base model, bundle and listening set")


def _kept(run_dir: Path) -> list[Path]:
    try:
        return list_checkpoints(run_dir)
    except OSError as exc:
        raise ScoreUsageError(f"cannot list the checkpoints of {run_dir}: {exc.strerror or exc}") from None


def _device(name: str) -> object:
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as exc:
        raise ScoreUsageError(f"--device {name!r}: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ScoreUsageError(f"--device {name}: this torch sees no CUDA device; use --device cpu")
    return device


def _check_judges(opts: ScoreOptions) -> JudgeDirs:
    for flag, path in (("--asr", opts.asr), ("--verifier", opts.verifier)):
        if path is not None and not (path / "config.json").is_file():
            raise ScoreUsageError(f"{flag} {path} is not a model directory (no config.json)")
    return JudgeDirs(asr=opts.asr.resolve() if opts.asr else None,
                     verifier=opts.verifier.resolve() if opts.verifier else None)


def _listening(spec: RunSpec) -> ListeningSet:
    from qwen_train.bundle.manifest import BundleError

    try:
        return listening_set(Path(spec.bundle), spec.scores)
    except (BundleError, ValueError) as exc:
        raise ScoreUsageError(str(exc)) from None


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Stopped()


def score_main(opts: ScoreOptions) -> int:
    """The command; prints what it did, returns the exit code."""
    try:
        if not opts.run_dir.is_dir():
            raise ScoreUsageError(f"{opts.run_dir} is not a directory: give the RUN_DIR of a training run")
        run_dir = opts.run_dir.resolve()
        spec = run_spec(run_dir)
        judges = _check_judges(opts)
        if opts.plan:
            return _print_plan(spec, judges)
        device = _device(opts.device)
        lset = _listening(spec)
        if opts.checkpoint is not None:
            kept = _kept(run_dir)
            if not kept:
                raise ScoreUsageError(f"{run_dir} has no durable checkpoint to score")
            pick_checkpoint(run_dir, opts.checkpoint, kept)
    except (ScoreUsageError, CheckpointError) as exc:
        print(f"qwen-train score: {exc}", file=sys.stderr)
        return exitcodes.USAGE
    try:
        lock = acquire(run_dir / SCORES_DIR, os.environ.get(NONCE_ENV), f"qwen-train score {run_dir}")
    except RunLocked as exc:
        print(f"qwen-train score: {exc}", file=sys.stderr)
        return exitcodes.RUN_LOCKED
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        with lock:
            from qwen_train.scores.session import Session

            return Session(run_dir, spec, lset, judges, device).run(opts)
    except Stopped:
        print("qwen-train score: stopped (SIGTERM); every clone and judgement finished so far is kept: run it "
              "again to go on", file=sys.stderr)
        return exitcodes.STOPPED
    except DiskFull as exc:
        print(f"qwen-train score: {exc}; free space there and run it again (what was written is kept)",
              file=sys.stderr)
        return exitcodes.FAILED_DISK_FULL
    finally:
        signal.signal(signal.SIGTERM, previous)


def _print_plan(spec: RunSpec, judges: JudgeDirs) -> int:
    from qwen_train.scores.plan import scoring_plan

    try:
        plan = scoring_plan(spec, judges.asr)
    except ValueError as exc:
        print(f"qwen-train score: {exc}", file=sys.stderr)
        return exitcodes.USAGE
    print(msgspec.json.format(msgspec.json.encode(plan)).decode())
    return exitcodes.COMPLETED
