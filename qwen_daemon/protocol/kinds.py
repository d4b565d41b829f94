"""The kinds of job the daemon runs, as clients see them, and the names of a run's child jobs.

A client asks a kind's `KindInfo` what it may do with a job (resume it, gate it,
replay it) rather than comparing kind names, so a new kind is one entry here and
one file in the daemon's jobs/kinds/. How a kind runs is the daemon's business.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

from qwen_train.spec import check_name

DIAGNOSE_SUFFIX = ".diagnose"
GATE_SUFFIX = ".gate"
SCORE_SUFFIX = ".score"


JobKind = Literal["train", "preprocess", "diagnose", "gate", "score"]


@dataclass(frozen=True)
class KindInfo:
    """What a kind of job is, for anyone who shows or acts on one.

    `child`: it works on another run's dir (its `parent`) and writes no status.json of its own.
    `trains`: it is a training run, the one kind that is replayed, gated and has checkpoints.
    `resumes`: what a resume continues from, or None where it reruns from scratch.
    `doing`: what it does to its parent while it runs, for refusals ("replaying run r1").
    `parent_role`: its parent as a fact about it ("replays run: r1"), or "" where it has none.
    `diagnoses`: it writes its parent's diagnosis, so a client shows one for it too.
    `beside`: it may run while its parent trains (it takes no lock on the parent's dir), so it never keeps
    the parent from launching or resuming; the daemon, not an operator, starts it.
    """

    kind: JobKind
    label: str
    child: bool = False
    trains: bool = False
    resumes: str | None = None
    doing: str = ""
    parent_role: str = ""
    diagnoses: bool = False
    beside: bool = False


KINDS: dict[str, KindInfo] = {
    "train": KindInfo("train", "training run", trains=True, resumes="from the newest checkpoint"),
    "preprocess": KindInfo("preprocess", "preprocessing job", resumes="from its journal"),
    "diagnose": KindInfo("diagnose", "diagnose job", child=True, doing="replaying", parent_role="replays run",
                         diagnoses=True),
    "gate": KindInfo("gate", "gate job", child=True, doing="judging", parent_role="judges run"),
    "score": KindInfo("score", "scoring job", child=True, doing="scoring", parent_role="scores run", beside=True),
}


def kind_info(kind: str) -> KindInfo:
    """The kind's entry; an unknown kind (a newer daemon's) reads as a job that is none of these."""
    return KINDS.get(kind) or KindInfo("train", f"{kind} job")


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


def score_name(run: str) -> str:
    """`RUN.score`: the one scoring job of run RUN, which listens to its durable checkpoints one launch at a time."""
    return child_name(run, SCORE_SUFFIX)
