"""The SQLite run registry: reservation, nonce-conditional updates, samples, schema check."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from qwen_daemon.jobs.job import Job
from qwen_daemon.jobs.kinds import TRAIN
from qwen_daemon.protocol import ResourceSample
from qwen_daemon.resources.summary_cache import SummaryCache
from qwen_daemon.runs.registry import Registry, RunConflict
from qwen_daemon.runs.registry_file import RegistryError
from qwen_train.spec import RunSpec, SpecError


def spec(name: str = "r1") -> Job:
    return TRAIN.job(RunSpec(name=name, lane="language-expansion", model="/m", bundle="/b", surface="lab"))


def sample(t: float) -> ResourceSample:
    return ResourceSample(time=t, cpu_percent=1.0, ram_used_bytes=1, ram_total_bytes=2)


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "registry.sqlite3")


def test_reserve_records_the_launch_in_wal_mode(registry: Registry, tmp_path: Path) -> None:
    record = registry.reserve(spec(), tmp_path / "runs" / "r1", "n1", 100.0)
    assert (record.state, record.nonce, record.lane, record.surface) == ("launching", "n1", "language-expansion", "lab")
    assert registry.set_running("r1", "n1", 4242)
    assert registry.get("r1").pid == 4242  # type: ignore[union-attr]
    mode = sqlite3.connect(registry.path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_active_name_cannot_be_launched_twice(registry: Registry, tmp_path: Path) -> None:
    registry.reserve(spec(), tmp_path, "n1", 100.0)
    with pytest.raises(RunConflict, match="already active"):
        registry.reserve(spec(), tmp_path, "n2", 101.0)


def test_bad_name_is_refused(registry: Registry, tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="not allowed"):
        registry.reserve(spec("../x"), tmp_path, "n1", 100.0)


def test_relaunch_after_end_keeps_creation_and_history(registry: Registry, tmp_path: Path) -> None:
    registry.reserve(spec(), tmp_path, "n1", 100.0)
    registry.set_running("r1", "n1", 1)
    assert registry.finish("r1", "n1", "stopped", 5, "stopped", 200.0)
    record = registry.reserve(spec(), tmp_path, "n2", 300.0)
    assert (record.created_at, record.launched_at, record.ended_at, record.exit_code) == (100.0, 300.0, None, None)
    assert [(x.nonce, x.started_at, x.ended_at) for x in registry.launches("r1")] == [
        ("n1", 100.0, 200.0), ("n2", 300.0, None),
    ]
    assert [e.kind for e in registry.events("r1")] == ["launch", "stopped", "launch"]


def test_an_old_launch_cannot_end_the_new_one(registry: Registry, tmp_path: Path) -> None:
    registry.reserve(spec(), tmp_path, "n1", 100.0)
    registry.finish("r1", "n1", "interrupted", None, "lost", 150.0)
    registry.reserve(spec(), tmp_path, "n2", 200.0)
    assert not registry.finish("r1", "n1", "failed", 1, "late reap", 250.0)
    assert not registry.mark_stopping("r1", "n1", 250.0, "stop")
    assert registry.get("r1").state == "launching"  # type: ignore[union-attr]


def test_samples_are_tagged_with_active_runs(registry: Registry) -> None:
    registry.add_sample(sample(1.0), ["a", "b"])
    registry.add_sample(sample(2.0), [])
    registry.add_sample(sample(3.0), ["a"])
    assert [s.time for s in registry.samples("a", 0.0, 10.0)] == [1.0, 3.0]
    assert [s.time for s in registry.samples("b", 0.0, 10.0)] == [1.0]
    assert [s.time for s in registry.samples("a", 2.0, 10.0)] == [3.0]
    assert registry.prune_host_samples(before=5.0) == 1
    assert len(registry.samples("a", 0.0, 10.0)) == 2  # run evidence is kept


def test_concurrent_writers(registry: Registry) -> None:
    def write(offset: int) -> None:
        for i in range(50):
            registry.add_sample(sample(offset + i), ["r"])

    threads = [threading.Thread(target=write, args=(1000 * k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(registry.samples("r", 0.0, 1e9)) == 200


def test_reopen_and_unknown_schema(tmp_path: Path) -> None:
    path = tmp_path / "registry.sqlite3"
    first = Registry(path)
    first.reserve(spec(), tmp_path, "n1", 1.0)
    first.close()
    assert Registry(path).get("r1") is not None
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.commit()
    conn.close()
    with pytest.raises(RegistryError, match="schema version 99"):
        Registry(path)


def test_summary_cache_recomputes_active_runs_and_keeps_ended_ones(registry: Registry, tmp_path: Path) -> None:
    registry.reserve(spec(), tmp_path, "n1", 100.0)
    registry.add_sample(sample(101.0), ["r1"])
    cache = SummaryCache(registry, period_s=5.0)
    assert cache.get("r1", 102.0).samples == 1
    registry.add_sample(sample(103.0), ["r1"])
    assert cache.get("r1", 104.0).samples == 1  # younger than a period: from the cache
    assert cache.get("r1", 108.0).samples == 2  # older: recomputed
    registry.finish("r1", "n1", "stopped", 5, "stopped", 110.0)
    ended = cache.get("r1", 111.0)  # the launch ended: recomputed once
    assert ended.samples == 2 and ended.gaps == []
    assert cache.get("r1", 10_000.0) is ended  # and never again
    registry.reserve(spec(), tmp_path, "n2", 20_000.0)
    assert cache.get("r1", 20_001.0).samples == 2  # a relaunch is a new window
