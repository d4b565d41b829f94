"""`qwen-train`: the training side's command line.

Commands that need torch import it lazily, so `--help` and the error paths
work on a host without the training extra. Output piped into a reader that
goes away (`qwen-train plan spec.json | head -3`) ends the command quietly.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from collections.abc import Callable
from pathlib import Path
from typing import get_args

from qwen_train import exitcodes
from qwen_train.closed_pipe import quiet_on_closed_pipe
from qwen_train.export import ExportDiskFull, ExportError
from qwen_train.run_lock import RunLocked, acquire
from qwen_train.spec import Lane, SpecError, check_name, load_spec
from qwen_train.status import NONCE_ENV
from qwen_train.train.device.ranks import RANK_ENV, SUPERVISOR_ENV


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qwen-train", description="Qwen3-TTS Swedish fine-tuning: data, training, export.")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="train from a run spec (JSON)")
    run.add_argument("spec", type=Path)
    run.add_argument("--run-dir", type=Path, help="where status.json, checkpoints and logs go (default: runs/NAME)")
    run.add_argument("--run-id", help="run id echoed in status.json (default: the spec's name)")
    run.add_argument("--nonce", default=os.environ.get(NONCE_ENV), help="launch nonce from the daemon")
    run.add_argument("--resume", action="store_true", help="continue from the newest durable checkpoint")
    run.add_argument("--reset-cursor", action="store_true",
                     help="resume the checkpoint's weights but restart its epoch from the first batch (recorded)")
    run.add_argument("--bundle-root", type=Path,
                     help="use the bundle at this path instead of the spec's (its content must match on resume)")

    diagnose = sub.add_parser("diagnose", help="replay a run to a step and localise its non-finite loss")
    diagnose.add_argument("run_dir", type=Path)
    diagnose.add_argument("--step", type=int, help="step to replay (default: the last non-finite event's)")

    export = sub.add_parser("export", help="write a loadable model directory from a run's checkpoint")
    export.add_argument("run_dir", type=Path)
    export.add_argument("--checkpoint", type=int, help="step to export (default: the newest durable checkpoint)")
    export.add_argument("--out", type=Path, help="output directory (default: RUN_DIR/export/step-N)")
    export.add_argument("--adapter", action="store_true",
                        help="an adapter run's LoRA adapter alone, in peft's format, instead of the merged model "
                             "(default dir RUN_DIR/export/step-N-adapter)")

    gate = sub.add_parser("gate", help="judge a run's checkpoint against the promotion gate; writes RUN_DIR/gate/")
    gate.add_argument("run_dir", type=Path)
    gate.add_argument("--checkpoint", type=int, help="step to judge (default: the newest durable checkpoint)")
    gate.add_argument("--export", type=Path, help="judge this exported model dir instead of exporting a checkpoint")
    gate.add_argument("--base", type=Path, help="base model dir to beat (default: the run spec's model)")
    gate.add_argument("--asr", type=Path, help="ASR model dir for intelligibility: a Swedish Whisper (KB-Whisper) "
                      "or a CTC model (a Swedish wav2vec2)")
    gate.add_argument("--verifier", type=Path, help="speaker-verification model dir (a transformers x-vector model) "
                      "for speaker_similarity (default: resemblyzer's shipped encoder)")
    gate.add_argument("--resources", type=Path, help="resource summary (default: RUN_DIR/resources.json)")
    gate.add_argument("--thresholds", type=Path, help="thresholds JSON file (default: the built-in thresholds)")
    gate.add_argument("--max-rows", type=int, help="bound eval rows and clones to N each")

    score = sub.add_parser("score", help="listen to a run's checkpoints and the base model: clones of the listening "
                           "set, judged; writes RUN_DIR/scores/")
    score.add_argument("run_dir", type=Path)
    what = score.add_mutually_exclusive_group()
    what.add_argument("--checkpoint", type=int, help="score this kept checkpoint's step")
    what.add_argument("--all-unscored", action="store_true", help="score every kept checkpoint without current scores")
    score.add_argument("--base", action="store_true", help="score the base model (once: cached by its digest and the "
                       "listening set's); with neither option above, everything unscored and the base")
    score.add_argument("--asr", type=Path, help="ASR judge dir: a Swedish Whisper (KB-Whisper) or a CTC model "
                       "(none: CER, WER and language are not measured)")
    score.add_argument("--verifier", type=Path, help="speaker-verification model dir (a transformers x-vector model; "
                       "default: resemblyzer's shipped encoder)")
    score.add_argument("--device", default="auto", help="cuda, cuda:N or cpu (default: cuda when there is one)")
    score.add_argument("--plan", action="store_true", help="print what scoring needs of a GPU, by part, as JSON, and "
                       "score nothing")

    demo = sub.add_parser("demo", help="generate the Swedish demo corpus, tiny model, bundle and spec")
    demo.add_argument("dir", type=Path)
    demo.add_argument("--seed", type=int, default=0)

    tiny = sub.add_parser("tiny-model", help="build the tiny random-weight Qwen3-TTS model")
    tiny.add_argument("out", type=Path)
    tiny.add_argument("--seed", type=int, default=0)

    corpus = sub.add_parser("corpus", help="speak the Swedish demo corpus with espeak-ng")
    corpus.add_argument("out", type=Path)
    corpus.add_argument("--per-speaker", type=int, default=12)

    bundle = sub.add_parser("bundle", help="build or verify a frozen bundle")
    bsub = bundle.add_subparsers(dest="bundle_command", required=True)
    build = bsub.add_parser("build", help="build a bundle from a corpus JSONL")
    build.add_argument("corpus", type=Path)
    build.add_argument("--model", type=Path, required=True, help="model dir with speech_tokenizer/")
    build.add_argument("--out", type=Path, required=True)
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--held-out-speakers", type=int, default=1)
    build.add_argument("--root", type=Path, help="the directory the corpus's audio lies in (default: the JSONL's "
                       "directory); absolute paths in the JSONL must lie inside it, relative ones stay relative "
                       "to the JSONL")
    build.add_argument("--lane", choices=get_args(Lane), help="the request lane the bundle is for: "
                       "language-expansion refuses a split without held-out speakers")
    verify = bsub.add_parser("verify", help="check a bundle against its fingerprint")
    verify.add_argument("dir", type=Path)

    prep = sub.add_parser("prepare", help="preprocess corpora into a frozen bundle from a prepare spec (JSON)")
    prep.add_argument("spec", type=Path)
    prep.add_argument("--run-dir", type=Path, help="where status.json goes (default: runs/NAME)")
    prep.add_argument("--run-id", help="run id echoed in status.json (default: the spec's name)")
    prep.add_argument("--nonce", default=os.environ.get(NONCE_ENV), help="launch nonce from the daemon")
    prep.add_argument("--max-rows", type=int, help="bound this window to N rows (overrides the spec)")
    prep.add_argument("--max-seconds", type=float, help="bound this window's wall time (overrides the spec)")
    prep.add_argument("--lane", choices=get_args(Lane), help="the request lane the bundle is for: "
                      "language-expansion refuses a split without held-out speakers")

    plan = sub.add_parser("plan", help="predict a run's GPU memory peak by part, and the largest micro-batch that fits")
    plan.add_argument("spec", type=Path)
    plan.add_argument("--gpu-memory", help="the card's memory, e.g. 32GiB: also print the largest budget that fits")
    plan.add_argument("--headroom", type=float, default=0.10, help="share of the card kept free (default 0.10)")
    plan.add_argument("--frames", type=int, help="codec frames per micro-batch (default: the spec's budget, or "
                      "batch_size rows of the bundle's longest)")
    plan.add_argument("--recipe", help="plan another recipe than the spec's (fp32-master, lean, upstream)")
    plan.add_argument("--json", action="store_true", help="print the plan as JSON (what the daemon reads)")
    plan.add_argument("--run-dir", type=Path, help="the run dir whose disk must hold the run's checkpoints and export "
                      "(default: runs/NAME): the disk plan is checked against its file system's free space")

    doctor = sub.add_parser("doctor", help="check the training stack's versions, the GPU (backend, arch, bf16, "
                            "free memory) and whether torch.compile works on it")
    doctor.add_argument("--require-compile", action="store_true",
                        help="fail when the compile probe fails (the trainer itself falls back to eager)")
    return p


def _cmd_plan(args: argparse.Namespace) -> int:
    import msgspec

    from qwen_train.plan import parse_size, plan_for_spec
    from qwen_train.plan.disk import disk_text, plan_disk
    from qwen_train.plan.render import plan_text

    try:
        gpu = parse_size(args.gpu_memory) if args.gpu_memory else None
        if not 0.0 <= args.headroom < 1.0:
            raise ValueError(f"--headroom {args.headroom}: a share from 0 to below 1")
        spec = load_spec(args.spec)
        plan = plan_for_spec(spec, gpu, args.headroom, args.frames, args.recipe)
        disk = plan_disk(spec, args.run_dir or Path("runs") / spec.name, gpu, args.recipe)
    except (ValueError, OSError) as exc:
        print(f"qwen-train plan: {exc}", file=sys.stderr)
        return exitcodes.USAGE
    if args.json:  # the memory plan's fields as before, the disk plan beside them
        both = {**msgspec.to_builtins(plan), "disk": msgspec.to_builtins(disk)}
        print(msgspec.json.format(msgspec.json.encode(both)).decode())
    else:
        print(f"{plan_text(plan)}\n\n{disk_text(disk)}")
    return 0 if plan.fits is not False and disk.fits is not False else exitcodes.FAILED


def _holding(run_dir: Path, nonce: str | None, command: str, body: Callable[[], int]) -> int:
    """Run `body` holding the run dir's lock; a second process on a held run dir touches nothing."""
    try:
        lock = acquire(run_dir, nonce, command)
    except RunLocked as exc:
        print(f"qwen-train: {exc}", file=sys.stderr)
        return exitcodes.RUN_LOCKED
    with lock:
        return body()


def _run_dir(args: argparse.Namespace, name: str, command: str) -> Path:
    """--run-dir, or runs/NAME under the current directory, said on stderr so the files can be found."""
    if args.run_dir is not None:
        return Path(args.run_dir)
    run_dir = Path("runs") / name
    print(f"qwen-train {command}: no --run-dir given; status.json and the run's files go to {run_dir.absolute()}",
          file=sys.stderr, flush=True)
    return run_dir


def _holds_lock() -> bool:
    """A rank of our own supervisor runs under the supervisor's lock; under another launcher rank 0 takes it."""
    return SUPERVISOR_ENV not in os.environ and os.environ.get(RANK_ENV, "0") == "0"


def _torch_refusal() -> str | None:
    """Why this torch cannot train (torch_stack's verdict, the doctor's words), or None: checked before any work,
    so a run under an untested torch or a torchaudio of another build leaves its run dir as it was."""
    from qwen_train.torch_stack import installed_verdict

    verdict = installed_verdict()
    return None if verdict.ok else verdict.text()


def _cmd_run(args: argparse.Namespace) -> int:
    refusal = _torch_refusal()
    if refusal is not None:
        print(f"qwen-train run: refused: {refusal}", file=sys.stderr)
        return exitcodes.TORCH_UNSUPPORTED
    from qwen_train.train.loop import run_training

    spec = load_spec(args.spec)
    run_id = check_name(args.run_id or spec.name)
    run_dir = _run_dir(args, spec.name, "run")
    nonce = args.nonce or secrets.token_hex(8)

    def train() -> int:
        return run_training(spec, run_dir, run_id, nonce, resume=args.resume, reset_cursor=args.reset_cursor,
                            bundle_root=args.bundle_root)

    return _holding(run_dir, nonce, f"qwen-train run {run_id}", train) if _holds_lock() else train()


def _cmd_bundle(args: argparse.Namespace) -> int:
    from qwen_train.bundle.fingerprint import verify_bundle

    if args.bundle_command == "verify":
        print(f"bundle {args.dir} ok: fingerprint {verify_bundle(args.dir)}")
        return 0
    from qwen_train.bundle.build import build_bundle

    out = build_bundle(args.corpus, args.model, args.out, seed=args.seed, held_out_speakers=args.held_out_speakers,
                       lane=args.lane, root=args.root)
    print(f"bundle written to {out}")
    return 0


def _cmd_doctor(args: argparse.Namespace) -> int:
    from qwen_train.doctor import run_doctor

    return run_doctor(require_compile=args.require_compile)


def _cmd_prepare(args: argparse.Namespace) -> int:
    import msgspec

    from qwen_train.prepare.run import run_prepare
    from qwen_train.prepare.spec import load_prepare_spec, validate_prepare_spec

    spec = load_prepare_spec(args.spec)
    bounds = {k: v for k, v in (("max_rows", args.max_rows), ("max_seconds", args.max_seconds)) if v is not None}
    spec = validate_prepare_spec(msgspec.structs.replace(spec, **bounds))
    run_id = check_name(args.run_id or spec.name)
    run_dir = _run_dir(args, spec.name, "prepare")
    nonce = args.nonce or secrets.token_hex(8)
    return _holding(run_dir, nonce, f"qwen-train prepare {run_id}",
                    lambda: run_prepare(spec, run_dir, run_id, nonce, args.lane))


def _on_run_dir(args: argparse.Namespace, body: Callable[[], int]) -> int:
    """diagnose and gate write into an existing run's dir: they hold its lock as its trainer would."""
    if not args.run_dir.is_dir():
        return body()  # the command itself names the missing dir
    return _holding(args.run_dir, os.environ.get(NONCE_ENV), f"qwen-train {args.command} {args.run_dir}", body)


def _cmd_diagnose(args: argparse.Namespace) -> int:
    from qwen_train.train.guard.replay import DiagnoseError, diagnose_run

    try:
        print(diagnose_run(args.run_dir, args.step).summary)
    except DiagnoseError as exc:
        print(f"qwen-train: {exc}", file=sys.stderr)
        return exitcodes.USAGE
    return 0


def dispatch(args: argparse.Namespace) -> int:
    if args.command == "prepare":
        return _cmd_prepare(args)
    if args.command == "run":
        return _cmd_run(args)
    if args.command == "bundle":
        return _cmd_bundle(args)
    if args.command == "doctor":
        return _cmd_doctor(args)
    if args.command == "plan":
        return _cmd_plan(args)
    if args.command == "diagnose":
        return _on_run_dir(args, lambda: _cmd_diagnose(args))
    if args.command == "export":
        from qwen_train.export import export_run

        print(f"exported to {export_run(args.run_dir, args.checkpoint, args.out, adapter_only=args.adapter)}")
        return 0
    if args.command == "gate":
        from qwen_train.gate.run import gate_main
        from qwen_train.gate.target import GateOptions

        options = GateOptions(args.run_dir, args.checkpoint, args.export, args.base, args.asr, args.resources,
                              args.thresholds, args.max_rows, args.verifier)
        return _on_run_dir(args, lambda: gate_main(options))
    if args.command == "score":
        from qwen_train.scores.command import ScoreOptions, score_main

        return score_main(ScoreOptions(args.run_dir, args.checkpoint, args.all_unscored, args.base, args.asr,
                                       args.verifier, args.device, args.plan))
    if args.command == "demo":
        from qwen_train.demo import build_demo

        print(f"demo spec: {build_demo(args.dir, seed=args.seed)}")
        return 0
    if args.command == "tiny-model":
        from qwen_train.tiny.model import build_tiny_model

        print(f"tiny model written to {build_tiny_model(args.out, seed=args.seed)}")
        return 0
    from qwen_train.corpus.espeak import generate_corpus

    print(f"corpus written to {generate_corpus(args.out, per_speaker=args.per_speaker)}")
    return 0


@quiet_on_closed_pipe
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from qwen_train.bundle.manifest import BundleError
    from qwen_train.bundle.paths import PathEscape
    from qwen_train.corpus.espeak import CorpusError
    from qwen_train.safe_read import UnsafeFile

    try:
        return dispatch(args)
    except ExportDiskFull as exc:
        print(f"qwen-train: {exc}", file=sys.stderr)
        return exitcodes.FAILED_DISK_FULL
    except (SpecError, BundleError, CorpusError, FileExistsError, ExportError, UnsafeFile, PathEscape) as exc:
        print(f"qwen-train: {exc}", file=sys.stderr)
        return exitcodes.USAGE
