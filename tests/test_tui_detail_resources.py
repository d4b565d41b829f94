"""The run detail's "resources over time" and "checkpoints kept" sections, driven by Pilot.

Against the scripted daemon (exact series and checkpoints, so every glyph and
figure is asserted), then once against a real `qwen-daemon serve` whose
sampler fills the series of a live run.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import msgspec
import pytest
from textual.widgets import Static

from qwen_daemon.protocol import (
    CheckpointView,
    Gap,
    MetricSeries,
    MetricStats,
    ResourceBucket,
    ResourceSummary,
    RunResources,
)
from qwen_daemon.protocol.client import DaemonError
from qwen_tui.app import HemmaApp
from qwen_tui.poller import Cadence
from qwen_tui.screens.detail import RunDetailScreen
from qwen_tui.screens.runs import RunsScreen
from tests.test_tui_harness import SIZE, ScriptedDaemon, make_app, plain, run_view, until
from tests.test_tui_live import RUN, LiveDaemon, start_daemon  # noqa: F401  (start_daemon: the fixture)
from tests.test_tui_live import until as live_until

pytestmark = pytest.mark.asyncio
GIB = 1024**3
PAD = " " * 22


def series_of(now: float) -> RunResources:
    """12 buckets of 50 s: a sampler gap over buckets 4-5 (6 touches it), a resume starting in bucket 9."""
    buckets = [
        ResourceBucket(now - 600 + 50 * i, now - 550 + 50 * i, 0 if i in (4, 5) else 10, gap=i in (4, 5, 6),
                       relaunch=i == 9)
        for i in range(12)
    ]
    cpu = [0.0, 10.0, 20.0, 30.0, None, None, 50.0, 60.0, 70.0, 80.0, 90.0, 55.0]
    rss = [None, None, 1, 2, None, None, 2, 2, 3, 3, 4, 4]
    return RunResources(
        name="a", period_s=5.0, points=120, samples=100, buckets=buckets,
        metrics={
            "run_rss_bytes": MetricSeries([v * GIB if v else None for v in rss], [v * GIB if v else None for v in rss],
                                          last=4 * GIB),
            "cpu_percent": MetricSeries(cpu, [v + 5 if v is not None else None for v in cpu], last=55.0),
        },
        gaps=[Gap(now - 400, now - 290)],
    )


def summary_of(now: float) -> ResourceSummary:
    return ResourceSummary(100, now - 600, now, {"cpu_percent": MetricStats(100, 40.0, 0.0, 95.0, 90.0),
                                                 "run_rss_bytes": MetricStats(80, 2 * GIB, GIB, 4 * GIB, 4 * GIB)})


def text_of(app: HemmaApp, selector: str) -> str:
    return plain(app.screen.query_one(selector, Static).content)


async def test_series_rows_show_values_bars_gaps_and_the_resume() -> None:
    now = time.time()
    daemon = ScriptedDaemon(run_view("a"))
    daemon.series["a"] = series_of(now)
    daemon.summaries["a"] = summary_of(now)
    app = make_app(daemon, initial_run="a")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: "host CPU" in text_of(app, "#series"))
        await until(pilot, lambda: "median 40.0%" in text_of(app, "#series"))  # the summary arrives with the detail
        lines = text_of(app, "#series").splitlines()
        assert "12 points, 100 samples every 5s" in lines[0] and "1 gap" in lines[0] and "1 resume ↻" in lines[0]
        assert lines[1].startswith("coverage") and lines[1].endswith(PAD[8:] + "████··▒██↻██")
        cpu = next(i for i, line in enumerate(lines) if line.startswith("host CPU"))
        assert "now 55.0%   median 40.0%   peak 95.0%   (bars 0–100.0%)" in lines[cpu]
        assert lines[cpu + 1] == PAD + "▁▂▂▃··▅▅▆▇▇▅"  # zero is the lowest bar; the gap is '·', never a bar
        rss = next(i for i, line in enumerate(lines) if line.startswith("run RSS, summed"))
        assert rss > cpu  # host figures first, then the run's own
        assert "now 4.0 GiB   median 2.0 GiB   peak 4.0 GiB" in lines[rss]
        assert lines[rss + 1].rstrip() == PAD + "  ▃▅··▅▅▆▆██"  # no share yet: blank; the gap: '·'
        await pilot.pause(0.5)  # polls without a series keep the last one on screen
        assert "▁▂▂▃··▅▅▆▇▇▅" in text_of(app, "#series")


async def test_series_is_fetched_only_on_the_detail_screen_and_paced() -> None:
    daemon = ScriptedDaemon(run_view("a"))
    app = make_app(daemon)
    async with app.run_test(size=SIZE) as pilot:
        app.resource_cadence = Cadence(0.5)
        await until(pilot, lambda: daemon.polls >= 5)
        assert daemon.series_asked == []  # the runs screen shows no series
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, RunDetailScreen))
        await until(pilot, lambda: bool(daemon.series_asked))
        assert daemon.series_asked[0] == ("a", 120)  # one point per column: 160 wide has room for the default
        polls = daemon.polls
        await pilot.pause(1.6)
        assert daemon.polls - polls >= 8 and 2 <= len(daemon.series_asked) <= 5  # every 0.5 s, not every poll
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, RunsScreen))
        asked = len(daemon.series_asked)
        await pilot.pause(1.0)
        assert len(daemon.series_asked) == asked


async def test_narrow_screen_asks_for_fewer_points_and_a_series_error_is_stated() -> None:
    daemon = ScriptedDaemon(run_view("a"))
    daemon.fail["resources"] = DaemonError(404, "no such route: GET /runs/a/resources")
    app = make_app(daemon, initial_run="a")
    async with app.run_test(size=(100, 45)) as pilot:
        app.resource_cadence = Cadence(0.5)
        await until(pilot, lambda: "no resource series" in text_of(app, "#series"))
        assert "no such route: GET /runs/a/resources" in text_of(app, "#series")
        assert daemon.series_asked == [] and "samples" in text_of(app, "#summary")  # the rest is still shown
        del daemon.fail["resources"]
        await until(pilot, lambda: bool(daemon.series_asked), timeout=8.0)
        assert daemon.series_asked[-1] == ("a", 100 - 30)


async def test_checkpoints_table_marks_the_resume_target_and_broken_ones() -> None:
    now = time.time()
    daemon = ScriptedDaemon(run_view("a"))
    kept = [
        CheckpointView("step-00000100", 100, now - 3600, int(1.5 * GIB), 0, 100, 125),
        CheckpointView("step-00000200", 200, now - 1800, int(1.5 * GIB), 1, 75, 125),
        CheckpointView("step-00000300", 300, now - 65, int(1.5 * GIB), 2, 50, 125, resume=True),
    ]
    daemon.checkpoints["a"] = kept
    app = make_app(daemon, initial_run="a")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: "3 kept" in text_of(app, "#checkpoints"))
        text = text_of(app, "#checkpoints")
        assert "3 kept, 4.5 GiB on disk" in text
        lines = text.splitlines()
        resume = next(line for line in lines if "▶ resume" in line)
        assert " 300 " in resume and "1.5 GiB" in resume and "50/125" in resume
        assert re.search(r"1m(0[5-9]|1\d)s ago", resume), resume  # 65 s old, plus however long the app took to draw
        assert sum("▶ resume" in line for line in lines) == 1
        older = next(line for line in lines if " 200 " in line)
        assert "75/125" in older and re.search(r"30m[01]\ds ago", older) and older.rstrip().endswith("ok")
        broken = CheckpointView("step-00000400", 400, None, 10, resume=True,
                                error="malformed meta.json: Input data was truncated")
        daemon.checkpoints["a"] = [msgspec.structs.replace(c, resume=False) for c in kept] + [broken]
        await until(pilot, lambda: "4 kept" in text_of(app, "#checkpoints"))
        text = text_of(app, "#checkpoints")
        row = next(line for line in text.splitlines() if "▶ resume" in line)
        assert " 400 " in row and "malformed meta.json" in row
        assert "a resume would refuse step-00000400, the newest: malformed meta.json" in text


async def test_no_checkpoints_yet_says_where_a_resume_starts() -> None:
    daemon = ScriptedDaemon(run_view("a"), run_view("p", kind="preprocess"))
    app = make_app(daemon, initial_run="a")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: "no durable checkpoint kept yet" in text_of(app, "#checkpoints"))
        assert "a resume would start from step 0" in text_of(app, "#checkpoints")


@pytest.mark.timeout(60)
async def test_live_daemon_series_and_checkpoints(start_daemon: Callable[..., LiveDaemon]) -> None:  # noqa: F811
    daemon = start_daemon()
    daemon.launch()
    app = HemmaApp(daemon.socket, refresh_interval=0.2, initial_run=RUN)
    async with app.run_test(size=(160, 50)) as pilot:
        app.resource_cadence = Cadence(0.5)
        await live_until(pilot, lambda: "run RAM (PSS)" in text_of(app, "#series"), "the run's own series")
        text = text_of(app, "#series")
        assert "host CPU" in text and "coverage" in text and "every 0.5s" in text
        coverage = next(line for line in text.splitlines() if line.startswith("coverage"))
        assert "█" in coverage
        assert "no durable checkpoint kept yet" in text_of(app, "#checkpoints")
