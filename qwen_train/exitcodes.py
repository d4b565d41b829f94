"""Trainer exit codes: the daemon maps them to run states without parsing logs."""

from __future__ import annotations

COMPLETED = 0
FAILED = 1
USAGE = 2
CURSOR_REJECTED = 3
FAILED_NON_FINITE = 4
STOPPED = 5
GATE_FAILED = 6  # `qwen-train gate`: the gate ran and at least one criterion failed
RUN_LOCKED = 7  # another process holds the run dir (qwen_train.run_lock): this one touched nothing
FAILED_OOM = 8  # the GPU ran out of memory in a step: not applied, nothing written after it (train/device/oom.py)
FAILED_DISK_FULL = 9  # the run dir's disk could not take a write (or the next checkpoint): train/device/diskspace.py
TORCH_UNSUPPORTED = 10  # torch outside the supported range, or torchaudio not its build (torch_stack.py): untouched

STATE_BY_CODE: dict[int, str] = {
    COMPLETED: "completed",
    FAILED: "failed",
    USAGE: "failed",
    CURSOR_REJECTED: "cursor_rejected",
    FAILED_NON_FINITE: "failed_non_finite",
    STOPPED: "stopped",
    # A gate that ran and said no is a finished job: the "no" is in its verdict file, not in the job's state.
    GATE_FAILED: "completed",
    # Refused before touching anything; the holder's own launch is the run's real state.
    RUN_LOCKED: "failed",
    FAILED_OOM: "failed_oom",
    FAILED_DISK_FULL: "failed_disk_full",
    # Refused before any work: the stack is wrong, not the run; the message says what to install.
    TORCH_UNSUPPORTED: "failed",
}


def state_for_exit(code: int | None) -> str:
    """Unknown codes (signals, crashes) are failures."""
    if code is None:
        return "failed"
    return STATE_BY_CODE.get(code, "failed")
