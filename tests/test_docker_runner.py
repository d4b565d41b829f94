"""The docker runner against a private dockerd, with the real trainer on the tiny model.

One scenario carries a run through everything a week-long run meets, because
every trainer start costs seconds: launch in a container (checked: labels,
user, no privileges, mounts, nonce), live status and per-run resources
through cgroups, SIGKILL of the daemon and reattachment (no second launch),
a graceful stop with its checkpoint, resume, a container killed from outside
(`interrupted`), resume again, and a container that vanished while the daemon
was down (`interrupted`). The other tests refuse what must be refused.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from qwen_daemon.config import DaemonConfig, DockerSettings
from qwen_daemon.jobs.docker_runner import LABEL_NONCE, LABEL_RUN, DockerRunner, gpu_options
from qwen_daemon.jobs.job import RunnerRefusal
from qwen_daemon.protocol import RunDetail
from qwen_daemon.protocol.client import DaemonClient, DaemonError
from qwen_train.spec import Posture, RunSpec, TrainConfig
from qwen_train.train.checkpointing.checkpoint import list_checkpoints, verify_checkpoint
from tests.dockerd import IMAGE, USER, Engine, start_engine
from tests.small_fs import fill, small_fs
from tests.test_daemon_harness import DaemonProcess, wait_until


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    engine = start_engine()
    try:
        yield engine
    finally:
        engine.stop()


def serve(engine: Engine, root: Path, *extra: str) -> DaemonProcess:
    args = [
        "--docker-host", engine.url, "--docker-image", IMAGE, "--docker-user", USER,
        "--docker-python", engine.python(), "--runs-dir", str(root / "runs"), "--bind-root", str(root),
        "--sample-period", "0.5", "--stop-timeout", "60", "--journal-socket", "",
    ]
    for mount in engine.runtime_mounts():
        args += ["--docker-runtime-mount", mount]
    return DaemonProcess(root / "state", root / "d.sock", Path(sys.executable), *args, *extra).start()


def tiny_spec(demo_root: Path, name: str) -> RunSpec:
    return RunSpec(
        name=name, lane="language-expansion", model=str(demo_root / "model"), bundle=str(demo_root / "bundle"),
        runner="docker", posture=Posture(checkpoint_every=4, eval_every=4, keep_last=2),
        train=TrainConfig(batch_size=2, lr=1e-3, max_steps=100000, eval_max_rows=2),
    )


def readable_copy(demo_root: Path, into: Path) -> Path:
    """The demo's model and bundle, readable by the container's non-root user."""
    for part in ("model", "bundle"):
        shutil.copytree(demo_root / part, into / part, symlinks=True)
    for path in [into, *into.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return into


def containers(engine: Engine, name: str) -> list[docker.models.containers.Container]:
    return engine.client.containers.list(all=True, filters={"label": f"{LABEL_RUN}={name}"})


def live_past(client: DaemonClient, name: str, step: int) -> RunDetail | None:
    detail = client.run(name)
    ok = detail.run.health == "live" and detail.status is not None and detail.status.step > step
    return detail if ok and detail.status.last_checkpoint is not None else None


def test_a_run_in_a_container_survives_the_daemon_stops_resumes_and_is_interrupted(
    engine: Engine, demo_root: Path, short_tmp: Path
) -> None:
    # the model and bundle must be under a bind root; a symlink out of one is resolved, then refused
    links = short_tmp / "links"
    links.mkdir()
    for part in ("model", "bundle"):
        os.symlink(demo_root / part, links / part)
    daemon = serve(engine, short_tmp)
    try:
        with pytest.raises(DaemonError, match="outside the bind roots"):
            daemon.client.launch(spec=tiny_spec(links, "boxed"))
        data = readable_copy(demo_root, short_tmp / "data")
        spec = tiny_spec(data, "boxed")
        view = daemon.client.launch(spec=spec)
        assert view.runner == "docker" and view.container and view.nonce

        (box,) = containers(engine, "boxed")
        attrs = box.attrs
        host = attrs["HostConfig"]
        assert attrs["Config"]["Labels"][LABEL_NONCE] == view.nonce and attrs["Config"]["User"] == USER
        assert f"QWEN_RUN_NONCE={view.nonce}" in attrs["Config"]["Env"]
        assert host["Privileged"] is False and host["CapDrop"] == ["ALL"] and host["ReadonlyRootfs"] is True
        assert host["NetworkMode"] == "none" and "no-new-privileges" in host["SecurityOpt"]
        rw = {m["Target"] for m in host["Mounts"] if not m.get("ReadOnly")}
        assert rw == {str(short_tmp / "runs" / "boxed")}, rw  # the run dir is the only writable mount

        first = wait_until(lambda: live_past(daemon.client, "boxed", 0), 180, "a live heartbeat and a checkpoint")
        assert first.status is not None and first.status.container == view.container
        summary = wait_until(lambda: (s := daemon.client.run("boxed").summary).metrics.get("run_rss_bytes") and s,
                             30, "per-run resources of the container")
        # torch in the container, found via its cgroup (a first sample can catch the trainer before its imports)
        assert summary.metrics["run_rss_bytes"].max > 100 * 2**20

        # SIGKILL the daemon: the container keeps training; the new daemon reattaches, no second launch
        daemon.stop(signal.SIGKILL)
        step = first.status.step
        daemon = serve(engine, short_tmp)
        again = wait_until(lambda: live_past(daemon.client, "boxed", step + 2), 120, "training to go on after restart")
        assert again.run.nonce == view.nonce and again.status is not None
        assert again.status.started_at == first.status.started_at  # the same trainer process
        assert len(containers(engine, "boxed")) == 1
        assert any(e.kind == "reattach" for e in again.events)

        # graceful stop: SIGTERM through docker-init, the trainer checkpoints and exits 5
        daemon.client.stop("boxed")
        done = wait_until(lambda: (d := daemon.client.run("boxed")).run.state == "stopped" and d, 120, "the stop")
        assert done.run.exit_code == 5 and done.status is not None
        assert verify_checkpoint(list_checkpoints(Path(done.run.run_dir))[-1]).step == done.status.step
        assert containers(engine, "boxed") == []  # removed once reaped; its log is kept in the run dir
        assert "=== container" in (Path(done.run.run_dir) / "trainer.log").read_text()

        # resume; then the container is killed from outside: interrupted, not failed
        resumed = daemon.client.resume("boxed")
        assert resumed.nonce != view.nonce
        back = wait_until(lambda: live_past(daemon.client, "boxed", done.status.step), 180, "the resumed run")
        assert back.status is not None and any(e.kind == "resume" for e in back.status.events)
        containers(engine, "boxed")[0].kill(signal="SIGKILL")
        lost = wait_until(lambda: (d := daemon.client.run("boxed")).run.state != "running" and d, 30, "the reap")
        assert lost.run.state == "interrupted" and "did not send" in (lost.run.message or "")

        # resume again, then the container vanishes while the daemon is down: interrupted on restart
        daemon.client.resume("boxed")
        wait_until(lambda: daemon.client.run("boxed").run.health == "live", 180, "the second resume")
        daemon.stop(signal.SIGKILL)
        containers(engine, "boxed")[0].remove(force=True)
        daemon = serve(engine, short_tmp)
        gone = daemon.client.run("boxed").run
        assert gone.state == "interrupted" and "vanished" in (gone.message or ""), gone.message
    finally:
        daemon.stop()


def test_nvidia_without_gpu_support_is_a_clear_refusal_and_leaves_nothing(engine: Engine, short_tmp: Path) -> None:
    (short_tmp / "model").mkdir()
    (short_tmp / "bundle").mkdir()
    spec = RunSpec(name="gpu", lane="benchmark", model=str(short_tmp / "model"), bundle=str(short_tmp / "bundle"),
                   runner="docker")
    daemon = serve(engine, short_tmp, "--docker-gpus", "nvidia")
    try:
        with pytest.raises(DaemonError, match="nvidia-container-toolkit"):
            daemon.client.launch(spec=spec)
        assert daemon.client.run("gpu").run.state == "failed"
        assert containers(engine, "gpu") == []
    finally:
        daemon.stop()


def test_gpu_options_for_nvidia_and_rocm(tmp_path: Path) -> None:
    (request,) = gpu_options("nvidia")["device_requests"]
    assert request["Count"] == -1 and request["Capabilities"] == [["gpu"]]
    with pytest.raises(RunnerRefusal, match="kfd"):
        gpu_options("rocm", dev=str(tmp_path))
    (tmp_path / "kfd").touch()
    (tmp_path / "dri").mkdir()
    rocm = gpu_options("rocm", dev=str(tmp_path))
    assert rocm["devices"] == [f"{tmp_path}/kfd:/dev/kfd:rwm", f"{tmp_path}/dri:/dev/dri:rwm"]
    assert gpu_options("none") == {}


def test_an_ended_containers_log_that_its_disk_cannot_take_keeps_the_container_and_tears_nothing(
        engine: Engine, short_tmp: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The container's own log is the only copy of the run's output until it is appended to trainer.log."""
    with small_fs(1) as disk:
        run_dir = disk / "run"
        run_dir.mkdir()
        (run_dir / "trainer.log").write_bytes(b"before\n")
        box = engine.client.containers.run(
            IMAGE, ["/usr/bin/seq", "1", "400000"], detach=True, user=USER, working_dir=str(run_dir),
            labels={LABEL_NONCE: "n-disk-full", LABEL_RUN: "full"},
            mounts=[docker.types.Mount("/usr", "/usr", type="bind", read_only=True)])
        try:
            assert box.wait(timeout=60)["StatusCode"] == 0
            fill(disk)
            runner = DockerRunner(DaemonConfig(state_dir=str(short_tmp), docker=DockerSettings(
                host=engine.url, image=IMAGE, user=USER)))
            assert runner.adopt("n-disk-full", None, None) is not None
            ended = runner.poll("n-disk-full")
            assert ended is not None and ended.code == 0
            assert (run_dir / "trainer.log").read_bytes() == b"before\n"  # not half of seq's 2.7 MB
            assert [c.id for c in containers(engine, "full")] == [box.id]  # kept: its log is the only copy
            assert f"docker logs {box.name}" in caplog.text and "No space left" in caplog.text
        finally:
            box.remove(force=True)
