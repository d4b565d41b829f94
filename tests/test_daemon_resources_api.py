"""GET /runs/{name}/resources against a real daemon: the stored samples, bounded, with its downtime as a gap.

One run (the fake trainer) is sampled every 0.2 s; the daemon is stopped for
1.5 s while the run goes on, then started again (it reattaches), and the run
is stopped so its series no longer changes. The series is checked against the
samples the daemon stored (read back through its registry), the downtime must
be a gap with no values in it (never zeros), and bad requests are 4xx.
"""

from __future__ import annotations

import signal
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from qwen_daemon.protocol import DEFAULT_POINTS, MAX_POINTS, ResourceSample, RunResources
from qwen_daemon.protocol.client import DaemonError
from qwen_daemon.resources.summary import GAP_PERIODS, metric_values
from qwen_daemon.runs.registry import Registry
from tests.conftest import MakeDir
from tests.test_daemon_api import assert_error
from tests.test_daemon_harness import (
    DaemonProcess,
    make_spec,
    raw_request,
    remove_tree,
    short_tmp_dir,
    trainer_wrapper,
    wait_until,
)

RUN = "res"
PERIOD = 0.2
DOWN_S = 1.5


@dataclass
class Scenario:
    daemon: DaemonProcess
    down_at: float  # the first daemon had exited
    up_at: float  # the second one was started


def _samples(daemon: DaemonProcess) -> int:
    return daemon.client.run(RUN).summary.samples


@pytest.fixture(scope="module")
def scenario(module_dir: MakeDir) -> Iterator[Scenario]:
    short = short_tmp_dir()
    root = module_dir("res")
    args = ("--sample-period", str(PERIOD), "--stop-timeout", "5")
    first = DaemonProcess(root / "state", short / "d.sock", trainer_wrapper(short), *args).start()
    second: DaemonProcess | None = None
    try:
        first.client.launch(spec=make_spec(root, RUN))
        wait_until(lambda: _samples(first) >= 8, 10, "samples of the run")
        assert first.stop(signal.SIGTERM) == 0
        down_at = time.time()
        time.sleep(DOWN_S)
        up_at = time.time()
        second = DaemonProcess(first.state_dir, first.socket, first.trainer, *args).start()
        before = _samples(second)
        wait_until(lambda: _samples(second) >= before + 8, 10, "samples after the restart")
        second.client.stop(RUN)
        wait_until(lambda: second.client.run(RUN).run.state == "stopped", 15, "the run to stop")
        yield Scenario(second, down_at, up_at)
    finally:
        if second is not None:
            second.stop()
        remove_tree(short)


def stored(daemon: DaemonProcess) -> list[ResourceSample]:
    """The run's samples as the daemon stored them, through its own registry file."""
    registry = Registry(daemon.state_dir / "registry.sqlite3")
    try:
        return [s for launch in registry.launches(RUN) for s in registry.samples(RUN, launch.started_at,
                                                                                  launch.ended_at or time.time())]
    finally:
        registry.close()


def bucket_samples(series: RunResources, index: int, samples: list[ResourceSample]) -> list[ResourceSample]:
    bucket = series.buckets[index]
    last = index == len(series.buckets) - 1
    return [s for s in samples if bucket.start <= s.time < bucket.end or (last and s.time == bucket.end)]


@pytest.mark.parametrize("points", [MAX_POINTS, 5])
def test_series_is_the_stored_samples_downsampled(scenario: Scenario, points: int) -> None:
    series = scenario.daemon.client.resources(RUN, points=points)
    samples = stored(scenario.daemon)
    assert series.name == RUN and series.period_s == PERIOD and series.points == points
    assert 1 <= len(series.buckets) <= points
    assert series.samples == len(samples) == sum(b.samples for b in series.buckets) >= 16
    assert {"cpu_percent", "ram_used_bytes", "run_cpu_percent", "run_rss_bytes"} <= set(series.metrics)
    for index, bucket in enumerate(series.buckets):
        mine = bucket_samples(series, index, samples)
        assert len(mine) == bucket.samples, index
        for name, metric in series.metrics.items():
            values = [v[name] for v in (metric_values(s, RUN) for s in mine) if name in v]
            assert metric.median[index] == (statistics.median(values) if values else None), (name, index)
            assert metric.max[index] == (max(values) if values else None), (name, index)
    assert series.metrics["ram_used_bytes"].last == float(samples[-1].ram_used_bytes)


def test_the_daemons_downtime_is_a_gap_not_zeros(scenario: Scenario) -> None:
    series = scenario.daemon.client.resources(RUN, points=MAX_POINTS)
    down = [g for g in series.gaps if g.start <= scenario.down_at and g.end >= scenario.up_at]
    assert len(down) == 1, (series.gaps, scenario)
    gap = down[0]
    assert gap.end - gap.start >= DOWN_S
    assert gap in scenario.daemon.client.run(RUN).summary.gaps  # the summary's gap, the same rule
    inside = [i for i, b in enumerate(series.buckets) if gap.start < b.start and b.end < gap.end]
    assert inside, "buckets are at least 3 periods wide; a 1.5 s downtime holds at least one"
    for index in inside:
        assert series.buckets[index].samples == 0 and series.buckets[index].gap
        for name, metric in series.metrics.items():
            assert metric.median[index] is None and metric.max[index] is None, name
    touching = [b for b in series.buckets if b.start < gap.end and b.end > gap.start]
    assert all(b.gap for b in touching)
    sampled = [b for b in series.buckets if not b.gap]
    assert sampled and all(b.samples > 0 for b in sampled)
    assert all(b.end - b.start >= GAP_PERIODS * PERIOD - 1e-6 for b in series.buckets)


def test_default_points_and_the_typed_client(scenario: Scenario) -> None:
    series = scenario.daemon.client.resources(RUN)
    assert series.points == DEFAULT_POINTS and len(series.buckets) <= DEFAULT_POINTS


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("points=0", "`points` is '0'"),
        ("points=-3", "`points` is '-3'"),
        (f"points={MAX_POINTS + 1}", f"from 1 to {MAX_POINTS}"),
        ("points=1.5", "`points` is '1.5'"),
        ("points=abc", "`points` is 'abc'"),
        ("points=", "`points` is ''"),
        ("points=3&points=4", "`points` is given 2 times"),
        ("pts=3", "unknown query parameter 'pts'"),
    ],
)
def test_bad_points_are_400_naming_the_parameter(scenario: Scenario, query: str, fragment: str) -> None:
    assert_error(raw_request(scenario.daemon.socket, "GET", f"/runs/{RUN}/resources?{query}"), 400, fragment)


def test_unknown_run_and_bad_name(scenario: Scenario) -> None:
    sock: Path = scenario.daemon.socket
    assert_error(raw_request(sock, "GET", "/runs/no-such-run/resources"), 404, "no run named 'no-such-run'")
    assert_error(raw_request(sock, "GET", "/runs/..%2Fx/resources"), 400, "is not allowed")
    assert_error(raw_request(sock, "POST", f"/runs/{RUN}/resources", b"{}"), 405, "use GET")
    with pytest.raises(DaemonError) as caught:
        scenario.daemon.client.resources("no-such-run")
    assert caught.value.status == 404
