#!/usr/bin/env python3
"""A stand-in for `qwen-train gate` in the daemon's gate tests: the CLI and verdict contract, no judging.

Not a test module; a program. `gate_wrapper` makes an executable the tests pass
to the daemon as `--trainer-python`: it runs this for `-m qwen_train gate ...`
and the fake trainer (test_daemon_fake_trainer.py) for everything else, so
the daemon launches both exactly as it launches the real ones:

  WRAPPER -m qwen_train gate RUN_DIR [--checkpoint N] [--asr DIR] [--thresholds F]

It records what it was given into RUN_DIR/gate/call.json (its arguments, the
nonce in its environment, the RUN_DIR/resources.json it found), then follows
RUN_DIR/gate-fixture.json: {"exit_code": int, "passed": bool, "verdict": bool
(write one), "hold": bool (wait for RUN_DIR/gate-release first)}. The verdict
it writes fails `intelligibility` unless `passed`, like a gate without an ASR.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import msgspec

from qwen_train.atomic import atomic_write_bytes
from qwen_train.gate.verdict import CRITERIA, Criterion, CriterionName, GateVerdict, verdict_path

FIXTURE_FILE = "gate-fixture.json"
RELEASE_FILE = "gate-release"
CALL_FILE = "call.json"


class GateFixture(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    exit_code: int = 6
    passed: bool = False
    verdict: bool = True
    hold: bool = False


def gate_wrapper(directory: Path) -> Path:
    """An executable the daemon can treat as a python: the fake gate for `gate`, the fake trainer otherwise."""
    here = Path(__file__).parent
    path = directory / "fake-gate-python"
    path.write_text(
        "#!/bin/sh\n"
        f'if [ "$3" = gate ]; then exec "{sys.executable}" "{here / "gate_fake.py"}" "$@"; fi\n'
        f'exec "{sys.executable}" "{here / "test_daemon_fake_trainer.py"}" "$@"\n'
    )
    path.chmod(0o755)
    return path


def _criterion(name: CriterionName, passed: bool) -> Criterion:
    if name != "intelligibility":
        return Criterion(name, True, f"fake {name} holds")
    detail = "CER 0.05 on held-out text" if passed else "no ASR model given: intelligibility cannot be measured"
    return Criterion(name, passed, detail, measured=0.05 if passed else None, threshold=0.3)


def make_verdict(run_dir: Path, checkpoint: int, passed: bool, decided_at: float | None = None) -> GateVerdict:
    """A verdict as the gate writes one: every criterion passes but intelligibility, unless `passed`."""
    return GateVerdict(run=run_dir.name, run_dir=str(run_dir), model=str(run_dir / "gate" / "model"),
                       checkpoint_step=checkpoint, base_model="/srv/models/base", passed=passed,
                       criteria=[_criterion(name, passed) for name in CRITERIA],
                       decided_at=time.time() if decided_at is None else decided_at, code_revision="fake")


def _args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fake-gate")
    parser.add_argument("-m", dest="module", required=True, choices=["qwen_train"])
    parser.add_argument("command", choices=["gate"])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--checkpoint", type=int)
    parser.add_argument("--asr")
    parser.add_argument("--thresholds")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = _args(argv)
    fixture_path = args.run_dir / FIXTURE_FILE
    fixture = GateFixture()
    if fixture_path.exists():
        fixture = msgspec.json.decode(fixture_path.read_bytes(), type=GateFixture)
    resources = args.run_dir / "resources.json"
    call = {"argv": argv[2:], "nonce": os.environ.get("QWEN_RUN_NONCE"),
            "resources": json.loads(resources.read_text()) if resources.exists() else None}
    atomic_write_bytes(args.run_dir / "gate" / CALL_FILE, json.dumps(call).encode())
    give_up = time.monotonic() + 120  # a failed test must not leave a gate waiting forever
    while fixture.hold and not (args.run_dir / RELEASE_FILE).exists():
        if time.monotonic() > give_up:
            return 1
        time.sleep(0.1)
    if fixture.verdict:
        verdict = make_verdict(args.run_dir, args.checkpoint or 1, fixture.passed)
        atomic_write_bytes(verdict_path(args.run_dir), msgspec.json.encode(verdict))
    print(f"fake gate of {args.run_dir}: exit {fixture.exit_code}", flush=True)
    return fixture.exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
