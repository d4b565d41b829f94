"""What the per-step status.json heartbeat costs the train loop (tiny model, CPU).

Runs the same number of optimizer steps twice in one process, with and without
the atomic status.json write after each step, and prints the ratio. Usage:

    .venv/bin/python bench/heartbeat_overhead.py [DEMO_DIR] [--steps N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from qwen_train.demo import build_demo
from qwen_train.spec import RunSpec, TrainConfig
from qwen_train.train.heartbeat import Heartbeat
from qwen_train.train.loop import train_step
from qwen_train.train.session import Session, build_session


def timed(session: Session, steps: int, beat: bool) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        outcome = train_step(session)
        if beat:
            session.heartbeat.update(state="training", step=session.step, losses=outcome.losses)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("demo", nargs="?", type=Path)
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    root = args.demo or Path(tempfile.mkdtemp(prefix="qh-bench-"))
    build_demo(root)
    spec = RunSpec(name="bench", lane="benchmark", model=str(root / "model"), bundle=str(root / "bundle"),
                   train=TrainConfig(batch_size=2, lr=1e-3, max_steps=10_000, device="cpu"))
    run_dir = Path(tempfile.mkdtemp(prefix="qh-bench-run-"))
    session = build_session(spec, run_dir, Heartbeat(run_dir, "bench", "nonce", spec.train.max_steps))
    timed(session, 5, beat=True)  # warm-up
    base = timed(session, args.steps, beat=False)
    with_beat = timed(session, args.steps, beat=True)
    print(f"steps={args.steps}  without heartbeat {args.steps / base:.1f} steps/s  "
          f"with heartbeat {args.steps / with_beat:.1f} steps/s  ratio {base / with_beat:.3f}")


if __name__ == "__main__":
    main()
