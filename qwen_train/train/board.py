"""The run's TensorBoard scalars (and the scorer's clones as audio), written as they come, one whole record at a time.

torch's SummaryWriter hands events to a thread that writes them when it likes;
on a full disk that thread dies with a traceback in the log, leaves half a
record at the end of the event file, and the error reaches the trainer at
some later call, from the wrong place. Here each scalar is one record
(TFRecord framing: the length, its masked CRC, the Event proto, its masked
CRC) appended whole or not at all (atomic.append_whole): a full disk is a
DiskFull at the call that met it, and the event file ends at its last whole
record. A few dozen bytes a scalar, a handful of scalars a step. The file is
the one TensorBoard reads (`events.out.tfevents.*` under RUN_DIR/tensorboard),
named the way its own writer names it.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from pathlib import Path
from types import TracebackType

from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

from qwen_train.atomic import append_whole
from qwen_train.disk import disk_writes

BOARD_DIR = "tensorboard"


def record(data: bytes) -> bytes:
    """One TFRecord: what TensorBoard's reader checks, field by field."""
    header = struct.pack("<Q", len(data))
    return header + struct.pack("<I", masked_crc32c(header)) + data + struct.pack("<I", masked_crc32c(data))


class Board:
    """`add_scalar(tag, value, step)` as SummaryWriter has it; every call is on disk (or DiskFull) when it returns."""

    def __init__(self, log_dir: Path) -> None:
        with disk_writes("TensorBoard events", log_dir):
            log_dir.mkdir(parents=True, exist_ok=True)
        name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}.0"
        self.path = log_dir / name
        self._write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=float(value))])
        self._write(event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary))

    def add_audio(self, tag: str, wav: bytes, rate: int, frames: int, step: int) -> None:
        """A whole wav file (its bytes) as TensorBoard's audio summary, which its Audio tab plays."""
        audio = summary_pb2.Summary.Audio(sample_rate=float(rate), num_channels=1, length_frames=int(frames),
                                          encoded_audio_string=wav, content_type="audio/wav")
        summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, audio=audio)])
        self._write(event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary))

    def _write(self, event: event_pb2.Event) -> None:
        with disk_writes("TensorBoard events", self.path.parent):
            append_whole(self.path, record(event.SerializeToString()), mode=0o644)

    def __enter__(self) -> Board:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        """Nothing is buffered, so nothing is left to flush."""
