"""A run's resource evidence in its own dir: RUN_DIR/resources.json, the gate's to read.

The daemon alone holds a run's resource samples, so it writes the training
run's ResourceSummary there whenever a launch of it ends, and again right
before a gate job starts, so a gate always reads the latest.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import msgspec

from qwen_daemon.protocol import ResourceSummary, kind_info
from qwen_daemon.protocol.errors import RequestError
from qwen_daemon.resources.summary_cache import SummaryCache
from qwen_daemon.runs.record import RunRecord
from qwen_daemon.runs.safe_files import chmod_regular
from qwen_train.atomic import atomic_write_bytes
from qwen_train.safe_read import UnsafeFile

log = logging.getLogger(__name__)

RESOURCES_FILE = "resources.json"


def write_resources(run_dir: Path, summary: ResourceSummary) -> Path:
    """RUN_DIR/resources.json, atomically, readable by a container user (the gate may run in one)."""
    path = run_dir / RESOURCES_FILE
    atomic_write_bytes(path, msgspec.json.format(msgspec.json.encode(summary), indent=2) + b"\n")
    chmod_regular(path, 0o644, RESOURCES_FILE)  # by descriptor: a link swapped in meanwhile must not be followed
    return path


class Evidence:
    """Writes training runs' resource summaries (the API's, from the summary cache) into their run dirs."""

    def __init__(self, summaries: SummaryCache) -> None:
        self.summaries = summaries

    def write(self, record: RunRecord) -> Path:
        path = write_resources(Path(record.run_dir), self.summaries.get(record.name, time.time()))
        log.info("resource evidence of run %s written to %s", record.name, path)
        return path

    def launch_ended(self, record: RunRecord) -> None:
        """The monitor's hook: a training run's launch ended, so its summary now covers all of it."""
        if kind_info(record.kind).trains:
            self.write(record)

    def before_gate(self, record: RunRecord) -> None:
        """The gate must not judge yesterday's evidence; a run dir the daemon cannot write is its fault (500)."""
        try:
            self.write(record)
        except (OSError, UnsafeFile) as exc:
            raise RequestError(500, f"could not write run {record.name}'s resource evidence: {exc}",
                               "the daemon must be able to write the run dir") from None
