"""qwen-run@NAME follows a run that waits in the GPU queue instead of reporting it ended."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qwen_daemon.protocol import ResourceSummary, RunDetail, RunView
from qwen_daemon.systemd.run_unit import follow


class QueueThenRun:
    """A daemon whose run waits in the queue for two polls, then runs, then completes."""

    def __init__(self) -> None:
        self.states = ["queued", "queued", "queued", "running", "completed"]
        self.launched = False

    def _view(self, state: str) -> RunView:
        return RunView(name="q", lane="benchmark", surface="default", runner="process", state=state,  # type: ignore[arg-type]
                       health="waiting", run_dir="/runs/q", created_at=0.0)

    def run(self, name: str) -> RunDetail:
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        return RunDetail(run=self._view(state), status=None, summary=ResourceSummary(samples=0, first=None, last=None))

    def launch(self, **_: Any) -> RunView:
        self.launched = True
        return self._view("queued")

    def resume(self, name: str) -> RunView:
        raise AssertionError("a queued run is followed, not resumed")


def test_the_unit_waits_through_the_queue_and_reports_the_real_end(tmp_path: Path) -> None:
    (tmp_path / "q.json").write_text("{}")
    daemon = QueueThenRun()
    assert follow(daemon, "q", tmp_path, poll_s=0.01) == 0  # type: ignore[arg-type]
    assert daemon.states == ["completed"]  # it polled past every queued answer
