"""One process per run dir: the lock, what the kernel says of it, and the trainer that meets a held one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from qwen_train import exitcodes
from qwen_train.run_lock import LOCK_FILE, RunLocked, _lock_line_pids, acquire, held_by, read_holder
from tests.conftest import python_env

HOLD = ("import sys, time; from pathlib import Path; from qwen_train.run_lock import acquire; "
        "acquire(Path(sys.argv[1]), sys.argv[2], 'holder under test'); print('held', flush=True); time.sleep(600)")


def hold_in_child(run_dir: Path, nonce: str) -> subprocess.Popen[str]:
    child = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir), nonce], stdout=subprocess.PIPE, text=True,
                             env=python_env())
    assert child.stdout is not None and child.stdout.readline().strip() == "held"
    return child


def test_a_held_run_dir_refuses_a_second_holder_and_names_the_first(tmp_path: Path) -> None:
    child = hold_in_child(tmp_path, "n-first")
    try:
        with pytest.raises(RunLocked) as caught:
            acquire(tmp_path, "n-second", "second")
        assert caught.value.holder is not None and caught.value.holder.pid == child.pid
        assert f"pid {child.pid}" in str(caught.value) and "n-first" in str(caught.value)
        held = held_by(tmp_path)
        assert held is not None and held.pid == child.pid and held.nonce == "n-first"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert held_by(tmp_path) is None  # the kernel let go when the holder died: no stale lock to clean
    with acquire(tmp_path, "n-third", "third"):
        mine = read_holder(tmp_path)
        assert mine is not None and (mine.pid, mine.nonce, mine.command) == (os.getpid(), "n-third", "third")
        assert held_by(tmp_path) is not None
    assert held_by(tmp_path) is None


def test_held_by_asks_the_kernel_not_the_file(tmp_path: Path) -> None:
    (tmp_path / LOCK_FILE).write_text('{"pid": 1, "nonce": "left-behind"}')
    assert held_by(tmp_path) is None  # a file naming a holder is no lock
    child = hold_in_child(tmp_path, "n-live")
    try:
        (tmp_path / LOCK_FILE).write_text("garbage{")  # a holder mid-write, or a hand edit
        held = held_by(tmp_path)
        assert held is not None and held.pid == child.pid and held.nonce is None
    finally:
        child.kill()
        child.wait()


def test_proc_locks_lines_as_the_kernel_documents_them() -> None:
    recorded = (
        "1: POSIX  ADVISORY  WRITE 999 fe:00:2146434 0 EOF\n"
        "2: FLOCK  ADVISORY  WRITE 31462 fe:00:2146434 0 EOF\n"
        "2: -> FLOCK  ADVISORY  WRITE 31500 fe:00:2146434 0 EOF\n"
        "3: FLOCK  ADVISORY  WRITE 77 fe:00:5 0 EOF\n"
        "4: OFDLCK ADVISORY  READ  -1 08:01:2146434 0 EOF\n"
    )
    assert _lock_line_pids(recorded, "254:0", 2146434) == [31462]  # not the POSIX lock, the waiter, other files
    assert _lock_line_pids(recorded, "8:1", 2146434) == []
    assert _lock_line_pids("", "254:0", 2146434) == []


def test_a_second_trainer_on_a_held_run_dir_exits_with_the_locks_code_and_touches_nothing(
        demo_root: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    child = hold_in_child(run_dir, "n-owner")
    try:
        second = subprocess.run(
            [sys.executable, "-m", "qwen_train", "run", str(demo_root / "spec.json"), "--run-dir", str(run_dir),
             "--nonce", "n-second"], capture_output=True, text=True, env=python_env(), timeout=300)
        assert second.returncode == exitcodes.RUN_LOCKED, second.stderr
        assert f"pid {child.pid}" in second.stderr and "n-owner" in second.stderr
        assert sorted(p.name for p in run_dir.iterdir()) == [LOCK_FILE]  # no status.json, no log, no checkpoint
        assert read_holder(run_dir).nonce == "n-owner"  # type: ignore[union-attr]
    finally:
        child.kill()
        child.wait()


@pytest.mark.parametrize("command", ["diagnose", "gate"])
def test_a_replay_or_gate_beside_a_holder_of_its_run_dir_exits_with_the_locks_code(
        tmp_path: Path, command: str) -> None:
    """They write into their run's dir, so they hold its lock as its trainer does (unlocked, this dir of
    nothing would be a usage error, exit 2: the lock is checked first)."""
    run_dir = tmp_path / "run"
    child = hold_in_child(run_dir, "n-trainer")
    try:
        refused = subprocess.run([sys.executable, "-m", "qwen_train", command, str(run_dir)], capture_output=True,
                                 text=True, env=python_env(), timeout=300)
        assert refused.returncode == exitcodes.RUN_LOCKED, refused.stderr
        assert "n-trainer" in refused.stderr
    finally:
        child.kill()
        child.wait()
    free = subprocess.run([sys.executable, "-m", "qwen_train", command, str(run_dir)], capture_output=True,
                          text=True, env=python_env(), timeout=300)
    assert free.returncode == exitcodes.USAGE, free.stderr


def test_a_planted_fifo_or_link_as_the_lock_file_never_blocks_and_is_refused_by_name(tmp_path: Path) -> None:
    """The run dir is the trainer's to write (a container's, a hostile one's): the daemon's look must not hang."""
    fifo = tmp_path / "fifo-run"
    fifo.mkdir()
    os.mkfifo(fifo / LOCK_FILE)
    assert read_holder(fifo) is None and held_by(fifo) is None  # returns at once, no writer needed
    with pytest.raises(RunLocked, match="no regular file"):
        acquire(fifo, "n", "trainer")
    linked = tmp_path / "linked-run"
    linked.mkdir()
    (linked / LOCK_FILE).symlink_to(tmp_path / "elsewhere.lock")
    with pytest.raises(RunLocked, match="cannot be opened"):
        acquire(linked, "n", "trainer")
    assert not (tmp_path / "elsewhere.lock").exists()  # nothing created through the link
