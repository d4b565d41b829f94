"""Trainer exit codes: the daemon maps them to run states without parsing logs."""

from __future__ import annotations

COMPLETED = 0
FAILED = 1
USAGE = 2
CURSOR_REJECTED = 3
FAILED_NON_FINITE = 4
STOPPED = 5

STATE_BY_CODE: dict[int, str] = {
    COMPLETED: "completed",
    FAILED: "failed",
    USAGE: "failed",
    CURSOR_REJECTED: "cursor_rejected",
    FAILED_NON_FINITE: "failed_non_finite",
    STOPPED: "stopped",
}


def state_for_exit(code: int | None) -> str:
    """Unknown codes (signals, crashes) are failures."""
    if code is None:
        return "failed"
    return STATE_BY_CODE.get(code, "failed")
