"""What the train loop's safety features cost, each against the bare loop in the same process.

The tiny model on CPU: the bare loop (guard off, no heartbeat), then the same
number of steps with the non-finite guard on, and with the per-step atomic
status.json heartbeat. Steps alternate in rounds so drift hits every variant
alike. Prints steps/s and the ratio to the bare loop. (The GPU figure, with a
target under 2% for the guard, comes from the accelerator machine.)

    .venv/bin/python bench/loop_overheads.py [DEMO_DIR] [--steps 40] [--rounds 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import msgspec

from qwen_train.demo import build_demo
from qwen_train.spec import GuardConfig, RunSpec, TrainConfig
from qwen_train.train.heartbeat import Heartbeat
from qwen_train.train.session import Session, build_session
from qwen_train.train.step import train_step


def timed(session: Session, steps: int, guard: bool, beat: bool) -> float:
    session.spec = msgspec.structs.replace(session.spec, guard=GuardConfig(enabled=guard))
    start = time.perf_counter()
    for _ in range(steps):
        outcome = train_step(session)
        if beat:
            session.heartbeat.update(state="training", step=session.progress.step, losses=outcome.losses)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("demo", nargs="?", type=Path)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    root = args.demo or Path(tempfile.mkdtemp(prefix="qh-bench-"))
    build_demo(root)
    spec = RunSpec(name="bench", lane="benchmark", model=str(root / "model"), bundle=str(root / "bundle"),
                   train=TrainConfig(batch_size=2, lr=1e-4, max_steps=1_000_000, device="cpu"))
    run_dir = Path(tempfile.mkdtemp(prefix="qh-bench-run-"))
    session = build_session(spec, run_dir, Heartbeat(run_dir, "bench", "nonce", spec.train.max_steps))
    timed(session, 5, guard=True, beat=True)  # warm-up
    variants = {"bare loop": (False, False), "guard on": (True, False), "heartbeat on": (False, True)}
    totals = dict.fromkeys(variants, 0.0)
    for _ in range(args.rounds):
        for name, (guard, beat) in variants.items():
            totals[name] += timed(session, args.steps, guard, beat)
    steps = args.steps * args.rounds
    base = totals["bare loop"]
    for name, seconds in totals.items():
        print(f"{name:>13}: {steps / seconds:6.1f} steps/s   ratio to bare loop {base / seconds:.3f}")


if __name__ == "__main__":
    main()
