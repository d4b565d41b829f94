"""systemd's notify protocol, spoken directly: READY, STATUS, STOPPING and the watchdog.

A datagram of `KEY=value` lines to the AF_UNIX socket named by
$NOTIFY_SOCKET (a path, or '@name' for the abstract namespace). No
libsystemd: the protocol is a few lines and the daemon must not depend on
a C library for it. The watchdog pings only while the daemon is healthy --
it answers its own API -- so a wedged daemon is restarted by systemd
instead of being kept alive by a ping thread that still runs.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


def _address(raw: str) -> str | bytes:
    return b"\0" + raw[1:].encode() if raw.startswith("@") else raw


def notify(message: str, environ: dict[str, str] | None = None) -> bool:
    """Send one notification; False (and nothing else) when not run by systemd or it fails."""
    env = os.environ if environ is None else environ
    target = env.get("NOTIFY_SOCKET")
    if not target:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(message.encode(), _address(target))
    except OSError as exc:
        log.warning("systemd notify to %s failed: %s", target, exc)
        return False
    return True


def watchdog_interval(environ: dict[str, str] | None = None) -> float | None:
    """Half of WatchdogSec, if systemd asked this very process for pings."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC")
    pid = env.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 2e6
    except ValueError:
        log.warning("ignoring malformed WATCHDOG_USEC=%r", usec)
        return None


class Watchdog:
    """Pings WATCHDOG=1 every half period while `healthy()` says so; silence means restart."""

    def __init__(self, interval_s: float, healthy: Callable[[], bool]) -> None:
        self.interval_s = interval_s
        self._healthy = healthy
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="watchdog", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._halt.set()
        if self._thread.is_alive():
            self._thread.join(5.0)

    def _loop(self) -> None:
        while not self._halt.wait(self.interval_s):
            try:
                ok = self._healthy()
            except Exception:
                log.exception("health check failed")
                ok = False
            if ok:
                notify("WATCHDOG=1")
            else:
                log.error("not healthy: withholding the watchdog ping (systemd will restart the daemon)")
