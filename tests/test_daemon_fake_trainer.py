#!/usr/bin/env python3
"""A stand-in trainer for the daemon's tests: the launch contract, no training.

Not a test module (it has no tests); it is run as a program, through a small
wrapper that the tests pass to the daemon as `--trainer-python`, so the
daemon spawns it exactly as it spawns the real one:

  WRAPPER -m qwen_train run SPEC --run-dir D --run-id NAME --nonce NONCE [--resume]
  WRAPPER -m qwen_train prepare SPEC --run-dir D --run-id NAME --nonce NONCE
  WRAPPER -m qwen_train diagnose RUN_DIR [--step N]

For `run` and `prepare` it checks what the daemon promises (QWEN_RUN_NONCE
equals --nonce, the spec file loads as that kind's spec), writes a valid
status.json with that nonce every 0.2 s via
qwen_train.status.write_status, and exits 5 (stopped) on SIGTERM after a
final "stopped" status. Behaviour for a test is set by an optional
RUN_DIR/fixture.json: {"write_status": bool, "ignore_sigterm": bool,
"default_sigterm": bool (die of SIGTERM, like a trainer still importing torch),
"exit_after_s": float | null, "exit_code": int, "checkpoint_every": int (every that many steps a durable
checkpoint dir RUN_DIR/checkpoints/step-N, named in the status's last_checkpoint; 0: none)}. `diagnose` writes nothing:
it waits, holding its nonce only in its environment, until RUN_DIR/release
exists, then writes a valid RUN_DIR/diagnosis.json and exits 0 (SIGTERM: exit 5).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import time
from pathlib import Path

import msgspec

from qwen_train.atomic import atomic_write_bytes
from qwen_train.checkpoint_files import CKPT_DIR, checkpoint_name
from qwen_train.exitcodes import STATE_BY_CODE, STOPPED, USAGE
from qwen_train.prepare.spec import load_prepare_spec
from qwen_train.spec import SpecError, load_spec
from qwen_train.status import CheckpointRef, Diagnosis, Losses, Status, Throughput, write_status

FIXTURE_FILE = "fixture.json"
TICK_S = 0.2


class Fixture(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    write_status: bool = True
    ignore_sigterm: bool = False
    default_sigterm: bool = False
    exit_after_s: float | None = None
    exit_code: int = 0
    checkpoint_every: int = 0


def _args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fake-trainer")
    parser.add_argument("-m", dest="module", required=True, choices=["qwen_train"])
    parser.add_argument("command", choices=["run", "prepare"])
    parser.add_argument("spec", type=Path)
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--nonce", required=True)
    parser.add_argument("--resume", action="store_true")
    return parser.parse_args(argv)


def diagnose(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="fake-trainer diagnose")
    parser.add_argument("-m", dest="module", required=True, choices=["qwen_train"])
    parser.add_argument("command", choices=["diagnose"])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--step", type=int)
    args = parser.parse_args(argv)
    if not os.environ.get("QWEN_RUN_NONCE"):
        print("fake-trainer: no QWEN_RUN_NONCE in the environment", file=sys.stderr)
        return USAGE
    stop_asked: list[bool] = []
    signal.signal(signal.SIGTERM, lambda *_: stop_asked.append(True))
    print(f"fake replay of {args.run_dir} to step {args.step}", flush=True)
    give_up = time.monotonic() + 120  # a failed test must not leave a replay waiting forever
    while not (args.run_dir / "release").exists():
        if stop_asked:
            return STOPPED
        if time.monotonic() > give_up:
            print("fake-trainer: never released", file=sys.stderr)
            return 1
        time.sleep(TICK_S)
    summary = f"fake diagnosis of step {args.step}\nsecond line"
    diagnosis = Diagnosis(step=args.step or 0, epoch=0, position=0, loss_parts={}, grad_norm="nan", broken_parts=[],
                          forward=None, backward=None, backward_note="", precision="fp32", fp32_reproduces=None,
                          summary=summary, created_at=time.time())
    atomic_write_bytes(args.run_dir / "diagnosis.json", msgspec.json.encode(diagnosis))
    print("fake diagnosis done", flush=True)
    return 0


def _fixture(run_dir: Path) -> Fixture:
    path = run_dir / FIXTURE_FILE
    return msgspec.json.decode(path.read_bytes(), type=Fixture) if path.exists() else Fixture()


def main(argv: list[str]) -> int:
    if "diagnose" in argv[2:3]:
        return diagnose(argv)
    args = _args(argv)
    if os.environ.get("QWEN_RUN_NONCE") != args.nonce:
        print("fake-trainer: QWEN_RUN_NONCE does not match --nonce", file=sys.stderr)
        return USAGE
    try:
        if args.command == "prepare":
            max_steps, working = 1000, "preparing"
            load_prepare_spec(args.spec)
        else:
            max_steps, working = load_spec(args.spec).train.max_steps, "training"
    except SpecError as exc:
        print(f"fake-trainer: {exc}", file=sys.stderr)
        return USAGE
    print(f"fake {args.command}{' --resume' if args.resume else ''}", flush=True)
    fixture = _fixture(args.run_dir)
    stop_asked: list[bool] = []
    if fixture.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    elif not fixture.default_sigterm:
        signal.signal(signal.SIGTERM, lambda *_: stop_asked.append(True))
    started = time.time()

    last: list[CheckpointRef] = []

    def checkpoint(step: int) -> None:
        if fixture.checkpoint_every and step % fixture.checkpoint_every == 0:
            path = args.run_dir / CKPT_DIR / checkpoint_name(step)
            path.mkdir(parents=True, exist_ok=True)
            last[:] = [CheckpointRef(step=step, path=str(path), written_at=time.time())]

    def status(step: int, state: str, message: str | None = None) -> Status:
        return Status(
            run_id=args.run_id, nonce=args.nonce, host=socket.gethostname(), pid=os.getpid(),
            state=state, heartbeat=time.time(), started_at=started, step=step,  # type: ignore[arg-type]
            max_steps=max_steps, losses=Losses(total=10.0 / step, talker=8.0 / step,
            code_predictor=2.0 / step), throughput=Throughput(steps_per_s=5.0, frames_per_s=500.0),
            message=message, last_checkpoint=last[0] if last else None,
        )

    step = 0
    while True:
        step += 1
        if stop_asked:
            write_status(args.run_dir, status(step, "stopped", "stopped on SIGTERM"))
            return STOPPED
        if fixture.exit_after_s is not None and time.time() - started >= fixture.exit_after_s:
            state = STATE_BY_CODE.get(fixture.exit_code, "failed")
            write_status(args.run_dir, status(step, state, f"fake trainer exits {fixture.exit_code}"))
            return fixture.exit_code
        checkpoint(step)
        if fixture.write_status:
            write_status(args.run_dir, status(step, working))
        print(f"step {step}", flush=True)
        time.sleep(TICK_S)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
