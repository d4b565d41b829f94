"""Durable checkpoints: everything needed to continue bit for bit.

Written into `checkpoints/.tmp-step-N`, every file fsynced, then renamed to
`checkpoints/step-N` and the directory fsynced: a crash mid-save leaves the
previous checkpoint as it was. `meta.json` lists each file with size and
sha256, so a truncated or altered checkpoint is detected before use; the
hash is taken while the bytes are written (one pass, no re-read). Retention
deletes old checkpoints only after a newer one is durable. `save_checkpoint`
is also what the background writer (background.py) runs, on a snapshot.
A listed file is a plain name inside the checkpoint and a regular file there
(lstat: not a symlink, FIFO or device) before it is hashed or loaded. A write
that meets a full disk removes its temp dir and raises DiskFull.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import stat
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

import msgspec
import torch

from qwen_train.atomic import atomic_write_bytes, fsync_dir
from qwen_train.checkpoint_files import (  # the torch-free contract; re-exported for the trainer's modules
    CKPT_DIR,
    META_FILE,
    STATE_FILE,
    CheckpointError,
    CheckpointMeta,
    FileEntry,
    checkpoint_name,
    list_checkpoints,
    read_meta,
)
from qwen_train.digest import file_sha256
from qwen_train.disk import disk_writes
from qwen_train.train.guard.faults import pause


class _HashingFile:
    """A file that hashes what passes through it; large writes release the GIL in both."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self.digest.update(view)
        self.handle.write(view)
        self.size += view.nbytes
        return view.nbytes

    def flush(self) -> None:
        self.handle.flush()


def _save_hashed(state: dict[str, Any], path: Path) -> FileEntry:
    """torch.save into `path`, fsynced; returns its size and sha256."""
    with path.open("wb") as handle:
        sink = _HashingFile(handle)
        torch.save(state, sink)  # type: ignore[arg-type]  # a writable file-like object is all it needs
        handle.flush()
        os.fsync(handle.fileno())
    return FileEntry(size=sink.size, sha256=sink.digest.hexdigest())


def save_checkpoint(run_dir: Path, step: int, state: dict[str, Any], meta_fields: dict[str, Any]) -> Path:
    """Write one durable checkpoint and return its directory.

    A write that fails (a full disk: DiskFull naming the checkpoint) takes its temp dir with it, so what
    it had half written never holds the space it ran out of; the kept checkpoints are untouched.
    """
    root = run_dir / CKPT_DIR
    tmp = root / f".tmp-{checkpoint_name(step)}"
    with disk_writes(f"checkpoint {checkpoint_name(step)}", root):
        try:
            return _write_checkpoint(root, tmp, step, state, meta_fields)
        except Exception:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def _write_checkpoint(root: Path, tmp: Path, step: int, state: dict[str, Any], meta_fields: dict[str, Any]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    final = root / checkpoint_name(step)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    pause("checkpoint-before-write", step)
    files = {STATE_FILE: _save_hashed(state, tmp / STATE_FILE)}
    meta = CheckpointMeta(step=step, created_at=time.time(), files=files, **meta_fields)
    atomic_write_bytes(tmp / META_FILE, msgspec.json.encode(meta))
    fsync_dir(tmp)
    pause("checkpoint-before-rename", step)
    if final.exists():  # same step written again (e.g. stop right after a scheduled save)
        shutil.rmtree(tmp)
        return final
    os.replace(tmp, final)
    fsync_dir(root)
    return final


def regular_size(ckpt: Path, name: str) -> int:
    """The size of the checkpoint's file `name`, refusing a name that leaves the dir and anything not a regular file.

    lstat, not stat: a symlink is refused rather than followed, so neither the hash nor torch.load ever opens a
    FIFO (which would block), a device (which never ends) or a file elsewhere on the host.
    """
    if not name or name != Path(name).name or name in (".", ".."):
        raise CheckpointError(f"checkpoint {ckpt}: {META_FILE} lists {name!r}, not a file name inside it: refused")
    try:
        info = os.lstat(ckpt / name)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {ckpt}: {name} is missing") from None
    except OSError as exc:
        raise CheckpointError(f"checkpoint {ckpt}: {name} cannot be read ({exc.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        kind = "a symlink" if stat.S_ISLNK(info.st_mode) else "not a regular file"
        raise CheckpointError(f"checkpoint {ckpt}: {name} is {kind}: refused, a checkpoint holds regular files only")
    return info.st_size


def verify_checkpoint(ckpt: Path) -> CheckpointMeta:
    """Check every listed file's size and hash; name the first mismatch."""
    meta = read_meta(ckpt)
    for name, entry in meta.files.items():
        path = ckpt / name
        size = regular_size(ckpt, name)
        if size != entry.size:
            raise CheckpointError(
                f"checkpoint {ckpt}: {name} is {size} bytes, its manifest says {entry.size} (truncated?)"
            )
        if file_sha256(path) != entry.sha256:
            raise CheckpointError(f"checkpoint {ckpt}: {name} does not match its manifest hash")
    return meta


def _older_globals() -> list[Any]:
    """What checkpoints written before the state held only plain values need: NumPy's RNG state as an ndarray, and
    the eval history as the status records (plain constructors of plain fields, nothing that runs code)."""
    import numpy as np
    from numpy._core.multiarray import _reconstruct

    from qwen_train.status import EvalResult, Losses

    return [_reconstruct, np.ndarray, np.dtype, np.dtypes.UInt32DType, EvalResult, Losses]


def load_state(ckpt: Path) -> dict[str, Any]:
    """The checkpoint's state, unpickled with torch's weights-only loader: tensors, containers and plain values.

    A run dir can come from anywhere (copied from another host, restored from a backup), so loading one never runs
    code it holds; a state.pt that needs more than that is refused by name rather than trusted.
    """
    regular_size(ckpt, STATE_FILE)
    try:
        with torch.serialization.safe_globals(_older_globals()):
            state: dict[str, Any] = torch.load(ckpt / STATE_FILE, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = str(exc).split("WeightsUnpickler error:")[-1].strip().splitlines()[0]
        raise CheckpointError(f"checkpoint {ckpt}: {STATE_FILE} holds more than tensors and plain values "
                              f"({detail}): refused, loading it could run code it carries; move {ckpt.name} out of "
                              f"{CKPT_DIR}/ to resume from the one before it") from None
    return state


def prune(run_dir: Path, keep_last: int, protect: Path | None = None, keep: Collection[Path] = ()) -> list[Path]:
    """Delete all but the newest `keep_last` and those in `keep` (the best-scored checkpoint and those waiting for
    their scores: qwen_train/scores/retention.py); never `protect` unless a newer one exists."""
    ckpts = list_checkpoints(run_dir)
    doomed = ckpts[:-keep_last] if keep_last > 0 else []
    newest = ckpts[-1] if ckpts else None
    removed: list[Path] = []
    for path in doomed:
        if (protect is not None and path == protect and newest == protect) or path in keep:
            continue
        shutil.rmtree(path)
        removed.append(path)
    return removed


def clean_temporaries(run_dir: Path) -> list[Path]:
    """Remove half-written `.tmp-*` checkpoints a kill left behind (never a completed one)."""
    root = run_dir / CKPT_DIR
    if not root.is_dir():
        return []
    stale = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(".tmp-")]
    for path in stale:
        shutil.rmtree(path)
    return stale
