"""How a trainer's `failed_disk_full` end reads: its own words, and the free space the daemon sees now.

The trainer says what filled, where, and what to do, in status.json when the
disk lets it write one more; if it could not, status.json still holds its
last good content (a step, `training`), and the words are in its log, if
that had room. The exit code alone is enough to name the state; the daemon
adds its own reading of the run dir's file system, which it can always make.
"""

from __future__ import annotations

from pathlib import Path

from qwen_daemon.jobs.job import LOG_FILE, describe_exit
from qwen_daemon.runs.record import RunRecord
from qwen_daemon.runs.safe_files import read_tail
from qwen_train.disk import free_space, size_text
from qwen_train.exitcodes import FAILED_DISK_FULL
from qwen_train.safe_read import UnsafeFile
from qwen_train.status import Status

MARK = "qwen-train: disk full:"
TAIL_BYTES = 64 << 10


def logged_words(log: Path, nonce: str | None) -> str | None:
    """The trainer's last `disk full` line in this launch's part of its log, without the prefix."""
    try:
        text = read_tail(log, TAIL_BYTES, "log").decode("utf-8", "replace")
    except (OSError, UnsafeFile):
        return None
    if nonce is not None and nonce in text:
        text = text[text.rindex(nonce):]
    lines = [line.strip() for line in text.splitlines() if line.strip().startswith(MARK)]
    return lines[-1][len("qwen-train: "):][:2000] if lines else None


def free_now(run_dir: Path) -> str:
    try:
        space = free_space(run_dir)
    except OSError as exc:
        return f"the daemon cannot read the free space of {run_dir} ({exc.strerror})"
    return (f"the daemon sees {size_text(space.free_bytes)} free of {size_text(space.total_bytes)} on "
            f"{space.checked}'s file system now")


def disk_full_outcome(record: RunRecord, final: Status | None) -> str:
    run_dir = Path(record.run_dir)
    if final is not None and final.state == "failed_disk_full" and final.message:
        said = final.message
    else:
        logged = logged_words(run_dir / LOG_FILE, record.nonce)
        kept = f"; its status.json keeps its last good content ({final.state} at step {final.step})" if final else ""
        said = logged or (f"the run dir's disk could not take a write (the trainer could write neither its final "
                          f"status nor its log{kept})")
    return (f"{said} ({describe_exit(FAILED_DISK_FULL)}: failed_disk_full; {free_now(run_dir)}; once there is room, "
            f"`qwen-daemon resume {record.name}` continues from the newest durable checkpoint; see "
            f"{run_dir / LOG_FILE})")
