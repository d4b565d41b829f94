"""Which model a scores file belongs to: a checkpoint's digest, read from its manifest. No torch.

A step's checkpoint can be written twice (a rollback, or a resume after a kill, writes that step again with
other weights), so a scores file names the model it scored (`model_digest`) and counts only while the kept
checkpoint is still that model. A checkpoint's digest is the hash of its manifest's file hashes (meta.json
already holds them, so nothing large is read).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from qwen_train.checkpoint_files import CheckpointError, read_meta


def checkpoint_digest(ckpt: Path) -> str:
    """CheckpointError when its meta.json cannot be read."""
    meta = read_meta(ckpt)
    body = "".join(f"{name}:{entry.sha256}\n" for name, entry in sorted(meta.files.items()))
    return hashlib.sha256(body.encode()).hexdigest()


def digest_or_none(ckpt: Path) -> str | None:
    try:
        return checkpoint_digest(ckpt)
    except CheckpointError:
        return None
