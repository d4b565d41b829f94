"""The kinds of job the daemon runs, as clients name them, and the names of a run's child jobs."""

from __future__ import annotations

import hashlib
from typing import Literal

from qwen_train.spec import check_name

DIAGNOSE_SUFFIX = ".diagnose"
GATE_SUFFIX = ".gate"


JobKind = Literal["train", "preprocess", "diagnose", "gate"]
# Jobs that work on another run's dir and write no status.json of their own: their parent is that run.
CHILD_KINDS: frozenset[str] = frozenset({"diagnose", "gate"})


def child_name(run: str, suffix: str) -> str:
    """`RUN` + suffix; where that is no run name (too long, or '..'), a prefix and a digest of RUN."""
    name = run + suffix
    if len(name) > 64 or ".." in name:
        digest = hashlib.sha256(run.encode()).hexdigest()[:8]
        name = f"{run[:64 - len(suffix) - 9]}-{digest}{suffix}"
    return check_name(name)


def diagnose_name(run: str) -> str:
    """`RUN.diagnose`: the one replay job of run RUN."""
    return child_name(run, DIAGNOSE_SUFFIX)


def gate_name(run: str) -> str:
    """`RUN.gate`: the one gate job of run RUN."""
    return child_name(run, GATE_SUFFIX)
