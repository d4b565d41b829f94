"""The stale-status guard on planted status.json files: stale with a reason, never live."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest

from qwen_daemon.runs.record import RunRecord
from qwen_daemon.runs.run_view import run_view
from qwen_daemon.runs.trust import check_final, check_live
from qwen_train.status import STATUS_FILE, Losses, Status, write_status

NONCE = "a" * 32
STALE_AFTER = 120.0


def status(**changes: object) -> Status:
    now = time.time()
    base = Status(run_id="r1", nonce=NONCE, host="h", pid=os.getpid(), state="training", heartbeat=now,
                  started_at=now - 10, step=42, max_steps=100, losses=Losses(1.5, 1.0, 0.5))
    return msgspec.structs.replace(base, **changes)


def live(run_dir: Path, pid: int | None = None) -> tuple[bool, str | None]:
    verdict = check_live(run_dir, "r1", NONCE, os.getpid() if pid is None else pid, time.time(), STALE_AFTER)
    assert (verdict.status is not None) == verdict.live  # numbers only when trusted
    return verdict.live, verdict.reason


def test_fresh_status_of_the_active_launch_is_live(tmp_path: Path) -> None:
    write_status(tmp_path, status())
    assert live(tmp_path) == (True, None)


def test_wrong_nonce_is_stale(tmp_path: Path) -> None:
    write_status(tmp_path, status(nonce="b" * 32))
    assert live(tmp_path) == (False, f"nonce {'b' * 32} is not the active launch's {NONCE}")


def test_other_run_is_stale(tmp_path: Path) -> None:
    write_status(tmp_path, status(run_id="r2"))
    assert live(tmp_path) == (False, "status is for run 'r2', not 'r1'")


def test_old_heartbeat_is_stale(tmp_path: Path) -> None:
    write_status(tmp_path, status(heartbeat=time.time() - 600))
    ok, reason = live(tmp_path)
    assert not ok and reason is not None and reason.startswith("heartbeat 600 s old (stale after 120 s)")


def test_heartbeat_from_the_future_is_stale(tmp_path: Path) -> None:
    write_status(tmp_path, status(heartbeat=time.time() + 600))
    ok, reason = live(tmp_path)
    assert not ok and reason is not None and "in the future" in reason


def test_pid_mismatch_is_stale(tmp_path: Path) -> None:
    """The launch is another process (here: a child of ours); our pid is not it nor its child."""
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        write_status(tmp_path, status(pid=os.getpid()))
        ok, reason = live(tmp_path, pid=other.pid)
        expected = f"pid {os.getpid()} is not the active launch's pid {other.pid} (nor a child of it)"
        assert not ok and reason == expected
    finally:
        other.kill()
        other.wait()


def test_child_of_the_launched_process_is_accepted(tmp_path: Path) -> None:
    """Under `accelerate launch` the status comes from a worker, a child of the launched pid."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        write_status(tmp_path, status(pid=child.pid))
        assert live(tmp_path, pid=os.getpid()) == (True, None)
    finally:
        child.kill()
        child.wait()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "no status.json yet"),
        (b'{"run_id": "r1", "nonce": "', "malformed status.json"),
        (b"", "malformed status.json"),
        (b'{"run_id": "r1"}', "malformed status.json"),
        (b"\xff\xfe garbage", "malformed status.json"),
    ],
)
def test_missing_truncated_or_malformed_is_stale_and_never_raises(
    tmp_path: Path, content: bytes | None, expected: str
) -> None:
    if content is not None:
        (tmp_path / STATUS_FILE).write_bytes(content)
    ok, reason = live(tmp_path)
    assert not ok and reason is not None and expected in reason


def test_unreadable_path_is_stale(tmp_path: Path) -> None:
    (tmp_path / STATUS_FILE).mkdir()  # a directory where the file should be
    ok, reason = live(tmp_path)
    assert not ok and reason is not None


def test_ended_launch_shows_its_own_final_status_only(tmp_path: Path) -> None:
    write_status(tmp_path, status(heartbeat=time.time() - 10_000, state="stopped"))
    final = check_final(tmp_path, "r1", NONCE)
    assert final.status is not None and final.status.step == 42
    assert check_final(tmp_path, "r1", "c" * 32).status is None


def record(run_dir: Path, state: str = "running", launched_ago: float = 5.0) -> RunRecord:
    now = time.time()
    return RunRecord(name="r1", lane="benchmark", surface="default", runner="process", state=state,  # type: ignore[arg-type]
                     nonce=NONCE, pid=os.getpid(), run_dir=str(run_dir), created_at=now - launched_ago,
                     launched_at=now - launched_ago, ended_at=None, exit_code=None, spec_json="{}", message=None)


def test_view_of_a_stale_status_has_no_numbers(tmp_path: Path) -> None:
    write_status(tmp_path, status(nonce="b" * 32))
    view, trusted = run_view(record(tmp_path), time.time(), STALE_AFTER)
    assert view.health == "stale" and trusted is None
    assert view.step is None and view.loss is None and view.max_steps is None
    assert view.stale_reason is not None and "is not the active launch's" in view.stale_reason


def test_view_of_a_live_status_has_numbers(tmp_path: Path) -> None:
    write_status(tmp_path, status())
    view, trusted = run_view(record(tmp_path), time.time(), STALE_AFTER)
    assert (view.health, view.step, view.loss, view.stale_reason) == ("live", 42, 1.5, None)
    assert trusted is not None


def test_view_waits_for_a_first_heartbeat_then_calls_it_stale(tmp_path: Path) -> None:
    view, _ = run_view(record(tmp_path, launched_ago=5.0), time.time(), STALE_AFTER)
    assert (view.health, view.stale_reason) == ("waiting", None)
    view, _ = run_view(record(tmp_path, launched_ago=500.0), time.time(), STALE_AFTER)
    assert view.health == "stale" and view.stale_reason is not None
    assert view.stale_reason.startswith("no status.json 500 s after launch")


def test_after_a_resume_the_previous_launchs_status_is_waiting_not_stale(tmp_path: Path) -> None:
    """Right after a resume status.json is the last launch's: that is no evidence against the new one."""
    write_status(tmp_path, status(nonce="b" * 32, heartbeat=time.time() - 8.0))
    view, trusted = run_view(record(tmp_path, launched_ago=4.0), time.time(), STALE_AFTER)
    assert view.health == "waiting" and trusted is None and view.step is None
    assert view.stale_reason is not None and "previous launch's" in view.stale_reason
    write_status(tmp_path, status(nonce="b" * 32, heartbeat=time.time() - 600.0))
    view, _ = run_view(record(tmp_path, launched_ago=500.0), time.time(), STALE_AFTER)
    assert view.health == "stale" and view.stale_reason is not None
    assert view.stale_reason.startswith("no heartbeat of this launch 500 s after launch")


def test_another_nonce_writing_after_the_launch_began_is_stale(tmp_path: Path) -> None:
    """A heartbeat of another nonce newer than the launch is a second writer, never the previous launch."""
    write_status(tmp_path, status(nonce="b" * 32, heartbeat=time.time() - 1.0))
    view, _ = run_view(record(tmp_path, launched_ago=4.0), time.time(), STALE_AFTER)
    assert view.health == "stale" and "previous" not in (view.stale_reason or "")


def container_verdict(run_dir: Path, members: list[int]) -> tuple[bool, str | None]:
    verdict = check_live(run_dir, "r1", NONCE, 12345, time.time(), STALE_AFTER, container="qwen-r1-aaaa",
                         members=members)
    return verdict.live, verdict.reason


def test_container_launch_accepts_its_own_container_and_process(tmp_path: Path) -> None:
    write_status(tmp_path, status(container="qwen-r1-aaaa", pid=os.getpid()))
    assert container_verdict(tmp_path, [os.getpid()]) == (True, None)


def test_another_containers_status_is_stale(tmp_path: Path) -> None:
    write_status(tmp_path, status(container="qwen-r1-bbbb"))
    assert container_verdict(tmp_path, [os.getpid()]) == (
        False, "status is from container 'qwen-r1-bbbb', not the launched container 'qwen-r1-aaaa'")


def test_a_pid_outside_the_launched_container_is_stale(tmp_path: Path) -> None:
    """The status names our container but a pid none of its processes has (e.g. another container's)."""
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        write_status(tmp_path, status(container="qwen-r1-aaaa", pid=other.pid))
        assert container_verdict(tmp_path, [os.getpid()]) == (
            False, f"pid {other.pid} is not a process of container qwen-r1-aaaa")
    finally:
        other.kill()
        other.wait()
