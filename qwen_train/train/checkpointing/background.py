"""Background checkpoints: training stops only for a copy into host memory.

A durable checkpoint of the full training state at full size is tens of
gigabytes (fp32 weights and two AdamW moments); serialising, writing,
fsyncing and hashing it synchronously stops training for tens of seconds.
Here the step only copies every tensor of the state into host buffers
(pinned on CUDA, allocated once and reused, so the copy runs at PCIe speed),
and a thread runs the ordinary `save_checkpoint` on that snapshot: temp
directory, fsync, hash, rename, directory fsync. A kill at any moment of the
write leaves the previous checkpoint as it was and at most a `.tmp-*`
directory, which the next start removes; a write that meets a full disk removes
its own and is re-raised as the DiskFull it is. The Checkpointer (checkpointer.py)
learns of completion by polling between steps and does the bookkeeping
(retention, status) itself, on the main thread. Only one write is in flight:
the next snapshot waits for the previous write, since it reuses its buffers.

Pinning tens of gigabytes of host memory is itself slow (about a second per
GiB, measured on the H100 machine), so `reserve` allocates the buffers in the
background once the state's shapes are known (after the first step); the
first checkpoint then stalls no longer than any other.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import torch

from qwen_train.disk import DiskFull
from qwen_train.train.checkpointing.checkpoint import CheckpointError, save_checkpoint

_BufferKey = tuple[Any, ...]


class BackgroundCheckpointer:
    """`submit` snapshots and starts the write; `poll`/`wait` return the durable path once."""

    def __init__(self, pin: bool) -> None:
        self.pin = pin
        self._buffers: dict[_BufferKey, torch.Tensor] = {}
        self._thread: threading.Thread | None = None
        self._result: Path | None = None
        self._error: BaseException | None = None
        self.pending_step: int | None = None
        self.last_snapshot_s = 0.0
        self.last_write_s = 0.0
        self.reserved = False
        self.last_reserve_s = 0.0

    @property
    def busy(self) -> bool:
        """A reservation or a write is still running (finished ones wait for `poll`/`wait`)."""
        return self._thread is not None and self._thread.is_alive()

    def reserve(self, state: Any) -> None:
        """Allocate (and pin) the host buffers for a state shaped like `state`, in the background."""
        if self._thread is not None:
            return  # a write is in flight: its snapshot has allocated the buffers already
        self.reserved = True
        shapes = [(path, t.shape, t.dtype, t.is_cuda) for path, t in _paths(state, ())]
        self._thread = threading.Thread(target=self._allocate, args=(shapes,), name="checkpoint-reserve",
                                        daemon=True)
        self._thread.start()

    def _allocate(self, shapes: list[tuple[_BufferKey, torch.Size, torch.dtype, bool]]) -> None:
        start = time.perf_counter()
        try:
            for path, shape, dtype, cuda in shapes:
                if path not in self._buffers:
                    self._buffers[path] = torch.empty(shape, dtype=dtype, pin_memory=self.pin and cuda)
        except BaseException as exc:
            self._error = exc
        self.last_reserve_s = time.perf_counter() - start

    def snapshot(self, state: Any) -> Any:
        """A copy of `state` whose tensors live in this writer's host buffers."""
        self._idle()
        memo: dict[tuple[Any, ...], torch.Tensor] = {}
        copied = self._copy(state, (), memo)
        if any(t.is_cuda for t in _tensors(state)):
            torch.cuda.synchronize()  # the copies were queued non-blocking: wait for them once
        return copied

    def _copy(self, value: Any, path: _BufferKey, memo: dict[tuple[Any, ...], torch.Tensor]) -> Any:
        if isinstance(value, torch.Tensor):
            alias = (value.untyped_storage().data_ptr(), value.storage_offset(), tuple(value.shape),
                     tuple(value.stride()), value.dtype, value.device)
            if alias in memo:  # tied tensors stay tied in the file
                return memo[alias]
            buffer = self._buffers.get(path)
            if buffer is None or buffer.shape != value.shape or buffer.dtype != value.dtype:
                buffer = torch.empty(value.shape, dtype=value.dtype, pin_memory=self.pin and value.is_cuda)
                self._buffers[path] = buffer
            buffer.copy_(value.detach(), non_blocking=value.is_cuda)
            memo[alias] = buffer
            return buffer
        if isinstance(value, dict):
            return {k: self._copy(v, (*path, k), memo) for k, v in value.items()}
        if isinstance(value, (list, tuple)) and not _is_plain(value):
            items = [self._copy(v, (*path, i), memo) for i, v in enumerate(value)]
            if isinstance(value, list):
                return items
            return type(value)(*items) if _is_namedtuple(value) else type(value)(items)
        return value  # numbers, strings, structs, numpy RNG state: fresh or immutable already

    def submit(self, run_dir: Path, step: int, state: dict[str, Any], meta_fields: dict[str, Any]) -> None:
        """Snapshot now (the only part that blocks training) and write in the background."""
        start = time.perf_counter()
        snap = self.snapshot(state)
        self.last_snapshot_s = time.perf_counter() - start
        self.pending_step = step
        self._thread = threading.Thread(target=self._write, args=(run_dir, step, snap, meta_fields),
                                        name=f"checkpoint-{step}", daemon=True)
        self._thread.start()

    def _idle(self) -> None:
        """Let a buffer reservation finish; a write in flight must have been collected (`wait`) first."""
        if self._thread is None:
            return
        if self.pending_step is not None:
            raise RuntimeError(f"the background write of step {self.pending_step} is in flight; wait() for it first")
        self.wait()

    def _write(self, run_dir: Path, step: int, snap: dict[str, Any], meta_fields: dict[str, Any]) -> None:
        start = time.perf_counter()
        try:
            self._result = save_checkpoint(run_dir, step, snap, meta_fields)
        except BaseException as exc:  # re-raised on the main thread by poll/wait
            self._error = exc
        self.last_write_s = time.perf_counter() - start

    def poll(self) -> Path | None:
        """The durable path if the write in flight has finished since the last call, else None."""
        if self._thread is None or self._thread.is_alive():
            return None
        return self._finish()

    def wait(self) -> Path | None:
        """Block until the write in flight (if any) is durable; return its path."""
        if self._thread is None:
            return None
        self._thread.join()
        return self._finish()

    def _finish(self) -> Path | None:
        assert self._thread is not None
        self._thread.join()
        self._thread = None
        step, self.pending_step = self.pending_step, None
        error, self._error = self._error, None
        result, self._result = self._result, None
        if isinstance(error, DiskFull):  # its temp dir is gone already; the run ends failed_disk_full
            raise error
        if error is not None:
            raise CheckpointError(f"background checkpoint of step {step} failed: {error}") from error
        return result

    def host_bytes(self) -> int:
        return sum(b.numel() * b.element_size() for b in self._buffers.values())


def _paths(value: Any, path: _BufferKey) -> list[tuple[_BufferKey, torch.Tensor]]:
    """(path, tensor) for every tensor, with the paths `snapshot` keys its buffers by."""
    if isinstance(value, torch.Tensor):
        return [(path, value)]
    if isinstance(value, dict):
        return [pt for k, v in value.items() for pt in _paths(v, (*path, k))]
    if isinstance(value, (list, tuple)) and not _is_plain(value):
        return [pt for i, v in enumerate(value) for pt in _paths(v, (*path, i))]
    return []


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    if isinstance(value, (list, tuple)) and not _is_plain(value):
        return [t for v in value for t in _tensors(v)]
    return []


def _is_plain(value: list[Any] | tuple[Any, ...]) -> bool:
    """Sequences with no tensor inside are kept as they are (cheap check on the first level)."""
    return not any(isinstance(v, (torch.Tensor, dict, list, tuple)) for v in value)


def _is_namedtuple(value: Any) -> bool:
    return isinstance(value, tuple) and hasattr(value, "_fields")
