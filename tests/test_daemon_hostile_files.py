"""Files a trainer (or a socket user) can put where the daemon expects a regular file: FIFOs, devices,
symlinks, files far over their size. A real daemon over its socket, with the fake trainer.

A FIFO planted as a run's status.json used to hold every request thread that read it in open(), until
every connection slot was taken and even /health stopped answering; /dev/zero as a spec path ended in
a MemoryError (a 500). Now each is refused at once with a message naming the file, and the daemon keeps
answering /health and GET /runs while several clients poll the hostile run.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import pytest

from qwen_daemon.api.server import MAX_CONNECTIONS
from qwen_daemon.jobs.job import LOG_FILE, DiagnoseTarget
from qwen_daemon.jobs.kinds.children import parent_spec
from qwen_daemon.protocol import RunView
from qwen_daemon.protocol.client import DaemonClient, DaemonError
from qwen_train.spec import SpecError
from tests.test_daemon_harness import (
    DaemonProcess,
    make_spec,
    plain_daemon,
    raw_request,
    wait_until,
)

CLIENTS = 12
POLL_S = 3.0
HEALTH_WITHIN_S = 2.0
SPARSE = 100 * 1000 * 1000  # a 100 MB status.json (sparse: the size is what the daemon must not read)


@pytest.fixture(scope="module")
def daemon() -> Iterator[DaemonProcess]:
    yield from plain_daemon()


def _release(path: Path) -> None:
    """If a reader is stuck in open() on the FIFO (the bug), let it through so the daemon can stop."""
    with contextlib.suppress(OSError):
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))


def plant_fifo(path: Path) -> None:
    path.unlink(missing_ok=True)
    os.mkfifo(path)


def plant_zero_link(path: Path) -> None:
    path.unlink(missing_ok=True)
    path.symlink_to("/dev/zero")


def plant_huge(path: Path, size: int = SPARSE) -> None:
    path.unlink(missing_ok=True)
    with open(path, "wb") as handle:
        handle.truncate(size)


PLANTS: dict[str, tuple[Callable[[Path], None], str]] = {
    "fifo": (plant_fifo, "a FIFO"),
    "zero-link": (plant_zero_link, "symlink"),
    "100MB": (plant_huge, "over the"),
}


def _quiet_run(daemon: DaemonProcess, name: str, **fixture: object) -> Path:
    """A launched run whose fake trainer writes no heartbeat: its status.json is ours to replace."""
    run_dir = daemon.run_dir(name)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "fixture.json").write_text(json.dumps({"write_status": False, **fixture}))
    daemon.client.launch(spec=make_spec(daemon.state_dir.parent, name))
    wait_until(lambda: daemon.client.run(name).run.pid is not None, 15, f"{name} to start")
    return run_dir


class Pollers:
    """CLIENTS threads asking for GET /runs and GET /runs/NAME as fast as the daemon answers."""

    def __init__(self, daemon: DaemonProcess, name: str) -> None:
        self.daemon, self.name = daemon, name
        self.views: list[RunView] = []
        self.errors: list[BaseException] = []
        self.answered = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._poll, daemon=True) for _ in range(CLIENTS)]

    def _poll(self) -> None:
        client = DaemonClient(self.daemon.socket, timeout=10.0)
        while not self._stop.is_set():
            try:
                listed = [v for v in client.runs().runs if v.name == self.name]
                detail = client.run(self.name).run
            except BaseException as exc:  # a timeout is the failure this test is about
                with self._lock:
                    self.errors.append(exc)
                return
            with self._lock:
                self.views += [*listed, detail]
                self.answered += 2

    def __enter__(self) -> Pollers:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)


def _health_keeps_answering(daemon: DaemonProcess, seconds: float) -> int:
    client = DaemonClient(daemon.socket, timeout=HEALTH_WITHIN_S)
    answers, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.monotonic()
        assert client.health().ok
        assert time.monotonic() - started < HEALTH_WITHIN_S
        answers += 1
        time.sleep(0.05)
    return answers


@pytest.mark.parametrize("kind", sorted(PLANTS))
def test_health_and_runs_answer_while_clients_poll_a_hostile_status(daemon: DaemonProcess, kind: str) -> None:
    plant, words = PLANTS[kind]
    name = f"hostile-{kind}".lower()
    status = _quiet_run(daemon, name) / "status.json"
    plant(status)
    try:
        with Pollers(daemon, name) as pollers:
            assert _health_keeps_answering(daemon, POLL_S) >= 10
        # More answers than there are connection slots: each request let go of its slot (none waits in open())
        assert pollers.errors == [] and pollers.answered > 2 * MAX_CONNECTIONS, (pollers.errors[:3], pollers.answered)
        for view in pollers.views:  # never live, never a number, and the reason names the file and what it is
            assert view.health == "stale" and view.step is None and view.loss is None, view
            assert view.stale_reason is not None and "untrusted" in view.stale_reason, view.stale_reason
            assert words in view.stale_reason and str(status) in view.stale_reason, view.stale_reason
        assert daemon.client.run(name).status is None
    finally:
        _release(status)
    daemon.client.stop(name)  # the trainer's final status replaces the planted file: the run ends as usual
    wait_until(lambda: daemon.client.run(name).run.state == "stopped", 15, f"{name} to stop")


def test_a_run_that_ends_beside_a_fifo_status_is_reaped_and_shows_why(daemon: DaemonProcess) -> None:
    status = _quiet_run(daemon, "ends-fifo", default_sigterm=True) / "status.json"
    plant_fifo(status)
    try:
        daemon.client.stop("ends-fifo")  # dies of SIGTERM without a word: the monitor reads the FIFO's place
        view = wait_until(lambda: (v := daemon.client.run("ends-fifo").run).state == "stopped" and v, 15, "the reap")
        assert view.health == "ended" and view.stale_reason is not None and "a FIFO" in view.stale_reason
        listed = [v for v in daemon.client.runs().runs if v.name == "ends-fifo"]
        assert listed[0].stale_reason == view.stale_reason
        assert daemon.client.health().ok
    finally:
        _release(status)


def _error(daemon: DaemonProcess, path: str, method: str = "GET", body: bytes | None = None) -> tuple[int, str]:
    started = time.monotonic()
    status, answer = raw_request(daemon.socket, method, path, body)
    assert time.monotonic() - started < 5, f"{method} {path} took {time.monotonic() - started:.1f} s"
    return status, f"{answer.get('error')} {answer.get('detail') or ''}"


@pytest.mark.parametrize("kind", sorted(PLANTS))
def test_curves_diagnosis_and_verdict_files_are_refused_by_name(daemon: DaemonProcess, kind: str) -> None:
    plant, words = PLANTS[kind]
    name = f"files-{kind}".lower()
    run_dir = _quiet_run(daemon, name)
    (run_dir / "gate").mkdir()
    planted = [run_dir / "losses.jsonl", run_dir / "report.json", run_dir / "diagnosis.json",
               run_dir / "gate" / "verdict.json"]
    try:
        for path, route in zip(planted, ("history", "history", "diagnosis", "gate"), strict=True):
            plant(path) if kind != "100MB" else plant_huge(path, 300 * 1000 * 1000)
            status, error = _error(daemon, f"/runs/{name}/{route}")
            assert status == 422 and str(path) in error and words in error, (path, status, error)
            path.unlink()
        assert daemon.client.health().ok
    finally:
        for path in planted:
            _release(path)
    daemon.client.stop(name)


def test_a_checkpoint_meta_that_is_a_fifo_is_a_row_with_its_error(daemon: DaemonProcess) -> None:
    run_dir = _quiet_run(daemon, "ckpt-fifo")
    ckpt = run_dir / "checkpoints" / "step-00000010"
    ckpt.mkdir(parents=True)
    plant_fifo(ckpt / "meta.json")
    try:
        started = time.monotonic()
        detail = daemon.client.run("ckpt-fifo")
        assert time.monotonic() - started < 5
        (row,) = detail.checkpoints
        assert row.step == 10 and row.error is not None and "a FIFO" in row.error, row
    finally:
        _release(ckpt / "meta.json")
    daemon.client.stop("ckpt-fifo")


SPEC_PLANTS = {"fifo": (plant_fifo, "a FIFO"), "zero-link": (plant_zero_link, "character device"),
               "100MB": (plant_huge, "over the")}


@pytest.mark.parametrize("kind", sorted(SPEC_PLANTS))
def test_a_launch_naming_a_special_or_huge_spec_file_is_a_422_at_once(daemon: DaemonProcess, kind: str) -> None:
    plant, words = SPEC_PLANTS[kind]
    path = daemon.state_dir.parent / f"spec-{kind}.json"
    plant(path)
    try:
        for body in ({"spec_path": str(path)}, {"kind": "preprocess", "spec_path": str(path)}):
            status, error = _error(daemon, "/runs", "POST", msgspec.json.encode(body))
            assert status == 422 and str(path) in error and words in error, (body, status, error)
        status, error = _error(daemon, "/runs", "POST", msgspec.json.encode({"spec_path": "/dev/zero"}))
        assert status == 422 and "character device" in error, error
        assert daemon.client.health().ok
    finally:
        _release(path)


def test_a_child_jobs_parent_spec_that_is_a_fifo_is_a_spec_error(tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    for plant, words in ((plant_fifo, "a FIFO"), (plant_zero_link, "symlink"), (plant_huge, "over the")):
        plant(spec)
        started = time.monotonic()
        with pytest.raises(SpecError, match=words) as info:
            parent_spec(DiagnoseTarget(run="parent", run_dir=str(tmp_path)))
        assert time.monotonic() - started < 5 and "run parent's spec" in str(info.value)
    _release(spec)


def test_a_fifo_left_as_the_log_fails_the_relaunch_instead_of_hanging_it(daemon: DaemonProcess) -> None:
    run_dir = _quiet_run(daemon, "log-fifo")
    daemon.client.stop("log-fifo")
    wait_until(lambda: daemon.client.run("log-fifo").run.state == "stopped", 15, "the stop")
    plant_fifo(run_dir / LOG_FILE)
    try:
        status, error = _error(daemon, "/runs/log-fifo/resume", "POST", b"{}")
        assert status == 500 and str(run_dir / LOG_FILE) in error and "not a regular file" in error, error
        assert daemon.client.run("log-fifo").run.state == "failed"
        plant_zero_link(run_dir / LOG_FILE)  # nor does the daemon append to whatever a link points at
        status, error = _error(daemon, "/runs/log-fifo/resume", "POST", b"{}")
        assert status == 500 and "symlink" in error, error
        assert daemon.client.health().ok
    finally:
        _release(run_dir / LOG_FILE)


def test_governance_and_reservation_files_in_special_form_are_refusals(daemon: DaemonProcess) -> None:
    registry = daemon.state_dir / "surfaces.json"
    reservation = daemon.state_dir / "gpu-reservation.json"
    kept = registry.read_bytes()
    try:
        plant_fifo(registry)
        with pytest.raises(DaemonError, match="a FIFO") as info:
            daemon.client.surfaces()
        assert info.value.status == 500 and str(registry) in str(info.value)
        with pytest.raises(DaemonError, match="rule surfaces-file") as info:
            daemon.client.launch(spec=make_spec(daemon.state_dir.parent, "gov-fifo"))
        assert info.value.status == 403
        assert daemon.client.runs().runs is not None and daemon.client.health().ok
        _release(registry)
        registry.unlink()
        registry.write_bytes(kept)
        plant_fifo(reservation)  # fail closed: counted as reserved, saying how to clear it
        held = daemon.client.gpu_status().reservation
        assert held is not None and "a FIFO" in held.reason and "gpu release" in held.reason
        assert daemon.client.gpu_release().reservation is None and not os.path.lexists(reservation)
    finally:
        _release(registry)
        _release(reservation)
        if not registry.is_file() or registry.is_symlink():
            registry.unlink(missing_ok=True)
            registry.write_bytes(kept)


def test_losses_are_read_in_bounded_pieces_with_lines_split_across_them(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The reader no longer reads what was appended in one piece: a 37-byte piece splits nearly every line."""
    from qwen_daemon.runs import readers

    monkeypatch.setattr(readers, "READ_CHUNK", 37)
    line = '{{"step": {0}, "total": {1}, "talker": 1.0, "code_predictor": 0.5}}\n'
    (tmp_path / "losses.jsonl").write_text("".join(line.format(s, s / 10) for s in range(1, 301)))
    history = readers.HistoryReader()
    assert [(p.step, p.total) for p in history.losses(tmp_path)] == [(s, s / 10) for s in range(1, 301)]
    with open(tmp_path / "losses.jsonl", "a") as handle:  # appended later, the last line still being written
        handle.write(line.format(301, 30.1) + line.format(302, 30.2)[:20])
    assert [p.step for p in history.losses(tmp_path)][-2:] == [300, 301]
    with open(tmp_path / "losses.jsonl", "a") as handle:
        handle.write(line.format(302, 30.2)[20:])
    assert [p.step for p in history.losses(tmp_path)][-1] == 302
