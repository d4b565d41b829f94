"""Where the daemon's socket is, for the server and every client alike, so they cannot drift apart."""

from __future__ import annotations

import os
from pathlib import Path

SOCKET_ENV = "QWEN_DAEMON_SOCKET"
SOCKET_NAME = "daemon.sock"
# sun_path is 108 bytes on Linux, including the terminating NUL.
MAX_SOCKET_PATH_BYTES = 107


class SocketPathError(ValueError):
    """A socket path that cannot be bound; the message names it and the fix."""


def default_state_dir() -> Path:
    """$XDG_STATE_HOME/qwen-hemma, or ~/.local/state/qwen-hemma (XDG's default)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "qwen-hemma"


def default_socket() -> Path:
    """Where clients look first: $QWEN_DAEMON_SOCKET, else the default state dir's socket."""
    env = os.environ.get(SOCKET_ENV)
    return Path(env) if env else default_state_dir() / SOCKET_NAME


def check_socket_path(path: Path) -> Path:
    """Unix socket paths longer than sun_path fail at bind with an obscure error; say why early."""
    size = len(os.fsencode(str(path)))
    if size > MAX_SOCKET_PATH_BYTES:
        raise SocketPathError(
            f"socket path {path} is {size} bytes; Unix socket paths must be at most "
            f"{MAX_SOCKET_PATH_BYTES} bytes (108 with the terminating NUL): "
            "pass --socket with a shorter path, e.g. under /run or /tmp"
        )
    return path
