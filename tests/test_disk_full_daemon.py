"""The daemon and full disks, on real small tmpfs mounts: launch refused (or queued) for want of room, a real
trainer's failed_disk_full end read and shown, and a full state dir that the daemon survives and recovers from.

The trainer is the fake one where only the daemon is under test (tests/test_daemon_fake_trainer.py), the real one
on the tiny model where its end is. Journal entries are read from a datagram socket the test binds, in the native
protocol journald speaks (systemd/journal.py), as `--journal-socket`.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from rich.console import Console

from qwen_daemon.jobs.job import LOG_FILE, Exit
from qwen_daemon.protocol import ACTIVE_STATES, ClassChange
from qwen_daemon.protocol.client import DaemonClient, DaemonError
from qwen_daemon.protocol.disk import DiskView, StateWriteProblem, TreeSpace
from qwen_daemon.runs.monitor import outcome
from qwen_daemon.runs.record import RunRecord
from qwen_daemon.runs.trust import check_final
from qwen_daemon.sharing.disk_admission import RULE_DISK
from qwen_train import exitcodes
from qwen_train.spec import Posture, RunSpec, TrainConfig
from qwen_train.status import Status, write_status
from qwen_train.train.checkpointing.checkpoint import list_checkpoints
from qwen_tui.widgets.disk_view import disk_renderable
from tests.conftest import python_env
from tests.small_fs import MiB, fill, free, grow, small_fs
from tests.test_daemon_harness import DaemonProcess, make_spec, pid_alive, short_tmp_dir, trainer_wrapper, wait_until

REFERENCE = Path(__file__).resolve().parents[1] / "bench" / "train_model_config.json"  # the real 1.7 B config
GIB = 2**30


@pytest.fixture
def root() -> Iterator[Path]:
    path = short_tmp_dir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


def full_size_spec(root: Path, name: str) -> RunSpec:
    """The real model's config on a CPU: fp32 master, 21.5 GiB a checkpoint, some 93 GiB at the posture's peak."""
    (root / "model").mkdir(exist_ok=True)
    (root / "bundle").mkdir(exist_ok=True)
    (root / "model" / "config.json").write_text(REFERENCE.read_text())
    return RunSpec(name=name, lane="benchmark", model=str(root / "model"), bundle=str(root / "bundle"),
                   train=TrainConfig(max_steps=100000, device="cpu"))


def ended(client: DaemonClient, name: str) -> bool:
    return client.run(name).run.state not in (*ACTIVE_STATES, "queued")


def test_a_launch_without_room_is_refused_naming_path_need_and_free_or_queued_until_there_is(root: Path) -> None:
    trainer = trainer_wrapper(root)
    with small_fs(1024) as runs:
        common = ("--runs-dir", str(runs), "--sample-period", "0.5")
        daemon = DaemonProcess(root / "state", root / "d.sock", trainer, *common).start()
        try:
            with pytest.raises(DaemonError) as refused:
                daemon.client.launch(spec=full_size_spec(root, "big"))
            said = str(refused.value)
            assert refused.value.status == 409 and RULE_DISK in said, said
            for words in (str(runs / "big"), "GiB more on disk at its peak", "1 GiB free of 1 GiB",
                          "3 kept checkpoints of 21.6 GiB", "posture.keep_last", "qwen-train plan"):
                assert words in said, (words, said)
            with pytest.raises(DaemonError) as unknown:
                daemon.client.run("big")  # refused before anything was recorded
            assert unknown.value.status == 404
            trees = {t.role: t for t in daemon.client.disk().trees}
            assert trees["runs"].path == str(runs) and trees["runs"].free_bytes == free(runs)
            assert trees["runs"].total_bytes == 1024 * MiB and trees["state"].path == str(root / "state")
        finally:
            daemon.stop()

        daemon = DaemonProcess(root / "state", root / "d.sock", trainer, *common, "--disk-admission", "queue").start()
        try:
            client = daemon.client
            queued = client.launch(spec=full_size_spec(root, "big"))
            assert queued.state == "queued" and "GiB more on disk" in (queued.message or ""), queued.message
            grow(runs, 120 * 1024)  # space returns: a tmpfs limit, nothing allocated
            wait_until(lambda: client.run("big").run.state in ("launching", "running"), 20, "the queue to start it")
            assert "queued" in [e.kind for e in client.run("big").events]
            client.stop("big")
            wait_until(lambda: ended(client, "big"), 30, "big to stop")
        finally:
            daemon.stop()


def test_a_real_trainer_that_fills_its_disk_ends_failed_disk_full_and_resumes_once_there_is_room(
        demo_root: Path, root: Path) -> None:
    spec = RunSpec(name="tiny", lane="language-expansion", model=str(demo_root / "model"),
                   bundle=str(demo_root / "bundle"), posture=Posture(checkpoint_every=2, eval_every=100, keep_last=1),
                   train=TrainConfig(batch_size=2, lr=1e-3, max_steps=6, eval_max_rows=4, deterministic=True))
    with small_fs(160) as runs:
        daemon = DaemonProcess(root / "state", root / "d.sock", Path(sys.executable), "--runs-dir", str(runs),
                               env=python_env()).start()
        try:
            client = daemon.client
            client.launch(spec=spec)  # 2 x 41.5 MiB + an export and logs: fits 160 MiB
            run_dir = runs / "tiny"

            def first_checkpoint() -> bool:
                status = client.run("tiny").status
                return status is not None and status.last_checkpoint is not None

            wait_until(first_checkpoint, 240, "the first durable checkpoint")
            filler = fill(runs, leave=20 * MiB)  # another tenant takes the disk
            wait_until(lambda: ended(client, "tiny"), 120, "the run to end")
            detail = client.run("tiny")
            message = detail.run.message or ""
            assert detail.run.state == "failed_disk_full" and detail.run.exit_code == exitcodes.FAILED_DISK_FULL
            for words in ("disk full: the checkpoint of step 4 needs", "step-00000002, is intact",
                          "the daemon sees", "MiB free of 160 MiB", "qwen-daemon resume tiny"):
                assert words in message, (words, message)
            assert message.count("disk full: the checkpoint") == 1  # the trainer's words once, not echoed again
            assert detail.status is not None and detail.status.state == "failed_disk_full"
            assert [c.name for c in list_checkpoints(run_dir)] == ["step-00000002"]

            filler.unlink()
            client.resume("tiny")
            wait_until(lambda: ended(client, "tiny"), 240, "the resumed run to end")
            done = client.run("tiny")
            assert done.run.state == "completed", done.run.message
            assert [c.name for c in list_checkpoints(run_dir)] == ["step-00000006"]
        finally:
            daemon.stop()


class Journal:
    """A datagram socket in journald's place, drained as journald would be (a full one blocks its senders)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.entries: list[dict[str, str]] = []
        self._open = True
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while self._open:
            try:
                data = self.sock.recv(1 << 20)
            except (TimeoutError, OSError):
                continue
            self.entries.append(dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line))

    def state_writes(self, outcome: str) -> list[dict[str, str]]:
        return [e for e in list(self.entries) if e.get("QWEN_STATE_WRITE") == outcome]

    def close(self) -> None:
        self._open = False
        self._thread.join(timeout=5)
        self.sock.close()


def test_a_full_state_dir_is_reported_reads_go_on_and_writes_resume_when_space_returns(root: Path) -> None:
    journal = Journal(root / "j.sock")
    with small_fs(8) as state:
        daemon = DaemonProcess(state, root / "d.sock", trainer_wrapper(root), "--runs-dir", str(root / "runs"),
                               "--journal-socket", str(journal.path), "--sample-period", "0.5")
        daemon.log_path = root / "daemon.log"  # not on the disk that fills
        daemon.start()
        try:
            client = daemon.client
            client.launch(spec=make_spec(root, "a"))
            wait_until(lambda: client.run("a").status is not None, 20, "a's first status")
            filler = fill(state)

            for call, what in ((lambda: client.launch(spec=make_spec(root, "b")), "run registry"),
                               (lambda: client.set_class("lab", ClassChange("mechanism", "a new lab")),
                                "surfaces audit log"),
                               (lambda: client.gpu_reserve("sidecar"), "GPU audit log")):
                with pytest.raises(DaemonError) as refused:
                    call()
                said = str(refused.value)
                assert refused.value.status == 507 and f"could not write its {what}" in said, said
                assert "no space left on the device" in said or "SQLITE_FULL" in said, said
            health = client.health()
            assert health.ok and any("run registry" in p for p in health.state_writes), health
            assert [r.name for r in client.runs().runs] == ["a"] and client.run("a").status is not None
            assert client.gpu_status().reservation is None and client.audit().entries == []
            assert "lab" not in {s.name for s in client.surfaces().surfaces}
            view = client.disk()
            assert {p.what for p in view.state_writes} >= {"run registry", "surfaces audit log", "GPU audit log"}
            assert next(t for t in view.trees if t.role == "state").free_bytes == 0

            client.stop("a")  # the stop is made even though the registry cannot record it yet
            pid = client.run("a").run.pid
            assert pid is not None
            wait_until(lambda: not Path(f"/proc/{pid}").exists(), 20, "a's trainer to exit")
            assert client.run("a").run.state in ("running", "stopping")  # its end waits for space
            failed = journal.state_writes("failed")
            assert [e["QWEN_STATE_WHAT"] for e in failed].count("run registry") == 1, failed  # once, not per tick
            assert "cannot write the run registry" in daemon.log_path.read_text()

            filler.unlink()
            wait_until(lambda: not any("run registry" in p for p in client.health().state_writes), 20,
                       "the registry to be written again")
            wait_until(lambda: client.run("a").run.state == "stopped", 20, "a's end to be recorded")
            assert client.run("a").run.exit_code == exitcodes.STOPPED
            assert any(e["QWEN_STATE_WHAT"] == "run registry" for e in journal.state_writes("resumed"))
            assert client.launch(spec=make_spec(root, "b")).state in ("launching", "running")
            client.set_class("lab", ClassChange("mechanism", "a new lab"))
            assert [e.surface for e in client.audit().entries] == ["lab"]  # the refused change left no record
            client.gpu_reserve("sidecar")
            assert client.gpu_status().reservation is not None
            client.gpu_release()
            assert client.disk().state_writes == []
            client.stop("b")
            wait_until(lambda: ended(client, "b"), 20, "b to stop")
        finally:
            daemon.stop()
            journal.close()


def test_the_host_screens_disk_panel_names_trees_shared_space_and_failing_writes() -> None:
    view = DiskView(trees=[TreeSpace("runs", "/srv/scratch/runs", 1 * GIB, 1800 * GIB),
                           TreeSpace("state", "/var/lib/qwen", 40 * GIB, 200 * GIB),
                           TreeSpace("bind root", "/srv/scratch", 1 * GIB, 1800 * GIB, shares_with="/srv/scratch/runs"),
                           TreeSpace("bind root", "/srv/storage", error="cannot be read: Permission denied")],
                    state_writes=[StateWriteProblem("run registry", "/var/lib/qwen/registry.sqlite3",
                                                    "database or disk is full (SQLITE_FULL)", 0.0, 4)])
    console = Console(width=160, record=True)
    console.print(disk_renderable(view))
    text = console.export_text()
    for shown in ("STATE WRITES FAILING", "run registry", "SQLITE_FULL", "(4x)", "/srv/scratch/runs",
                  "1.0 GiB free of 1.8 TiB", "same file system as /srv/scratch/runs", "Permission denied",
                  "40.0 GiB free of 200.0 GiB"):
        assert shown in text, (shown, text)
    assert msgspec.json.decode(msgspec.json.encode(view), type=DiskView) == view


def test_an_end_the_trainer_could_not_write_is_read_from_its_log_and_the_exit_code(tmp_path: Path) -> None:
    """status.json kept its last good content (training, step 40); the log had room for the trainer's words."""
    now = time.time()
    write_status(tmp_path, Status(run_id="r", nonce="n2", host="h", pid=1, state="training", heartbeat=now,
                                  started_at=now, step=40))
    said = ("disk full: writing status.json in /srv/scratch/runs/r failed: no space left on the device (ENOSPC); "
            "what it had half written was removed")
    (tmp_path / LOG_FILE).write_text(f"=== launch n1: old\nqwen-train: disk full: an older launch's\n"
                                     f"=== launch n2: qwen_train run\nqwen-train: {said}\n")
    record = RunRecord(name="r", lane="benchmark", surface="lab", runner="process", state="running", nonce="n2",
                       pid=1, run_dir=str(tmp_path), created_at=now, launched_at=now, ended_at=None, exit_code=None,
                       spec_json="{}", message=None)
    final = check_final(tmp_path, "r", "n2").status
    state, message = outcome(record, Exit(code=exitcodes.FAILED_DISK_FULL), final, False, False, 30.0)
    assert state == "failed_disk_full" and message.startswith(said) and "the daemon sees" in message
    (tmp_path / LOG_FILE).write_text("=== launch n2: qwen_train run\n")  # nor did the log have room
    state, message = outcome(record, Exit(code=exitcodes.FAILED_DISK_FULL), final, False, False, 30.0)
    assert state == "failed_disk_full" and "could write neither its final status nor its log" in message
    assert "keeps its last good content (training at step 40)" in message and "qwen-daemon resume r" in message


@pytest.mark.parametrize("first_end", [signal.SIGKILL, signal.SIGTERM], ids=["killed", "terminated"])
def test_a_daemon_restarted_on_a_full_state_dir_serves_reattaches_and_records_ends_once_space_returns(
        root: Path, first_end: signal.Signals) -> None:
    """Killed with two runs going, one of whose trainers then dies too, and restarted (as systemd restarts it) after
    another tenant filled the state dir: it must come up, reattach to the live run, keep the dead one's end until
    the registry can take it, and record both once there is room; a crash here would loop under systemd."""
    journal = Journal(root / "j.sock")
    with small_fs(8) as state:
        def daemon(log: str) -> DaemonProcess:
            proc = DaemonProcess(state, root / "d.sock", trainer_wrapper(root), "--runs-dir", str(root / "runs"),
                                 "--journal-socket", str(journal.path), "--sample-period", "0.5")
            proc.log_path = root / log  # not on the disk that fills
            return proc.start()

        first = daemon("first.log")
        for name in ("alive", "dies"):
            first.client.launch(spec=make_spec(root, name))
            wait_until(lambda n=name: first.client.run(n).status is not None, 20, f"{name}'s first status")
        pids = {name: first.client.run(name).run.pid for name in ("alive", "dies")}
        first.stop(first_end)  # SIGTERM: a clean close, which removes SQLite's -wal and -shm files
        os.kill(pids["dies"], signal.SIGKILL)
        wait_until(lambda: not pid_alive(pids["dies"]), 20, "the dying trainer to go")
        filler = fill(state)

        second = daemon("second.log")
        try:
            client = second.client
            assert client.health().ok
            if first_end == signal.SIGTERM:  # no -shm to reuse, and no room to make one
                assert "its WAL index is kept in memory" in second.log()
            wait_until(lambda: any("run registry" in p for p in client.health().state_writes), 20,
                       "the registry's failing write to be reported")
            assert {r.name: r.state for r in client.runs().runs} == {"alive": "running", "dies": "running"}
            assert client.run("alive").status is not None and pid_alive(pids["alive"])

            filler.unlink()
            wait_until(lambda: client.run("dies").run.state == "interrupted", 20, "the dead run's end to be recorded")
            assert "the daemon lost the trainer" in (client.run("dies").run.message or "")
            alive = client.run("alive")
            assert alive.run.state == "running" and alive.run.pid == pids["alive"]
            wait_until(lambda: any(e.kind == "reattach" for e in client.run("alive").events), 20,
                       "the reattachment to be recorded")
            assert client.disk().state_writes == []
            client.stop("alive")
            wait_until(lambda: ended(client, "alive"), 20, "alive to stop")
            assert client.run("alive").run.state == "stopped"
        finally:
            second.stop()
            journal.close()


def test_a_first_start_on_a_full_state_dir_exits_plainly_and_the_next_one_serves(root: Path) -> None:
    """No registry yet and no room to make one: a one-line reason and exit 1 (systemd's Restart=on-failure tries
    again), not a traceback; once there is room the same command serves."""
    with small_fs(4) as disk:
        filler = fill(disk)
        command = [sys.executable, "-m", "qwen_daemon", "serve", "--state-dir", str(disk / "state"),
                   "--socket", str(root / "d.sock"), "--journal-socket", ""]
        refused = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert refused.returncode == 1, refused.stderr
        said = refused.stderr.strip().splitlines()[-1]
        assert "Traceback" not in refused.stderr, refused.stderr
        assert said.startswith("qwen-daemon: error: cannot open the run registry "), said
        assert "database or disk is full" in said and "0 B free of 4 MiB" in said and "start the daemon again" in said
        filler.unlink()
        daemon = DaemonProcess(disk / "state", root / "d.sock", trainer_wrapper(root), "--journal-socket", "")
        daemon.log_path = root / "daemon.log"
        daemon.start()
        try:
            assert daemon.client.health().ok and daemon.client.runs().runs == []
        finally:
            daemon.stop()
