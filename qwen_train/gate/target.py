"""What the gate judges: the run dir, its spec, the checkpoint or export, the base model.

Everything an operator names on the command line is checked here, before
anything is exported, loaded or written, so a usage error (exit 2) leaves
the run dir exactly as it was: an old verdict stays until a new one is
complete.

Which checkpoint: the one named with --checkpoint, else the best-scored kept
checkpoint by the rule retention and the daemon use (scores/best.py), else,
while no kept checkpoint has listening scores, the newest; the verdict says
which and why.

The run's spec comes from RUN_DIR/spec.json (the daemon writes it), else the
judged checkpoint's meta.json (the trainer records the spec it ran), else
the export's export.json. Its `model` is the default base, its `bundle` the
held-out data, its `language` the tag clones are generated with.

The judges' directories are checked here too: --asr must be a model dir
(config.json), whose `model_type` says which decoding it gets (whisper, or
CTC); --verifier must be a model dir as well (a transformers audio x-vector
model). Without --verifier the gate's own default verifier is used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import msgspec

from qwen_train.checkpoint_files import CKPT_DIR, CheckpointError, list_checkpoints, pick_checkpoint, read_meta
from qwen_train.export import ExportProvenance
from qwen_train.gate.thresholds import Thresholds, ThresholdsError, load_thresholds
from qwen_train.scores.best import RULE, best_step
from qwen_train.spec import RunSpec, SpecError, decode_spec, load_spec

RESOURCES_FILE = "resources.json"
RUN_SPEC_FILE = "spec.json"


class GateUsageError(ValueError):
    """The gate cannot judge what it was given; the message names the thing and what to do."""


@dataclass(frozen=True)
class GateOptions:
    run_dir: Path
    checkpoint: int | None = None
    export: Path | None = None
    base: Path | None = None
    asr: Path | None = None
    resources: Path | None = None
    thresholds: Path | None = None
    max_rows: int | None = None
    verifier: Path | None = None


@dataclass(frozen=True)
class Target:
    run_dir: Path
    spec: RunSpec
    base: Path
    step: int  # the judged checkpoint's step; -1 when an --export records none
    export: Path  # where the judged model is (or will be, once `to_export` is exported)
    to_export: Path | None  # the checkpoint to export first, None when the export exists
    asr: Path | None
    resources: Path
    thresholds: Thresholds
    verifier: Path | None = None  # None: the default verifier (resemblyzer)
    checkpoint: Path | None = None  # the run's checkpoint judged (None: an --export)
    chosen_by: str = ""  # why this checkpoint


def asr_family(model_dir: Path) -> Literal["whisper", "ctc"]:
    """How an ASR dir is decoded: "whisper" when its config.json says model_type whisper, else "ctc"."""
    try:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "ctc"  # loading it will say what is wrong, as the criterion's reason
    return "whisper" if isinstance(config, dict) and config.get("model_type") == "whisper" else "ctc"


def _judge_dir(path: Path | None, flag: str, what: str) -> None:
    if path is not None and not (path / "config.json").is_file():
        raise GateUsageError(f"{flag} {path} is not a model directory (no config.json): give {what}")


def _exported_step(export: Path) -> int | None:
    try:
        return msgspec.json.decode((export / "export.json").read_bytes(), type=ExportProvenance).step
    except (OSError, msgspec.MsgspecError):
        return None


def _kept(run_dir: Path) -> list[Path]:
    """The run's durable checkpoints; a checkpoints path that cannot be listed is a usage error, not "none"."""
    try:
        return list_checkpoints(run_dir)
    except OSError as exc:
        where = run_dir / CKPT_DIR
        raise GateUsageError(f"cannot list the checkpoints in {where}: {exc.strerror or exc}; make it a readable "
                             "directory, or pass --export DIR to judge a model exported already") from None


def _checkpoint(run_dir: Path, step: int | None) -> tuple[Path, str]:
    """The checkpoint to judge and why: the one named, else the best-scored by scores.best.RULE, else (no kept
    checkpoint has current scores yet) the newest."""
    ckpts = _kept(run_dir)
    if not ckpts:
        raise GateUsageError(f"{run_dir} has no durable checkpoint to judge: train the run first, or pass "
                             "--export DIR to judge a model exported already")
    best = best_step(run_dir) if step is None else None
    why = ("named with --checkpoint" if step is not None else
           f"the best-scored kept checkpoint ({RULE})" if best is not None else
           "the newest kept checkpoint: none has listening scores yet")
    try:
        return pick_checkpoint(run_dir, step if step is not None else best, ckpts), why
    except CheckpointError as exc:
        raise GateUsageError(str(exc)) from None


def _model_dir(path: Path, what: str, fix: str) -> Path:
    if not (path / "config.json").is_file():
        raise GateUsageError(f"{what} {path} is not a model directory (no config.json): {fix}")
    return path


@dataclass(frozen=True)
class Judged:
    export: Path  # where the judged model is (or will be)
    to_export: Path | None  # the checkpoint to export first
    step: int
    checkpoint: Path | None  # the run's checkpoint judged (None for an --export)
    chosen_by: str


def _judged(opts: GateOptions, run_dir: Path) -> Judged:
    if opts.export is not None:
        export = _model_dir(opts.export, "--export", "give a directory written by `qwen-train export`")
        step = _exported_step(export)
        return Judged(export, None, step if step is not None else (opts.checkpoint or -1), None,
                      f"the exported model {export}, named with --export")
    ckpt, why = _checkpoint(run_dir, opts.checkpoint)
    step = int(ckpt.name.split("-")[1])
    export = run_dir / "export" / ckpt.name
    if not export.exists():
        return Judged(export, ckpt, step, ckpt, why)
    if _exported_step(export) != step:
        raise GateUsageError(f"{export} exists but is not an export of {ckpt.name}: move it away, or pass "
                             "--export to judge it as it is")
    return Judged(export, None, step, ckpt, why)  # exported earlier (exports are renamed into place whole)


def _spec(run_dir: Path, checkpoint: Path | None, export: Path) -> RunSpec:
    if (run_dir / RUN_SPEC_FILE).is_file():
        try:
            return load_spec(run_dir / RUN_SPEC_FILE)
        except SpecError as exc:
            raise GateUsageError(f"{exc}; fix or remove {run_dir / RUN_SPEC_FILE}") from None
    try:
        sources: list[Path] = [checkpoint] if checkpoint is not None else list_checkpoints(run_dir)[-1:]
    except OSError:  # judging an --export: its export.json may still name the spec
        sources = []
    for ckpt in sources:
        try:
            return decode_spec(read_meta(ckpt).spec, source=f"{ckpt}/meta.json")
        except (CheckpointError, SpecError):
            continue
    try:
        record = msgspec.json.decode((export / "export.json").read_bytes(), type=ExportProvenance)
        return decode_spec(record.spec, source=f"{export}/export.json")
    except (OSError, msgspec.MsgspecError, SpecError):
        pass
    raise GateUsageError(f"{run_dir}: no run spec found (no {RUN_SPEC_FILE}, no readable checkpoint meta.json, "
                         "no export.json): the gate needs the run's spec for its bundle and base model")


def resolve(opts: GateOptions) -> Target:
    """Check every named input; GateUsageError (exit 2) before anything is touched."""
    if not opts.run_dir.is_dir():
        raise GateUsageError(f"{opts.run_dir} is not a directory: give the RUN_DIR of a training run")
    if opts.max_rows is not None and opts.max_rows <= 0:
        raise GateUsageError(f"--max-rows must be positive, got {opts.max_rows}")
    try:
        thresholds = load_thresholds(opts.thresholds)
    except ThresholdsError as exc:
        raise GateUsageError(str(exc)) from None
    run_dir = opts.run_dir.resolve()
    judged = _judged(opts, run_dir)
    export, to_export, step = judged.export, judged.to_export, judged.step
    spec = _spec(run_dir, to_export, export)
    base = _model_dir(opts.base or Path(spec.model), "base model", "pass --base MODEL_DIR")
    _judge_dir(opts.asr, "--asr", "a Whisper-family model directory such as KBLab's kb-whisper-large, or a "
               "CTC one (config.json, preprocessor and tokenizer files)")
    _judge_dir(opts.verifier, "--verifier", "a transformers speaker-verification (audio x-vector) model "
               "directory with its feature extractor, or leave it out for the default verifier")
    if opts.max_rows is not None:
        thresholds = msgspec.structs.replace(thresholds, eval_max_rows=opts.max_rows, clone_max_rows=opts.max_rows)
    return Target(run_dir=run_dir, spec=spec, base=base, step=step, export=export, to_export=to_export,
                  asr=opts.asr, resources=opts.resources or run_dir / RESOURCES_FILE, thresholds=thresholds,
                  verifier=opts.verifier, checkpoint=judged.checkpoint, chosen_by=judged.chosen_by)
