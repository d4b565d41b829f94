"""The `docker` runner: each launch is one container, through the Docker Engine API.

The daemon is the one place that starts training containers, and it starts
them narrowly: a non-root user, no privileges (all capabilities dropped,
no-new-privileges), a read-only root filesystem with a private /tmp, no
network unless configured, and only these mounts: the run dir (read-write)
and what the job names (`Job.paths`: a training run's model and bundle,
read-only; a preprocess job's model and sources read-only and the directory
its bundle is built in read-write; a diagnose or gate job's run's dir read-write,
its model and bundle read-only, and a gate's ASR model and thresholds read-only), each
of which must lie under a configured bind root, plus configured read-only
runtime mounts (a development venv). GPUs come as an NVIDIA device request (`--gpus all`) or, for ROCm, the
/dev/kfd and /dev/dri devices. Labels carry the run id and launch nonce, so a
restarted daemon finds its containers again; the nonce is in the environment
for the trainer to echo.

Stop is SIGTERM to the container's init (docker-init forwards it to the
trainer, which checkpoints and exits); the monitor escalates to SIGKILL.
When a container ends, its log is appended to run_dir/trainer.log and the
container is removed: the run dir, not Docker, keeps a run's history. When
the run dir's disk cannot take the log, the container stays (its log is then
the only copy) and the daemon's journal says how to read it.
"""

from __future__ import annotations

import grp
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import docker
import docker.errors
import msgspec
from docker.types import DeviceRequest, LogConfig, Mount

from qwen_daemon.config import DaemonConfig
from qwen_daemon.jobs import bindroots, cgroups
from qwen_daemon.jobs.job import (
    CONTAINER_ENV,
    LOG_FILE,
    SPEC_FILE,
    Exit,
    Job,
    Launched,
    RunnerRefusal,
    job_argv,
)
from qwen_daemon.runs.safe_files import append_whole_regular, chmod_regular, open_append
from qwen_train.atomic import atomic_write_bytes
from qwen_train.safe_read import UnsafeFile
from qwen_train.status import NONCE_ENV

log = logging.getLogger(__name__)

LABEL_RUN = "org.qwen-hemma.run-id"
LABEL_NONCE = "org.qwen-hemma.nonce"
LABEL_MANAGED = "org.qwen-hemma.managed-by"
MANAGED_BY = "qwen-daemon"
ROCM_DEVICES = ("/dev/kfd", "/dev/dri")
ROCM_GROUPS = ("video", "render")


class _Watched(msgspec.Struct, frozen=True):
    id: str
    name: str
    run_dir: str


def container_name(run: str, nonce: str) -> str:
    return f"qwen-{run}-{nonce[:12]}"


def exit_from_state(state: dict[str, Any]) -> Exit:
    """Docker's 128+N for a signal death becomes -N, like a local child's returncode."""
    code = int(state.get("ExitCode", -1))
    if 128 < code < 128 + 65:
        code = -(code - 128)
    oom = bool(state.get("OOMKilled"))
    detail = "the container ran out of memory (OOMKilled)" if oom else None
    return Exit(code=code, detail=detail, oom=oom)


def parse_user(user: str) -> tuple[int, int]:
    """'UID:GID' (numeric: the image need not know the user). Root is refused."""
    try:
        uid_text, gid_text = user.split(":")
        uid, gid = int(uid_text), int(gid_text)
    except ValueError:
        raise RunnerRefusal(
            f"docker user {user!r} is not UID:GID (numbers): pass e.g. --docker-user 1000:1000"
        ) from None
    if uid == 0:
        raise RunnerRefusal("training containers never run as root: pass --docker-user with a non-root UID:GID")
    return uid, gid


def gpu_options(gpus: str, dev: str = "/dev") -> dict[str, Any]:
    """create() arguments for the GPU kind; ROCm devices must exist on this host."""
    if gpus == "nvidia":
        return {"device_requests": [DeviceRequest(count=-1, capabilities=[["gpu"]])]}
    if gpus == "rocm":
        devices = [path.replace("/dev", dev, 1) for path in ROCM_DEVICES]
        missing = [path for path in devices if not os.path.exists(path)]
        if missing:
            raise RunnerRefusal(
                f"ROCm GPUs need {' and '.join(missing)} on the host, which are missing: install the "
                "amdgpu driver (and ROCm) or pass --docker-gpus none"
            )
        groups: list[str] = []
        for name in ROCM_GROUPS:
            try:
                groups.append(str(grp.getgrnam(name).gr_gid))
            except KeyError:
                continue
        return {"devices": [f"{path}:{target}:rwm" for path, target in zip(devices, ROCM_DEVICES, strict=True)],
                "group_add": groups}
    return {}


class DockerRunner:
    """Starts, signals, reaps and reattaches training containers (a `jobs.Runner`)."""

    name = "docker"

    def __init__(self, config: DaemonConfig) -> None:
        self.config = config
        self.settings = config.docker
        self._lock = threading.Lock()
        self._client: docker.DockerClient | None = None
        self._watched: dict[str, _Watched] = {}

    # the connection

    def client(self) -> docker.DockerClient:
        """Connected lazily: the daemon serves (and runs process launches) while Docker is down."""
        with self._lock:
            if self._client is not None:
                return self._client
        where = self.settings.host or os.environ.get("DOCKER_HOST") or "the default Docker socket"
        try:
            client = docker.DockerClient(base_url=self.settings.host) if self.settings.host else docker.from_env()
            client.ping()
        except docker.errors.DockerException as exc:
            raise RunnerRefusal(
                f"Docker is not reachable at {where} ({exc}): start dockerd or pass --docker-host"
            ) from None
        with self._lock:
            self._client = client
        return client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    # planning a launch

    def user(self) -> str:
        if self.settings.user:
            parse_user(self.settings.user)
            return self.settings.user
        if os.geteuid() == 0:
            raise RunnerRefusal(
                "the daemon runs as root, so the container user must be given: pass --docker-user UID:GID (non-root)"
            )
        return f"{os.geteuid()}:{os.getegid()}"

    def mounts(self, job: Job, run_dir: Path) -> list[Mount]:
        """Run dir read-write and the job's paths, all under bind roots; runtime mounts read-only."""
        roots = self.config.bind_roots
        wanted = [(run_dir, False, "the run dir"), *job.paths()]
        mounts = []
        for host_path, read_only, what in wanted:
            source = bindroots.docker_source(host_path, roots, what)
            mounts.append(Mount(target=str(host_path), source=source, type="bind", read_only=read_only))
        for path in self.settings.runtime_mounts:
            mounts.append(Mount(target=path, source=path, type="bind", read_only=True))
        return mounts

    def check(self, job: Job, run_dir: Path) -> None:
        self.user()
        self.mounts(job, run_dir)
        gpu_options(self.settings.gpus)
        try:
            self.client().images.get(self.settings.image)
        except docker.errors.ImageNotFound:
            raise RunnerRefusal(
                f"Docker image {self.settings.image} is not on this host: build it (see image/README.md) "
                "or pass --docker-image"
            ) from None
        except docker.errors.APIError as exc:
            raise RunnerRefusal(f"Docker could not look up image {self.settings.image}: {exc}") from None

    # the Runner protocol

    def launch(self, job: Job, run_dir: Path, nonce: str, resume: bool = False) -> Launched:
        user = self.user()
        run_dir.mkdir(parents=True, exist_ok=True)
        created = [run_dir]
        for path, read_only, _ in job.paths():
            if not read_only and not path.exists():  # a bind mount needs its source (a prepare's output tree)
                path.mkdir(parents=True)
                created.append(path)
        if os.geteuid() == 0:  # the container user writes checkpoints, status.json and bundles there
            uid, gid = parse_user(user)
            for path in created:
                os.chown(path, uid, gid)
        atomic_write_bytes(run_dir / SPEC_FILE, job.spec_bytes())
        chmod_regular(run_dir / SPEC_FILE, 0o644, "run spec")  # written 0600 by the atomic writer; the container
        # user reads it (through a descriptor: a symlink swapped in by the run's last trainer is not followed)
        name = container_name(job.name, nonce)
        argv = job_argv(self.settings.python, run_dir, job, nonce, resume)
        client = self.client()
        options: dict[str, Any] = dict(
            image=self.settings.image, command=argv, name=name, user=user, working_dir=str(run_dir),
            environment={NONCE_ENV: nonce, CONTAINER_ENV: name, "PYTHONUNBUFFERED": "1", "HOME": "/tmp"},
            labels={LABEL_RUN: job.name, LABEL_NONCE: nonce, LABEL_MANAGED: MANAGED_BY},
            mounts=self.mounts(job, run_dir), network_mode=self.settings.network, init=True,
            read_only=True, tmpfs={"/tmp": "rw,nosuid,nodev,exec"}, cap_drop=["ALL"],
            security_opt=["no-new-privileges"], privileged=False, shm_size=self.settings.shm_size,
            log_config=LogConfig(type="json-file", config={"max-size": "50m", "max-file": "2"}),
            **gpu_options(self.settings.gpus),
        )
        with open_append(run_dir / LOG_FILE, "log") as handle:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S %z")
            handle.write(f"=== {stamp} launch {nonce} in container {name} ({self.settings.image}): "
                         f"{argv}\n".encode())
        try:
            container = client.containers.create(**options)
        except docker.errors.APIError as exc:
            raise RunnerRefusal(f"Docker refused to create the container: {exc.explanation or exc}") from None
        try:
            container.start()
            container.reload()
        except docker.errors.APIError as exc:
            container.remove(force=True)
            raise RunnerRefusal(_start_failure(str(exc.explanation or exc), self.settings.gpus)) from None
        with self._lock:
            self._watched[nonce] = _Watched(container.id, name, str(run_dir))
        return Launched(pid=int(container.attrs["State"]["Pid"]), container=name)

    def adopt(self, nonce: str, pid: int | None, container: str | None) -> Launched | None:
        """Find the launch's container by its nonce label (running or already exited)."""
        try:
            found = self.client().containers.list(all=True, filters={"label": f"{LABEL_NONCE}={nonce}"})
        except (RunnerRefusal, docker.errors.DockerException) as exc:
            log.warning("cannot look for the container of launch %s: %s", nonce, exc)
            return None
        if not found:
            return None
        box = found[0]
        run_dir = box.attrs.get("Config", {}).get("WorkingDir", "")
        with self._lock:
            self._watched[nonce] = _Watched(box.id, box.name, run_dir)
        return Launched(pid=int(box.attrs["State"].get("Pid") or 0), container=box.name)

    def poll(self, nonce: str) -> Exit | None:
        with self._lock:
            watched = self._watched.get(nonce)
        if watched is None:
            return Exit(code=None, detail="no container is known for this launch")
        try:
            box = self.client().containers.get(watched.id)
        except docker.errors.NotFound:
            with self._lock:
                self._watched.pop(nonce, None)
            return Exit(code=None, detail=f"container {watched.name} vanished (removed outside the daemon)")
        except (RunnerRefusal, docker.errors.DockerException) as exc:
            log.warning("cannot inspect container %s (%s); assuming it still runs", watched.name, exc)
            return None
        state = box.attrs["State"]
        if state.get("Running") or state.get("Status") in ("created", "restarting", "paused"):
            return None
        ended = exit_from_state(state)
        if self._keep_log(box, watched):
            try:
                box.remove(force=True)
            except docker.errors.DockerException as exc:
                log.warning("could not remove ended container %s: %s", watched.name, exc)
        with self._lock:
            self._watched.pop(nonce, None)
        return ended

    def _keep_log(self, box: Any, watched: _Watched) -> bool:
        """Append the ended container's output to the run's log; False when it could not be kept there.

        The container's own log is then the only copy, so the caller leaves the container in place."""
        if not watched.run_dir:
            return True
        path = Path(watched.run_dir) / LOG_FILE
        try:
            data = box.logs(stdout=True, stderr=True)
            trailer = f"=== container {watched.name} ended: {box.attrs['State'].get('Status')}\n".encode()
            append_whole_regular(path, data + trailer, "log")
            return True
        except (OSError, UnsafeFile, docker.errors.DockerException) as exc:
            log.warning("could not keep the log of container %s in %s (%s): the container is left in place so "
                        "its output survives; `docker logs %s` shows it, `docker rm %s` once it is saved",
                        watched.name, path, exc, watched.name, watched.name)
            return False

    def _signal(self, nonce: str, sig: signal.Signals) -> bool:
        with self._lock:
            watched = self._watched.get(nonce)
        if watched is None:
            return False
        try:
            self.client().containers.get(watched.id).kill(signal=sig.name)
        except (RunnerRefusal, docker.errors.DockerException):
            return False
        return True

    def terminate(self, nonce: str) -> bool:
        return self._signal(nonce, signal.SIGTERM)

    def kill(self, nonce: str) -> bool:
        return self._signal(nonce, signal.SIGKILL)

    def run_once(self, source: str, target: str, argv: list[str], timeout_s: float = 120.0) -> tuple[int, str]:
        """A short-lived container (the bind-root probe) with `source` mounted read-write at `target`."""
        client = self.client()
        mounts = [Mount(target=target, source=source, type="bind", read_only=False)]
        for path in self.settings.runtime_mounts:
            mounts.append(Mount(target=path, source=path, type="bind", read_only=True))
        try:
            box = client.containers.run(
                self.settings.image, command=argv, user=self.user(), mounts=mounts, network_mode="none",
                read_only=True, cap_drop=["ALL"], security_opt=["no-new-privileges"], detach=True,
                labels={LABEL_MANAGED: MANAGED_BY},
            )
        except docker.errors.DockerException as exc:
            raise RunnerRefusal(f"Docker could not run the probe container: {exc}") from None
        try:
            code = int(box.wait(timeout=timeout_s).get("StatusCode", -1))
            output = box.logs(stdout=True, stderr=True).decode("utf-8", "replace")
        except Exception as exc:  # requests' timeout or a Docker error: the probe failed, say so
            return -1, f"probe container did not finish: {exc}"
        finally:
            box.remove(force=True)
        return code, output

    def pids(self, nonce: str) -> list[int]:
        """Host pids of the container's processes, found through their cgroup."""
        with self._lock:
            watched = self._watched.get(nonce)
        return cgroups.container_pids(watched.id) if watched is not None else []


def _start_failure(message: str, gpus: str) -> str:
    if gpus == "nvidia" and ("device driver" in message or "nvidia" in message.lower()):
        return (f"Docker cannot give the container NVIDIA GPUs ({message}): install nvidia-container-toolkit, "
                "configure Docker's nvidia runtime and restart dockerd, or pass --docker-gpus none")
    return f"Docker could not start the container: {message}"
