#!/usr/bin/env python3
"""A stand-in for `qwen-train score` in the daemon's scoring tests, and the score records the tests write.

Not a test module; a program and a library. `score_wrapper` makes an executable
the tests pass to the daemon as `--trainer-python`: it runs this for
`-m qwen_train score ...` and the fake trainer (test_daemon_fake_trainer.py)
for everything else, so the daemon launches both as it launches the real ones:

  WRAPPER -m qwen_train score RUN_DIR [--checkpoint N | --all-unscored] [--base] [--asr DIR] [--verifier DIR]
          [--device D]

It appends what it was given to RUN_DIR/score-calls.jsonl (its arguments and the
nonce in its environment), then writes real score records (qwen_train.scores.record)
as the real scorer does, skipping any that exist, so a relaunch resumes: the base
row first when --base and none exists, then the checkpoint, or every kept one
without scores. RUN_DIR/score-fixture.json: {"exit_code": int, "hold_after": int
(after writing that many records, wait for RUN_DIR/score-release before the next)}.
The scores are made so that step 1000 is the best (lowest CER).
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
from qwen_train.checkpoint_files import list_checkpoints, step_of
from qwen_train.scores.record import BASE_FILE, SCORES_DIR, Calibration, RowScore, Scores, scored_steps, step_file

FIXTURE_FILE = "score-fixture.json"
RELEASE_FILE = "score-release"
CALLS_FILE = "score-calls.jsonl"
ASR = "/srv/models/kb-whisper-small"
VERIFIER = "resemblyzer"


class ScoreFixture(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    exit_code: int = 0
    hold_after: int | None = None


def score_wrapper(directory: Path) -> Path:
    """An executable the daemon can treat as a python: the fake scorer for `score`, the fake trainer otherwise."""
    here = Path(__file__).parent
    path = directory / "fake-score-python"
    path.write_text(
        "#!/bin/sh\n"
        f'if [ "$3" = score ]; then exec "{sys.executable}" "{here / "scores_fake.py"}" "$@"; fi\n'
        f'exec "{sys.executable}" "{here / "test_daemon_fake_trainer.py"}" "$@"\n'
    )
    path.chmod(0o755)
    return path


def calibration(measurable: bool = True) -> Calibration:
    if measurable:
        return Calibration(VERIFIER, 6, 12, [0.81, 0.84, 0.86, 0.79, 0.88, 0.83], [0.41, 0.52] * 6, eer=0.04,
                           threshold=0.7, same_median=0.835, measurable=True)
    return Calibration(VERIFIER, 6, 12, [0.6] * 6, [0.6] * 12, eer=0.5, threshold=0.6, same_median=0.6,
                       measurable=False, reason="EER 0.50 is over the limit 0.25: it cannot tell this bundle's "
                                                "speakers apart")


def make_scores(step: int | None, measured_at: float | None = None, **changes: object) -> Scores:
    """A record as the scorer writes one: step 1000 has the lowest CER, the base the highest similarity."""
    offset = 0.0 if step is None else abs(step - 1000) / 5000
    cer = 0.45 if step is None else 0.1 + offset
    rows = [RowScore("fleurs:1001:3", "fleurs:1001", cer=cer, wer=cer * 2.5, heard_language="sv", similarity=0.8,
                     rate_ratio=1.02, audio=f"scores/audio/{step}/r0.wav"),
            RowScore("fleurs:1002:7", "fleurs:1002", cer=cer, wer=cer * 2.5, heard_language="sv", similarity=0.7,
                     rate_ratio=0.98, hit_limit=step == 1500, audio=f"scores/audio/{step}/r1.wav")]
    fields: dict[str, object] = dict(
        step=step, checkpoint="base" if step is None else f"step-{step:08d}", model_digest=f"sha256:{step}",
        listening_set="sha256:set", rows=2, cer=cer, wer=cer * 2.5, asr=ASR,
        swedish_share=0.3 if step is None else 0.9, similarity=0.88 if step is None else 0.8 - offset,
        similarity_share=(0.88 if step is None else 0.8 - offset) / 0.835, verifier=VERIFIER,
        dnsmos_sig=3.4, dnsmos_bak=3.9, dnsmos_ovrl=3.1 if step is None else 3.0 - offset, rate_ratio=1.0,
        limit_share=0.5 if step == 1500 else 0.0, silent_share=0.0, calibration=calibration(),
        measured_at=time.time() if measured_at is None else measured_at, seconds=4.2, device="cpu",
        per_row=rows)
    fields.update(changes)
    return Scores(**fields)  # type: ignore[arg-type]


def write_scores(run_dir: Path, scores: Scores) -> Path:
    path = run_dir / SCORES_DIR / (BASE_FILE if scores.step is None else step_file(scores.step))
    atomic_write_bytes(path, msgspec.json.encode(scores))
    return path


def _args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fake-score")
    parser.add_argument("-m", dest="module", required=True, choices=["qwen_train"])
    parser.add_argument("command", choices=["score"])
    parser.add_argument("run_dir", type=Path)
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--checkpoint", type=int)
    what.add_argument("--all-unscored", action="store_true")
    parser.add_argument("--base", action="store_true")
    parser.add_argument("--asr")
    parser.add_argument("--verifier")
    parser.add_argument("--device")
    return parser.parse_args(argv)


def _todo(args: argparse.Namespace) -> list[int | None]:
    done = scored_steps(args.run_dir)
    todo: list[int | None] = [None] if args.base and not (args.run_dir / SCORES_DIR / BASE_FILE).exists() else []
    if args.checkpoint is not None:
        todo += [args.checkpoint] if args.checkpoint not in done else []
    elif args.all_unscored:
        todo += [s for p in list_checkpoints(args.run_dir) if (s := step_of(p.name)) is not None and s not in done]
    return todo


def main(argv: list[str]) -> int:
    args = _args(argv)
    fixture_path = args.run_dir / FIXTURE_FILE
    fixture = msgspec.json.decode(fixture_path.read_bytes(), type=ScoreFixture) if fixture_path.exists() \
        else ScoreFixture()
    with open(args.run_dir / CALLS_FILE, "a") as calls:
        calls.write(json.dumps({"argv": argv[2:], "nonce": os.environ.get("QWEN_RUN_NONCE"), "pid": os.getpid()})
                    + "\n")
    give_up = time.monotonic() + 120  # a failed test must not leave a scorer waiting forever
    for written, step in enumerate(_todo(args)):
        while fixture.hold_after is not None and written >= fixture.hold_after and \
                not (args.run_dir / RELEASE_FILE).exists():
            if time.monotonic() > give_up:
                return 1
            time.sleep(0.1)
        write_scores(args.run_dir, make_scores(step))
        print(f"fake scorer: scored {'the base model' if step is None else f'step {step}'}", flush=True)
    print(f"fake scorer of {args.run_dir}: exit {fixture.exit_code}", flush=True)
    return fixture.exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
