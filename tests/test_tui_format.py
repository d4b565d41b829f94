"""Formatting rules of the dashboard, on records built here (no daemon, no UI loop)."""

from __future__ import annotations

import io

import pytest
from rich.console import Console, RenderableType

from qwen_daemon.protocol import (
    Gap,
    GpuSample,
    HostView,
    MetricStats,
    ResourceSample,
    ResourceSummary,
    RunView,
    SamplerHealth,
)
from qwen_daemon.protocol.socket import default_socket
from qwen_train.status import CheckpointRef, EvalResult, Event, Losses, Status, Throughput
from qwen_tui.cli import build_parser
from qwen_tui.format import DASH
from qwen_tui.history import LossHistory
from qwen_tui.poller import Connection
from qwen_tui.widgets.banner import banner_text
from qwen_tui.widgets.events_view import events_renderable, timeline
from qwen_tui.widgets.host_bar import host_text
from qwen_tui.widgets.run_facts import run_facts
from qwen_tui.widgets.runs_table import run_cells
from qwen_tui.widgets.status_view import status_renderable
from qwen_tui.widgets.summary_view import coverage_bar, summary_renderable

NOW = 1_700_000_000.0


def plain(renderable: RenderableType, width: int = 160) -> str:
    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    console.print(renderable)
    return console.export_text()


def view(**changes: object) -> RunView:
    base: dict[str, object] = dict(
        name="sv-01",
        lane="language-expansion",
        surface="lab",
        runner="process",
        state="running",
        health="live",
        run_dir="/srv/scratch/runs/sv-01",
        created_at=NOW - 3600,
        nonce="n1",
        pid=42,
        step=1234,
        max_steps=5000,
        loss=3.21,
        eval_loss=3.5,
        steps_per_s=0.8,
    )
    base.update(changes)
    return RunView(**base)  # type: ignore[arg-type]


def cell_text(cell: object) -> str:
    return cell if isinstance(cell, str) else cell.plain  # type: ignore[attr-defined]


# -- runs table rows -------------------------------------------------------------------


def test_live_row() -> None:
    cells = {key: cell_text(value) for key, value in run_cells(view()).items()}
    assert cells["health"] == "live"
    assert cells["step"] == "1234/5000"
    assert cells["loss"] == "3.2100"
    assert cells["eval_loss"] == "3.5000"
    assert cells["speed"] == "0.80/s"
    assert cells["eta"] == "1h18m"


def test_stale_row_shows_reason_and_no_numbers() -> None:
    # Even if a stale view carried numbers, the row must not show them as live.
    stale = view(health="stale", stale_reason="heartbeat 94s old")
    cells = {key: cell_text(value) for key, value in run_cells(stale).items()}
    assert cells["health"] == "stale: heartbeat 94s old"
    for key in ("step", "loss", "eval_loss", "speed", "eta"):
        assert cells[key] == DASH, key


def test_ended_row_keeps_final_figures_but_no_speed() -> None:
    ended = view(state="completed", health="ended", step=5000, ended_at=NOW, exit_code=0)
    cells = {key: cell_text(value) for key, value in run_cells(ended).items()}
    assert cells["health"] == "ended"
    assert cells["step"] == "5000/5000"
    assert cells["loss"] == "3.2100"
    assert cells["speed"] == DASH
    assert cells["eta"] == DASH


def test_run_facts_stale() -> None:
    text = plain(run_facts(view(health="stale", stale_reason="nonce mismatch"), now=NOW))
    assert "stale: nonce mismatch" in text
    assert "1234" not in text
    assert "0.80" not in text


# -- trusted status --------------------------------------------------------------------


def full_status() -> Status:
    return Status(
        run_id="sv-01",
        nonce="n1",
        host="hemma",
        pid=42,
        state="training",
        heartbeat=NOW - 1,
        started_at=NOW - 3600,
        step=1234,
        max_steps=5000,
        epoch=2,
        losses=Losses(3.21, 2.9, 1.03),
        lr=2e-5,
        throughput=Throughput(0.8, 1234.5),
        last_checkpoint=CheckpointRef(1000, "/srv/scratch/runs/sv-01/ckpt-1000", NOW - 300),
        last_eval=EvalResult(
            1200,
            Losses(3.5, 3.1, 1.3),
            64,
            per_split={"fleurs": Losses(3.4, 3.0, 1.3), "waxholm": Losses(3.8, 3.3, 1.6)},
            per_speaker={"held_out_spk7": Losses(3.3, 3.0, 1.0)},
        ),
        cursor_check="ok: epoch 2, position 118 of 4000",
        non_finite_events=[Event(NOW - 50, "non_finite", "talker.model.layers.15 went NaN", 1100)],
        batching="auto: 3120 padded positions, the plan's largest for 25.2 GiB of AMD Radeon AI PRO R9700",
        startup="61.0 s to the first step: loading weights 9.1 s, first step, compiling included 40.2 s",
    )


def test_status_shows_every_section() -> None:
    text = plain(status_renderable(full_status(), view(), now=NOW))
    for expected in (
        "training",
        "1234/5000 / epoch 2",
        "talker 2.9000",
        "2.00e-05",
        "0.80 steps/s",
        "step 1000",
        "/srv/scratch/runs/sv-01/ckpt-1000",
        "step 1200, 64 rows",
        "fleurs",
        "waxholm",
        "held_out_spk7",
        "ok: epoch 2, position 118 of 4000",
        "talker.model.layers.15 went NaN",
        "auto: 3120 padded positions",
        "61.0 s to the first step",
    ):
        assert expected in text, expected


def test_missing_status_says_why() -> None:
    stale = view(health="stale", stale_reason="heartbeat 300s old")
    assert "stale: heartbeat 300s old" in plain(status_renderable(None, stale))
    assert "first heartbeat" in plain(status_renderable(None, view(health="waiting")))


# -- resource summary ------------------------------------------------------------------


def test_summary_metrics_gaps_and_gpu_note() -> None:
    summary = ResourceSummary(
        samples=700,
        first=NOW - 3600,
        last=NOW,
        metrics={
            "cpu_percent": MetricStats(700, 45.0, 3.0, 99.0, 90.0),
            "ram_used_bytes": MetricStats(700, 8 * 1024**3, 7 * 1024**3, 9 * 1024**3, 8.5 * 1024**3),
        },
        gaps=[Gap(NOW - 2000, NOW - 1800)],
        gpu_note="no GPU: NVML library not found",
    )
    text = plain(summary_renderable(summary, now=NOW))
    assert "700 samples" in text
    assert "host CPU" in text and "45.0%" in text and "99.0%" in text and "90.0%" in text
    assert "host RAM" in text and "8.0 GiB" in text and "7.0 GiB" in text
    assert "1 gap without samples, 3m20s in all" in text
    assert "no GPU: NVML library not found" in text
    assert "·" in text  # the gap is drawn on the coverage line
    assert "gpu" not in text.replace("no GPU", "")  # no GPU rows made up as zeros


def test_summary_without_samples() -> None:
    text = plain(summary_renderable(ResourceSummary(samples=0, first=None, last=None, gpu_note="no GPU")))
    assert "no resource samples" in text
    assert "no GPU" in text


def test_coverage_bar_marks_gap_cells() -> None:
    bar = coverage_bar(0.0, 100.0, [Gap(40.0, 60.0)], width=10).plain
    assert bar == "████··████"


# -- host bar, banner, events, history -------------------------------------------------


def test_host_bar() -> None:
    gpu = GpuSample(0, "NVIDIA H100", 45.0, 10 * 1024**3, 80 * 1024**3)
    host = HostView(SamplerHealth(5.0, NOW - 2, True), ResourceSample(NOW - 2, 23.5, 8 * 1024**3, 32 * 1024**3, [gpu]))
    text = host_text(host, now=NOW).plain
    assert "sampler alive" in text and "2s ago" in text
    assert "CPU 23.5%" in text and "RAM 8.0 GiB/32.0 GiB" in text
    assert "GPU0 NVIDIA H100 45.0% 10.0 GiB/80.0 GiB" in text
    dead = HostView(
        SamplerHealth(5.0, NOW - 600, False, "no GPU: NVML library not found"),
        ResourceSample(NOW - 600, 1.0, 1, 2, gpu_note="no GPU: NVML library not found"),
    )
    text = host_text(dead, now=NOW).plain
    assert "NOT RUNNING" in text and "10m00s ago" in text
    assert "no GPU: NVML library not found" in text
    assert "daemon error" in host_text(None, "daemon error").plain


def test_banner_names_the_problem_and_the_age() -> None:
    text = banner_text(Connection("daemon not reachable at /x.sock", NOW - 30, 1.0), now=NOW).plain
    assert "daemon not reachable at /x.sock" in text
    assert "retrying every 1s" in text
    assert "30s ago" in text and "not live" in text


def test_events_interleave_daemon_and_trainer() -> None:
    daemon = [Event(NOW - 100, "launched", "pid 42"), Event(NOW - 10, "stop_requested", "by operator")]
    trainer = [Event(NOW - 50, "checkpoint", "ckpt-1000", 1000)]
    assert [e.kind for _, e in timeline(daemon, trainer)] == ["launched", "checkpoint", "stop_requested"]
    # The daemon may already include the trainer's events in the run's: each is shown once.
    merged = sorted([*daemon, *trainer], key=lambda e: e.time)
    assert [(src, e.kind) for src, e in timeline(merged, trainer)] == [
        ("daemon", "launched"),
        ("trainer", "checkpoint"),
        ("daemon", "stop_requested"),
    ]
    text = plain(events_renderable(daemon, trainer, now=NOW))
    assert "trainer" in text and "ckpt-1000" in text
    assert "no events yet" in plain(events_renderable([], []))


def test_history_records_live_only_and_cuts_back_on_resume() -> None:
    history = LossHistory()
    history.record([view(step=10, loss=5.0)])
    history.record([view(step=20, loss=4.0)])
    history.record([view(step=30, loss=9.0, health="stale", stale_reason="old")])
    assert history.loss("sv-01").values() == [5.0, 4.0]
    history.record([view(step=15, loss=4.5)])  # resumed from an earlier checkpoint
    assert history.loss("sv-01").steps() == [10, 15]


# -- command line ----------------------------------------------------------------------


def test_cli_defaults_follow_the_daemon(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QWEN_DAEMON_SOCKET", "/tmp/hemma-test.sock")
    args = build_parser().parse_args(["--run", "sv-01"])
    assert args.socket is None and args.run == "sv-01" and args.interval == 1.0
    monkeypatch.delenv("QWEN_DAEMON_SOCKET")
    monkeypatch.setenv("XDG_STATE_HOME", "/tmp/xdg")
    assert str(default_socket()) == "/tmp/xdg/qwen-hemma/daemon.sock"


def test_cli_help_and_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args(["--help"])
    assert done.value.code == 0
    assert "--run NAME" in capsys.readouterr().out
    for bad in (["--run", "../etc"], ["--interval", "0"], ["--socket", "/tmp/" + "x" * 120]):
        with pytest.raises(SystemExit) as done:
            build_parser().parse_args(bad)
        assert done.value.code == 2
