"""How protocol values read to a person (protocol/display.py), in both media, and the CLI's text built on it."""

from __future__ import annotations

import time

from qwen_daemon.cli import render
from qwen_daemon.protocol import (
    CheckpointView,
    HostView,
    ResourceSample,
    ResourceSummary,
    RunDetail,
    RunView,
    SamplerHealth,
)
from qwen_daemon.protocol.display import PLAIN, SCREEN, Display

NOW = 1_700_000_000.0


def detail(view: RunView, checkpoints: list[CheckpointView] | None = None) -> RunDetail:
    return RunDetail(view, None, ResourceSummary(samples=0, first=None, last=None), checkpoints=checkpoints or [])


def run(**changes: object) -> RunView:
    base: dict[str, object] = dict(name="sv-01", lane="single-speaker", surface="lab", runner="process",
                                   state="running", health="live", run_dir="/srv/runs/sv-01", created_at=NOW - 60,
                                   step=10, max_steps=100, loss=3.21, steps_per_s=0.8)
    base.update(changes)
    return RunView(**base)  # type: ignore[arg-type]


def test_the_media_differ_only_in_the_mark_for_not_known() -> None:
    assert (PLAIN.unknown, SCREEN.unknown) == ("-", "—")
    for medium in (PLAIN, SCREEN):
        unknown = medium.unknown
        assert [medium.decimal(None), medium.size(None), medium.duration(None), medium.clock(None),
                medium.timestamp(None), medium.step(None, 10), medium.speed(None), medium.lr(None),
                medium.percent(None), medium.metric("cpu_percent", None)] == [unknown] * 10
        assert medium.decimal(0.0) == "0.0000" and medium.size(0) == "0 B"  # zero is a measurement
        assert medium.age(None) == "never"
    assert Display().unknown == PLAIN.unknown


def test_a_stopped_run_has_no_eta_in_either_medium() -> None:
    assert PLAIN.eta(run()) == "1m52s" and SCREEN.eta(run()) == "1m52s"  # (100-10)/0.8 = 112.5 s
    assert PLAIN.eta(run(state="stopped", health="ended")) == "-"


def test_timestamps_in_full_and_clock_times_short_today() -> None:
    stamp = time.mktime((2024, 1, 2, 3, 4, 5, 0, 0, -1))
    assert PLAIN.timestamp(stamp) == "2024-01-02 03:04:05"
    assert PLAIN.clock(stamp, now=stamp + 60) == "03:04:05"
    assert PLAIN.clock(stamp, now=stamp + 3 * 86400) == PLAIN.timestamp(stamp)


def test_the_cli_shows_values_as_the_dashboard_does() -> None:
    table = render.runs_table([run(), run(name="new", step=None, loss=None)])
    assert "10/100" in table and "3.2100" in table
    row = next(line for line in table.splitlines() if line.startswith("new "))
    assert " - " in row and " 0 " not in row
    stale = RunView("x", "l", "s", "process", "stopped", "ended", "/r", NOW, loss=float("nan"))
    assert "NaN" in render.runs_table([stale])


def test_the_cli_names_a_jobs_parent_by_its_kind() -> None:
    diagnose = render.run_detail(detail(run(name="a.diagnose", kind="diagnose", parent="a")))
    gate = render.run_detail(detail(run(name="a.gate", kind="gate", parent="a")))
    assert "replays run:    a" in diagnose and "judges run:     a" in gate
    assert "replays run" not in render.run_detail(detail(run()))
    assert "steps/s:        0.80" in render.run_detail(detail(run()))


def test_the_cli_sizes_and_host() -> None:
    kept = CheckpointView("step-00000900", step=900, created_at=NOW, size_bytes=5 * 2**20, resume=True)
    lines = render.checkpoint_lines(detail(run(), [kept]))
    assert "5.0 MiB" in lines[1] and "<- resume" in lines[1]
    host = HostView(SamplerHealth(5.0, NOW, True), ResourceSample(NOW, 23.5, 8 * 2**30, 32 * 2**30))
    text = render.host_view(host)
    assert "cpu: 23.5%" in text and "ram: 8.0 GiB of 32.0 GiB" in text
