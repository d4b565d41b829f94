"""Test-only switches, explicit and inert unless asked for.

`QWEN_TEST_PAUSE=point[@step]:seconds[,...]` makes the trainer sleep at a
named point (optionally only at one step) so a test can SIGKILL it there
deterministically, e.g. in the middle of a checkpoint write. Nothing here
runs unless that variable is set.
"""

from __future__ import annotations

import os
import sys
import time

PAUSE_ENV = "QWEN_TEST_PAUSE"


def _pauses() -> dict[str, float]:
    raw = os.environ.get(PAUSE_ENV, "")
    out: dict[str, float] = {}
    for item in filter(None, raw.split(",")):
        point, _, seconds = item.partition(":")
        out[point.strip()] = float(seconds or 0)
    return out


def pause(point: str, step: int) -> None:
    pauses = _pauses()
    seconds = pauses.get(f"{point}@{step}", pauses.get(point))
    if seconds:
        print(f"qwen-train: test pause at {point} for {seconds}s", file=sys.stderr, flush=True)
        time.sleep(seconds)
