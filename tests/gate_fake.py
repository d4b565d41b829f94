#!/usr/bin/env python3
"""A stand-in for `qwen-train gate` in the daemon's gate tests: the CLI and verdict contract, no judging.

Not a test module; a program. `gate_wrapper` makes an executable the tests pass
to the daemon as `--trainer-python`: it runs this for `-m qwen_train gate ...`
and the fake trainer (test_daemon_fake_trainer.py) for everything else, so
the daemon launches both exactly as it launches the real ones:

  WRAPPER -m qwen_train gate RUN_DIR [--checkpoint N] [--asr DIR] [--verifier DIR] [--thresholds F]

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
from qwen_train.gate.verdict import (
    CRITERIA,
    Criterion,
    CriterionName,
    Figure,
    GateVerdict,
    Judge,
    SpeakerRow,
    verdict_path,
)

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
    if name == "speaker_similarity":
        return Criterion(name, True, "verifier (resemblyzer) mean cosine 0.820 >= 0.750", measured=0.82,
                         threshold=0.75, figures=[Figure("base_encoder_cosine", 0.93, 0.5, True)])
    if name != "intelligibility":
        return Criterion(name, True, f"fake {name} holds")
    if passed:
        return Criterion(name, True, "CER 0.05 on held-out text", measured=0.05, threshold=0.3,
                         figures=[Figure("wer", 0.12)])
    return Criterion(name, False, "no ASR model given: intelligibility cannot be measured", threshold=0.3)


JUDGES = [
    Judge("speaker_verifier", "resemblyzer", "resemblyzer 0.1.4 (pretrained GE2E voice encoder shipped in its wheel)",
          "cpu, 16000 Hz via soxr"),
    Judge("speaker_encoder", "base-encoder", "/srv/models/base", "the base model's own speaker encoder"),
]
ASR = Judge("asr", "whisper", "/srv/models/kb-whisper-large", "greedy, forced language sv")


def _speakers(passed: bool) -> list[SpeakerRow]:
    cer, wer = (0.04, 0.1) if passed else (None, None)
    return [SpeakerRow("fleurs:1001", 2, 0, similarity=0.84, base_similarity=0.95, cer=cer, wer=wer),
            SpeakerRow("fleurs:1002", 2, 1, similarity=0.41, base_similarity=0.91, cer=cer, wer=wer)]


def make_verdict(run_dir: Path, checkpoint: int, passed: bool, decided_at: float | None = None) -> GateVerdict:
    """A verdict as the gate writes one: every criterion passes but intelligibility, unless `passed` (then a
    Whisper judged it too); its judges and two held-out speakers' rows, one of them weak."""
    return GateVerdict(run=run_dir.name, run_dir=str(run_dir), model=str(run_dir / "gate" / "model"),
                       checkpoint_step=checkpoint, base_model="/srv/models/base", passed=passed,
                       criteria=[_criterion(name, passed) for name in CRITERIA],
                       decided_at=time.time() if decided_at is None else decided_at, code_revision="fake",
                       thresholds={"min_speaker_similarity": 0.75, "min_base_encoder_similarity": 0.5, "max_cer": 0.3},
                       judges=([ASR] if passed else []) + JUDGES, speakers=_speakers(passed))


def _args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fake-gate")
    parser.add_argument("-m", dest="module", required=True, choices=["qwen_train"])
    parser.add_argument("command", choices=["gate"])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--checkpoint", type=int)
    parser.add_argument("--asr")
    parser.add_argument("--verifier")
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
