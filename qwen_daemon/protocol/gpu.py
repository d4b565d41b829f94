"""The shared GPU as the API shows it: who holds its memory, whether it is reserved, what waits for it.

Hemma's one card also serves other services, so a run starts only when the
card has room for its memory plan and no operator has reserved it; these are
the records that say why a run did not start, or what it waits for.
"""

from __future__ import annotations

import msgspec

from qwen_daemon.protocol.resources import GpuSample


class GpuHolder(msgspec.Struct, frozen=True):
    """A process holding memory on GPU `gpu`: one of our runs (`run`), a container, or another service."""

    gpu: int
    pid: int
    vram_bytes: int
    run: str | None = None
    container: str | None = None
    command: str = ""


class GpuReservation(msgspec.Struct, frozen=True):
    """An operator's hold on the GPU: no GPU run starts until it is released."""

    reason: str
    actor: str
    since: float


class ReserveRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    reason: str = ""


class GpuStatus(msgspec.Struct, frozen=True):
    """`queued`: runs waiting for room, oldest first; `note`: why the GPUs cannot be read, if they cannot."""

    gpus: list[GpuSample] = []
    holders: list[GpuHolder] = []
    reservation: GpuReservation | None = None
    queued: list[str] = []
    backend: str | None = None
    note: str | None = None


class GpuAuditEntry(msgspec.Struct, frozen=True):
    """One reserve or release, as the append-only audit log keeps it."""

    time: float
    action: str  # "reserve" | "release"
    actor: str
    reason: str = ""
