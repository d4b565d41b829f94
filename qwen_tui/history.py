"""Curves the dashboard draws: a run's losses and evals, and the host's recent samples.

The daemon serves a run's curves (GET /runs/{name}/history, from the run's
losses.jsonl and report.json); those are the record and replace whatever the
dashboard had for that run. Between fetches, and for a daemon that does not
serve history, the dashboard keeps one point per new step it sees: only live
values (a stale status never enters a curve), and a step that goes backwards
(a resume from an older checkpoint, a non-finite rollback) cuts the curve back
to it, so the line shows the path the weights actually took.

The API reports only the newest host sample, so the host's sparklines are the
samples seen since the dashboard opened, and say so.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Literal

from qwen_daemon.protocol import EvalPoint, LossPoint, ResourceSample, RunDetail, RunHistory, RunView

MAX_POINTS = 2000  # the daemon downsamples a run's history to at most this many points
MAX_HOST_SAMPLES = 240

Source = Literal["daemon", "watch"]


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

    def replace(self, points: Iterable[tuple[int, float]]) -> None:
        self._points.clear()
        for step, value in points:
            self.add(step, value)

    def values(self) -> list[float]:
        return [value for _, value in self._points]

    def steps(self) -> list[int]:
        return [step for step, _ in self._points]

    def points(self) -> list[tuple[int, float]]:
        return list(self._points)

    def __len__(self) -> int:
        return len(self._points)


class LossHistory:
    """Training and eval loss series per run name, and where each run's came from."""

    def __init__(self, max_points: int = MAX_POINTS) -> None:
        self._max_points = max_points
        self._loss: dict[str, Series] = {}
        self._eval: dict[str, Series] = {}
        self._source: dict[str, Source] = {}
        self._last_loss: dict[str, LossPoint] = {}
        self._last_eval: dict[str, EvalPoint] = {}

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

    def record_history(self, history: RunHistory) -> None:
        """The daemon's curves for a run: they replace what was seen while watching."""
        name = history.name
        self._series(self._loss, name).replace((p.step, p.total) for p in history.losses)
        self._series(self._eval, name).replace((p.step, p.total) for p in history.evals)
        self._source[name] = "daemon"
        self._last_loss.pop(name, None)
        self._last_eval.pop(name, None)
        if history.losses:
            self._last_loss[name] = history.losses[-1]
        if history.evals:
            self._last_eval[name] = history.evals[-1]

    def loss(self, name: str) -> Series:
        return self._loss.get(name) or Series(self._max_points)

    def eval_loss(self, name: str) -> Series:
        return self._eval.get(name) or Series(self._max_points)

    def source(self, name: str) -> Source:
        return self._source.get(name, "watch")

    def last_loss(self, name: str) -> LossPoint | None:
        """The newest point of the daemon's history, with the loss parts the run list lacks."""
        return self._last_loss.get(name)

    def last_eval(self, name: str) -> EvalPoint | None:
        return self._last_eval.get(name)

    def _series(self, table: dict[str, Series], name: str) -> Series:
        series = table.get(name)
        if series is None:
            series = table[name] = Series(self._max_points)
        return series


class HostHistory:
    """The host samples seen while the dashboard runs, oldest first, each once."""

    def __init__(self, max_samples: int = MAX_HOST_SAMPLES) -> None:
        self._samples: deque[ResourceSample] = deque(maxlen=max_samples)

    def record(self, sample: ResourceSample | None) -> None:
        if sample is None or (self._samples and self._samples[-1].time >= sample.time):
            return
        self._samples.append(sample)

    def samples(self) -> list[ResourceSample]:
        return list(self._samples)

    def __len__(self) -> int:
        return len(self._samples)
