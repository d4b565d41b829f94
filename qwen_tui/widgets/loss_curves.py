"""A run's train and eval loss curves: a label that carries the scale, and a sparkline.

The points come from the app's LossHistory, which holds the daemon's record
of the run when it has one and what the dashboard saw while watching
otherwise; the label says which. An empty sparkline draws a flat line, which
reads as data, so a curve without points shows only its label.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Label, Sparkline

from qwen_tui.curves import curve_label, finite_values, mean
from qwen_tui.history import LossHistory


class LossCurves(Vertical):
    def compose(self) -> ComposeResult:
        yield Label("", id="loss-label")
        yield Sparkline([], id="loss-spark", summary_function=mean)
        yield Label("", id="eval-label")
        yield Sparkline([], id="eval-spark", summary_function=mean)

    def show(self, history: LossHistory, name: str, error: str | None = None) -> None:
        source = history.source(name)
        loss = history.loss(name)
        evals = history.eval_loss(name)
        self.query_one("#loss-label", Label).update(
            curve_label("train loss", loss, source, error, last_loss=history.last_loss(name))
        )
        self.query_one("#eval-label", Label).update(
            curve_label("eval loss", evals, source, error, last_eval=history.last_eval(name))
        )
        for spark_id, series in (("#loss-spark", loss), ("#eval-spark", evals)):
            spark = self.query_one(spark_id, Sparkline)
            spark.data = finite_values(series)
            spark.display = bool(spark.data)
