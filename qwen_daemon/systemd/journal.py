"""Structured records to journald over its native protocol, without libsystemd.

The protocol is a datagram of fields on journald's socket: `NAME=value\\n`,
or for a value holding a newline `NAME\\n` + 64-bit little-endian length +
value + `\\n`. An entry too large for one datagram goes in a sealed memfd
passed with SCM_RIGHTS. The socket path is configurable (libsystemd hard-codes
/run/systemd/journal/socket; a test journald lives elsewhere). Sending never
raises: the sampler must not die because journald is away; the last problem
is kept so the API can say journald is not receiving.
"""

from __future__ import annotations

import array
import errno
import fcntl
import os
import re
import socket
import struct
import threading
from collections.abc import Mapping

_FIELD = re.compile(r"[A-Z0-9][A-Z0-9_]{0,63}")  # fullmatch: `$` would let a trailing newline in
_SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL


def encode_entry(fields: Mapping[str, object]) -> bytes:
    """One journal entry; field names must be journald-valid (upper case, digits, '_', not leading '_')."""
    out = bytearray()
    for name, value in fields.items():
        if not _FIELD.fullmatch(name):
            raise ValueError(f"journal field name {name!r} is invalid: use A-Z, 0-9 and '_', not starting with '_'")
        data = value if isinstance(value, bytes) else str(value).encode("utf-8")
        key = name.encode("ascii")
        if b"\n" in data:
            out += key + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += key + b"=" + data + b"\n"
    return bytes(out)


class JournalWriter:
    """Sends entries to one journald socket. Thread-safe; `problem` is None while delivery works."""

    def __init__(self, path: str, identifier: str = "qwen-daemon") -> None:
        self.path = path
        self.identifier = identifier
        self.sent = 0
        self.problem: str | None = None
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    def send(self, message: str, fields: Mapping[str, object], priority: int = 6) -> bool:
        entry = encode_entry({"MESSAGE": message, "PRIORITY": priority, "SYSLOG_IDENTIFIER": self.identifier,
                              **fields})
        with self._lock:
            try:
                try:
                    self._sock.sendto(entry, self.path)
                except OSError as exc:
                    if exc.errno not in (errno.EMSGSIZE, errno.ENOBUFS):
                        raise
                    self._send_memfd(entry)
            except OSError as exc:
                self.problem = f"journald not receiving at {self.path}: {exc.strerror or exc}"
                return False
            self.sent += 1
            self.problem = None
            return True

    def _send_memfd(self, entry: bytes) -> None:
        fd = os.memfd_create("qwen-journal-entry", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            os.write(fd, entry)
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
            rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]).tobytes())]
            self._sock.sendmsg([], rights, 0, self.path)
        finally:
            os.close(fd)

    def close(self) -> None:
        with self._lock:
            self._sock.close()
