"""The one file hash: sha256 of a file's bytes, read in blocks.

Bundles address their files by it (bundle/fingerprint.py), checkpoints list it
in their manifest (train/checkpointing/checkpoint.py), and the code cache names its
namespace with it (prepare/codes.py); one definition keeps the three agreeing.
Torch-free, like the contracts that use it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

BLOCK = 1 << 20


def file_sha256(path: Path) -> str:
    """Hex sha256 of the file at `path`."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()
