"""An operator's reservation of the GPU, audited like a class change and kept across daemon restarts.

While the speech sidecar (or llama.cpp) needs the card, no GPU run may start:
`qwen-daemon gpu reserve --reason WHY` writes the reservation to the state dir
(atomically) after appending it to an audit log (fsynced), and every GPU
launch and queued start reads it again. Runs already training keep going; the
reservation is about what starts. On a full state dir a reservation is refused
whole (its audit record cut back), a release still happens once audited.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import msgspec

from qwen_daemon.protocol.gpu import GpuAuditEntry, GpuReservation
from qwen_daemon.state_writes import StateWriteError, StateWrites
from qwen_train.atomic import append_durable, atomic_write_bytes, read_appended, undo_append
from qwen_train.safe_read import decode_json, read_regular

RESERVATION_FILE = "gpu-reservation.json"
AUDIT_FILE = "gpu-audit.jsonl"
RESERVATION_LIMIT = 1 << 20  # a reason, an actor and a time


class ReservationError(ValueError):
    """A reserve/release the rules do not allow, or a reservation file that cannot be read."""


class Reservations:
    def __init__(self, state_dir: Path, writes: StateWrites | None = None) -> None:
        self.path = state_dir / RESERVATION_FILE
        self.audit_path = state_dir / AUDIT_FILE
        self.writes = writes or StateWrites()
        self._lock = threading.Lock()

    def current(self) -> GpuReservation | None:
        """Read on every use (never blocking: a FIFO there must not hold every GPU launch); a corrupt or
        unreadable file counts as reserved (fail closed) and says how to fix it."""
        try:
            raw = read_regular(self.path, RESERVATION_LIMIT, what="GPU reservation", nofollow=True)
            return decode_json(raw, GpuReservation, "its JSON")
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:  # ValueError: UnsafeFile, or malformed JSON
            why = (exc.strerror or str(exc)) if isinstance(exc, OSError) else str(exc)
            return GpuReservation(reason=f"{self.path} is unreadable ({why}): `qwen-daemon gpu release` clears it",
                                  actor="?", since=0.0)

    def reserve(self, reason: str, actor: str) -> GpuReservation:
        if not reason.strip():
            raise ReservationError("a GPU reservation needs a reason: pass --reason WHY")
        with self._lock:
            held = self.current()
            if held is not None:
                raise ReservationError(f"the GPU is already reserved by {held.actor} since "
                                       f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(held.since))}: "
                                       f"{held.reason}; release it first")
            now = time.time()
            start = self._audit(GpuAuditEntry(now, "reserve", actor, reason))
            reservation = GpuReservation(reason=reason, actor=actor, since=now)
            try:
                with self.writes.guard("GPU reservation", self.path):
                    atomic_write_bytes(self.path, msgspec.json.encode(reservation) + b"\n")
            except StateWriteError:
                undo_append(self.audit_path, start)  # not reserved, so no record of a reservation
                raise
            return reservation

    def release(self, actor: str, reason: str = "") -> GpuReservation | None:
        """Drop the reservation; returns what was released (None: nothing was reserved, nothing logged)."""
        with self._lock:
            held = self.current()
            if held is None and not os.path.lexists(self.path):  # a dangling link reads as reserved: clear it
                return None
            self._audit(GpuAuditEntry(time.time(), "release", actor, reason))
            self.path.unlink(missing_ok=True)  # an unlink needs no space: once audited, the release happens
            return held

    def _audit(self, entry: GpuAuditEntry) -> int:
        with self.writes.guard("GPU audit log", self.audit_path):
            return append_durable(self.audit_path, msgspec.json.encode(entry))

    def audit(self) -> list[GpuAuditEntry]:
        return read_appended(self.audit_path, GpuAuditEntry)
