"""How protocol values read to a person (protocol/display.py), in both media, and the CLI's text built on it."""

from __future__ import annotations

import time

import pytest

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
from qwen_daemon.protocol.display import PLAIN, SCREEN, Display, eta_seconds, metric_label
from tests.test_tui_format import view

NOW = 1_700_000_000.0

# The dashboard's medium, under the names its formatters had when these rules were first written for it.
DASH = SCREEN.unknown
fmt_bytes, fmt_clock, fmt_duration, fmt_eta, fmt_float, fmt_metric = (
    SCREEN.size, SCREEN.clock, SCREEN.duration, SCREEN.eta, SCREEN.decimal, SCREEN.metric)


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
    diagnose = render.detail_text(detail(run(name="a.diagnose", kind="diagnose", parent="a")))
    gate = render.detail_text(detail(run(name="a.gate", kind="gate", parent="a")))
    assert "replays run:    a" in diagnose and "judges run:     a" in gate
    assert "replays run" not in render.detail_text(detail(run()))
    assert "steps/s:        0.80" in render.detail_text(detail(run()))


def test_the_cli_sizes_and_host() -> None:
    kept = CheckpointView("step-00000900", step=900, created_at=NOW, size_bytes=5 * 2**20, resume=True)
    lines = render.checkpoint_lines(detail(run(), [kept]))
    assert "5.0 MiB" in lines[1] and "<- resume" in lines[1]
    host = HostView(SamplerHealth(5.0, NOW, True), ResourceSample(NOW, 23.5, 8 * 2**30, 32 * 2**30))
    text = render.host_view(host)
    assert "cpu: 23.5%" in text and "ram: 8.0 GiB of 32.0 GiB" in text


# -- the rules, on the dashboard's medium (moved from test_tui_format.py) ---------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (42.4, "42s"), (185, "3m05s"), (3720, "1h02m"), (2 * 86400 + 3 * 3600, "2d03h"), (-1, DASH)],
)
def test_duration(seconds: float, text: str) -> None:
    assert fmt_duration(seconds) == text


def test_eta_is_remaining_steps_over_rate() -> None:
    assert eta_seconds(1000, 5000, 2.0) == 2000.0
    assert eta_seconds(5000, 5000, 2.0) == 0.0
    assert eta_seconds(10, 5000, 0.0) is None
    assert eta_seconds(None, 5000, 1.0) is None
    assert eta_seconds(10, None, 1.0) is None
    assert fmt_eta(view()) == "1h18m"  # (5000-1234)/0.8 = 4707.5 s


@pytest.mark.parametrize(
    "changes",
    [{"health": "stale", "stale_reason": "old"}, {"state": "completed", "health": "ended"}, {"health": "waiting"}],
)
def test_no_eta_unless_live(changes: dict[str, object]) -> None:
    assert fmt_eta(view(**changes)) == DASH


def test_non_finite_and_units() -> None:
    assert fmt_float(float("nan")) == "NaN"
    assert fmt_float(float("inf")) == "+Inf"
    assert fmt_float(None) == DASH
    assert fmt_bytes(8 * 1024**3) == "8.0 GiB"
    assert fmt_metric("gpu0_vram_used_bytes", 1024**2) == "1.0 MiB"
    assert fmt_metric("cpu_percent", 45.25) == "45.2%"
    assert [metric_label(n) for n in ("cpu_percent", "gpu1_vram_used_bytes", "gpu0_busy_percent", "disk_io_bytes",
                                      "run_gpu1_memory_bytes")] == [
        "host CPU",
        "GPU1 VRAM",
        "GPU0 busy",
        "disk io",
        "run memory on GPU1",
    ]


def test_times_are_local_clock() -> None:
    stamp = time.mktime((2024, 1, 2, 3, 4, 5, 0, 0, -1))
    assert fmt_clock(stamp, now=stamp) == "03:04:05"
    assert fmt_clock(stamp, now=stamp + 3 * 86400) == "2024-01-02 03:04:05"
