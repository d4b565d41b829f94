"""A run as the registry holds it: the record jobs, views and the registry all read.

It lives below both the registry (which writes it) and the jobs (whose kinds
read it to say how a run ended), so neither has to import the other to name
it: the registry imports the job it claims a name for, never the reverse.
"""

from __future__ import annotations

import msgspec

from qwen_daemon.protocol import ACTIVE_STATES, RunState


class RunRecord(msgspec.Struct, frozen=True):
    """One row of `runs`: the daemon's facts about a run and its active launch."""

    name: str
    lane: str
    surface: str
    runner: str
    state: RunState
    nonce: str | None
    pid: int | None
    run_dir: str
    created_at: float
    launched_at: float
    ended_at: float | None
    exit_code: int | None
    spec_json: str
    message: str | None
    container: str | None = None
    kind: str = "train"
    parent: str | None = None

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES
