"""Loss curves remembered by the dashboard while it watches.

The daemon's API reports the current loss, not a series, so the dashboard keeps
one point per new step it sees for each run. Only live values are recorded (a
stale status never enters a curve), and a step that goes backwards (a resume
from an older checkpoint, a non-finite rollback) cuts the curve back to it so
the line shows the path the weights actually took. Eval points come from a
run's detail (its status names the step each eval was taken at), so the eval
curve fills in while the run's detail is being watched.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from qwen_daemon.protocol import RunDetail, RunView

MAX_POINTS = 600


class Series:
    """(step, value) points in increasing step order, bounded in length."""

    def __init__(self, max_points: int = MAX_POINTS) -> None:
        self._points: deque[tuple[int, float]] = deque(maxlen=max_points)

    def add(self, step: int, value: float) -> None:
        while self._points and self._points[-1][0] >= step:
            if self._points[-1][0] == step:
                self._points[-1] = (step, value)
                return
            self._points.pop()
        self._points.append((step, value))

    def values(self) -> list[float]:
        return [value for _, value in self._points]

    def steps(self) -> list[int]:
        return [step for step, _ in self._points]

    def __len__(self) -> int:
        return len(self._points)


class LossHistory:
    """Training and eval loss series per run name."""

    def __init__(self, max_points: int = MAX_POINTS) -> None:
        self._max_points = max_points
        self._loss: dict[str, Series] = {}
        self._eval: dict[str, Series] = {}

    def record(self, runs: Iterable[RunView]) -> None:
        for view in runs:
            if view.health != "live" or view.step is None:
                continue
            if view.loss is not None:
                self._series(self._loss, view.name).add(view.step, view.loss)

    def record_detail(self, detail: RunDetail) -> None:
        """A trusted status's last eval, at the step it was taken."""
        if detail.run.health != "live" or detail.status is None:
            return
        last_eval = detail.status.last_eval
        if last_eval is not None:
            self._series(self._eval, detail.run.name).add(last_eval.step, last_eval.losses.total)

    def loss(self, name: str) -> Series:
        return self._loss.get(name) or Series(self._max_points)

    def eval_loss(self, name: str) -> Series:
        return self._eval.get(name) or Series(self._max_points)

    def _series(self, table: dict[str, Series], name: str) -> Series:
        series = table.get(name)
        if series is None:
            series = table[name] = Series(self._max_points)
        return series
