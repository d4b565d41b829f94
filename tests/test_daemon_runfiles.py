"""Run-dir readers and job plumbing without a daemon: curves, diagnosis, log tail, names, argv, schema."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import get_args

import msgspec
import pytest

from qwen_daemon import protocol
from qwen_daemon.jobs.job import DiagnoseTarget, Job, job_argv
from qwen_daemon.jobs.kinds import DIAGNOSE, KIND_TYPES, PREPROCESS, TRAIN
from qwen_daemon.protocol import diagnose_name
from qwen_daemon.runs.readers import MAX_POINTS, FileProblem, HistoryReader, downsample, last_line, read_diagnosis
from qwen_daemon.runs.registry import Registry, RunConflict
from qwen_train.prepare.spec import PrepareSpec, SourceSpec
from qwen_train.spec import RunSpec, check_name


def line(step: int, total: float | None = None) -> str:
    value = float(step) if total is None else total
    return json.dumps({"step": step, "total": value, "talker": value / 2, "code_predictor": value / 4}) + "\n"


def test_big_losses_file_is_downsampled_keeping_the_last_point_and_read_incrementally(tmp_path: Path) -> None:
    path = tmp_path / "losses.jsonl"
    path.write_text("".join(line(s) for s in range(1, 50_001)))
    reader = HistoryReader()
    points = reader.losses(tmp_path)
    assert len(points) == MAX_POINTS and points[0].step == 1 and points[-1].step == 50_000
    steps = [p.step for p in points]
    assert steps == sorted(set(steps))
    with open(path, "r+b") as handle:  # change what was already read, in place (same inode, same size) ...
        handle.write(line(1, 7.0).encode())
    with open(path, "a") as handle:  # ... and append: only the new bytes are read
        handle.write(line(50_001))
    points = reader.losses(tmp_path)
    assert points[-1].step == 50_001 and points[0].total == 1.0
    assert HistoryReader().losses(tmp_path)[0].total == 7.0  # a fresh reader sees the change


def test_rewritten_file_torn_lines_nulls_and_steps_trained_again(tmp_path: Path) -> None:
    path = tmp_path / "losses.jsonl"
    reader = HistoryReader()
    assert reader.losses(tmp_path) == []
    path.write_text(line(1) + line(2) + line(3) + '{"step": 4, "tot')
    assert [p.step for p in reader.losses(tmp_path)] == [1, 2, 3]
    # A rollback: the trainer atomically rewrites the file up to the checkpoint (new inode, shorter).
    tmp = tmp_path / "losses.tmp"
    tmp.write_text(line(1) + line(2))
    os.replace(tmp, path)
    assert [p.step for p in reader.losses(tmp_path)] == [1, 2]
    with open(path, "a") as handle:  # a non-finite value encodes as null; a later line retrains step 2
        handle.write('{"step": 3, "total": null, "talker": 1.0, "code_predictor": 1.0}\n' + line(2, 9.0) + line(3))
    points = reader.losses(tmp_path)
    assert [(p.step, p.total) for p in points] == [(1, 1.0), (2, 9.0), (3, 3.0)]


def test_downsample_spreads_evenly() -> None:
    assert downsample(5) == [0, 1, 2, 3, 4]
    picked = downsample(10_000, 100)
    assert len(picked) == 100 and picked[0] == 0 and picked[-1] == 9_999 and picked == sorted(set(picked))


def test_diagnosis_absent_malformed_and_valid(tmp_path: Path) -> None:
    assert read_diagnosis(tmp_path) is None
    (tmp_path / "diagnosis.json").write_text("{not json")
    with pytest.raises(FileProblem, match="diagnosis.json is malformed"):
        read_diagnosis(tmp_path)


def test_last_line_skips_progress_redraws_and_earlier_launches(tmp_path: Path) -> None:
    log = tmp_path / "trainer.log"
    log.write_text("=== t launch aaa: x\nold output\n=== t launch bbb: y\nreplaying\rbar 10%\rbar 100%\n\n")
    assert last_line(log, after="bbb") == "bar 100%"
    log.write_text(log.read_text() + "qwen-train: no durable checkpoint before step 1\n")
    assert last_line(log, after="bbb") == "qwen-train: no durable checkpoint before step 1"
    log.write_text("=== t launch ccc: z\n")
    assert last_line(log, after="ccc") is None and last_line(tmp_path / "none.log") is None


def test_diagnose_names_are_run_names_and_distinct() -> None:
    assert diagnose_name("tr-fault") == "tr-fault.diagnose"
    long_a, long_b = "a" * 60, "a" * 59 + "b"
    assert len(diagnose_name(long_a)) <= 64 and diagnose_name(long_a) != diagnose_name(long_b)
    for name in (long_a, "run.", "x" * 64):
        assert check_name(diagnose_name(name)).endswith(".diagnose")


def test_job_kinds_and_argv(tmp_path: Path) -> None:
    assert set(get_args(protocol.JobKind)) == set(KIND_TYPES) == set(protocol.KINDS)  # one type per protocol kind
    run = TRAIN.job(RunSpec(name="r", lane="benchmark", model="/m", bundle="/b"))
    assert job_argv("py", tmp_path, run, "n1", True)[3:5] == ["run", str(tmp_path / "spec.json")]
    assert job_argv("py", tmp_path, run, "n1", True)[-1] == "--resume"
    prep = PREPROCESS.job(PrepareSpec(name="p", out="/srv/b/p", model="/m", sources=[
        SourceSpec(kind="fleurs", path="/srv/storage/fleurs")]), "default", "process")
    argv = job_argv("py", tmp_path, prep, "n2", True)
    assert argv[3] == "prepare" and "--resume" not in argv and argv[argv.index("--nonce") + 1] == "n2"
    assert [(str(p), ro) for p, ro, _ in prep.paths()] == [
        ("/m", True), ("/srv/b", False), ("/srv/storage/fleurs", True)]  # work dir /srv/b/p.work is inside /srv/b
    replay = Job(DIAGNOSE, "r.diagnose", "benchmark", "default", "process",
                 DiagnoseTarget(run="r", run_dir="/runs/r", step=7), parent="r")
    assert job_argv("py", tmp_path, replay, "n3", False) == ["py", "-m", "qwen_train", "diagnose", "/runs/r",
                                                             "--step", "7"]
    assert msgspec.json.decode(replay.spec_bytes(), type=DiagnoseTarget).step == 7


def test_version_2_registry_upgrades_and_a_name_keeps_its_kind(tmp_path: Path) -> None:
    path = tmp_path / "registry.sqlite3"
    Registry(path).close()
    conn = sqlite3.connect(path)  # make it a version-2 file: runs without kind and parent
    conn.executescript("ALTER TABLE runs DROP COLUMN kind; ALTER TABLE runs DROP COLUMN parent; "
                       "PRAGMA user_version = 2;")
    conn.execute("INSERT INTO runs (name, lane, surface, runner, state, run_dir, created_at, launched_at, spec_json) "
                 "VALUES ('old', 'benchmark', 'default', 'process', 'stopped', '/r', 1, 1, '{}')")
    conn.commit()
    conn.close()
    registry = Registry(path)
    try:
        old = registry.get("old")
        assert old is not None and (old.kind, old.parent) == ("train", None)
        prep = PREPROCESS.job(PrepareSpec(name="old", out="/o", model="/m", sources=[
            SourceSpec(kind="fleurs", path="/f")]), "default", "process")
        with pytest.raises(RunConflict, match="'old' is the name of a train job"):
            registry.reserve(prep, tmp_path, "n1", 2.0)
        replay = Job(DIAGNOSE, "old.diagnose", "benchmark", "default", "process",
                     DiagnoseTarget(run="old", run_dir="/r"), parent="old")
        record = registry.reserve(replay, tmp_path, "n2", 3.0)
        assert (record.kind, record.parent) == ("diagnose", "old")
    finally:
        registry.close()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 3
