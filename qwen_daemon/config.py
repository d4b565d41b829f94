"""The daemon's settings, and where its state and socket live by default.

One Struct so that `serve`, the tests and (later) the systemd unit agree on
the same names and defaults. Validation happens once, here, so the rest of
the daemon can trust the numbers and paths it is given.
"""

from __future__ import annotations

import grp
import os
import sys
from pathlib import Path
from typing import Literal

import msgspec

from qwen_daemon.protocol.socket import SOCKET_NAME, SocketPathError, check_socket_path


class ConfigError(ValueError):
    """A daemon setting that cannot work; the message names it and the fix."""


GpuKind = Literal["none", "nvidia", "rocm"]
GpuAdmission = Literal["refuse", "queue"]
DEFAULT_JOURNAL_SOCKET = "/run/systemd/journal/socket"


class BindRoot(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A host tree training containers may see, e.g. /srv/scratch.

    `source` is set where Docker cannot see the canonical tree itself (snap
    Docker): the home-directory bind source mounted onto it.
    """

    path: str
    source: str = ""


class DockerSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """How the `docker` runner starts training containers.

    `host` empty: the Docker SDK's default ($DOCKER_HOST, else the system
    socket). `user` empty: the daemon's own uid:gid, unless the daemon is root
    (then it must be set: containers never run as root). `python` is the
    interpreter inside the image. `runtime_mounts` are host paths mounted
    read-only at the same path (a development venv and interpreter); data and
    run dirs come only from the bind roots.
    """

    host: str = ""
    image: str = "qwen-hemma-train:latest"
    gpus: GpuKind = "none"
    user: str = ""
    python: str = "python3"
    network: str = "none"
    shm_size: str = "2g"
    runtime_mounts: list[str] = []


class DaemonConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Settings of one daemon instance.

    `socket_path` empty means `state_dir/daemon.sock`. `trainer_python` is
    the interpreter that runs `-m qwen_train`; it defaults to the daemon's
    own so a venv install works without configuration. `socket_group` empty
    leaves the socket with the daemon's group; either way it is 0660.
    `runs_path` empty means `state_dir/runs` (docker runs need it under a
    bind root). `journal_socket` empty turns journald logging of samples off.
    `surfaces_path` empty means `state_dir/surfaces.json`. `gate_asr` and
    `gate_thresholds` (absolute, or empty for none) are what a promotion gate
    gets when its request names none: the dashboard's "run gate" sends no
    paths, and a gate without an ASR model can only fail intelligibility.
    """

    state_dir: str
    socket_path: str = ""
    sample_period_s: float = 5.0
    stale_after_s: float = 120.0
    stop_timeout_s: float = 60.0
    trainer_python: str = sys.executable
    socket_group: str = ""
    runs_path: str = ""
    journal_socket: str = DEFAULT_JOURNAL_SOCKET
    surfaces_path: str = ""
    bind_roots: list[BindRoot] = []
    docker: DockerSettings = DockerSettings()
    gate_asr: str = ""
    gate_verifier: str = ""
    gate_thresholds: str = ""
    # A GPU run that does not fit the card's free memory (or meets a reservation): refused, or queued until it fits.
    gpu_admission: GpuAdmission = "refuse"
    # A training run whose disk plan does not fit its run dir's free space: refused, or queued until it fits.
    disk_admission: GpuAdmission = "refuse"
    # Where the sampler reads sysfs, /proc and /dev ("" is the host's "/"); a recorded tree in tests.
    gpu_root: str = ""

    @property
    def socket(self) -> Path:
        return Path(self.socket_path) if self.socket_path else Path(self.state_dir) / SOCKET_NAME

    @property
    def runs_dir(self) -> Path:
        return Path(self.runs_path) if self.runs_path else Path(self.state_dir) / "runs"

    @property
    def surfaces_file(self) -> Path:
        return Path(self.surfaces_path) if self.surfaces_path else Path(self.state_dir) / "surfaces.json"

    @property
    def audit_log(self) -> Path:
        return Path(self.state_dir) / "surfaces-audit.jsonl"

    @property
    def db_path(self) -> Path:
        return Path(self.state_dir) / "registry.sqlite3"

    def run_dir(self, name: str) -> Path:
        """Callers pass names already checked by `qwen_train.spec.check_name`."""
        return self.runs_dir / name


def socket_gid(config: DaemonConfig) -> int | None:
    """The group that may use the socket, or None for the daemon's own."""
    if not config.socket_group:
        return None
    try:
        return grp.getgrnam(config.socket_group).gr_gid
    except KeyError:
        raise ConfigError(
            f"no group named {config.socket_group!r} for --socket-group: create it or name another"
        ) from None


def _positive(value: float, flag: str) -> None:
    if not value > 0:
        raise ConfigError(f"{flag} must be a positive number of seconds, got {value}")


def _check_gate_default(value: str, flag: str, want_dir: bool) -> None:
    if not value:
        return
    path = Path(value)
    if not path.is_absolute():
        raise ConfigError(f"{flag} {value} must be an absolute path")
    if not (path.is_dir() if want_dir else path.is_file()):
        kind = "directory (an ASR model)" if want_dir else "file (gate thresholds JSON)"
        raise ConfigError(f"{flag} {value} is not a {kind}: fix the path or leave {flag} out")


def validate_config(config: DaemonConfig) -> DaemonConfig:
    """Check every setting before anything is created on disk."""
    if not config.state_dir:
        raise ConfigError("state dir is empty: pass --state-dir")
    _positive(config.sample_period_s, "--sample-period")
    _positive(config.stale_after_s, "--stale-after")
    _positive(config.stop_timeout_s, "--stop-timeout")
    try:
        check_socket_path(config.socket)
    except SocketPathError as exc:
        raise ConfigError(str(exc)) from None
    socket_gid(config)
    for root in config.bind_roots:
        if not Path(root.path).is_absolute() or (root.source and not Path(root.source).is_absolute()):
            raise ConfigError(f"bind root {root.path}={root.source} must use absolute paths")
    for mount in config.docker.runtime_mounts:
        if not Path(mount).is_absolute():
            raise ConfigError(f"--docker-runtime-mount {mount} must be an absolute path")
    if config.runs_path and not Path(config.runs_path).is_absolute():
        raise ConfigError(f"--runs-dir {config.runs_path} must be an absolute path")
    for value, flag, want_dir in ((config.gate_asr, "--gate-asr", True),
                                  (config.gate_verifier, "--gate-verifier", True),
                                  (config.gate_thresholds, "--gate-thresholds", False)):
        _check_gate_default(value, flag, want_dir)
    trainer = Path(config.trainer_python)
    if not (trainer.is_file() and os.access(trainer, os.X_OK)):
        raise ConfigError(
            f"trainer python {config.trainer_python} is not an executable file: "
            "pass --trainer-python with the interpreter that has qwen_train installed"
        )
    return config
