"""Audio codes through the real `Qwen3TTSTokenizer.encode`, one clip at a time, cached by content.

Every clip is encoded alone (`encode_alone` says why a padded batch cannot
give a clip its own codes), so a clip's codes are a function of its audio and
the tokenizer only: the same clip gets the same codes in any bundle, in any
order, interrupted or not. The cache lives in the work dir under the
tokenizer's own hash and the extraction version, one `.npy` per audio sha256:
a re-run never encodes the same audio twice, a different tokenizer never
reuses another's codes, and codes made by an older extraction (version 1
batched clips, and its cache directory has no version suffix) are never
served as new ones. Runs on the GPU when there is one.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from qwen_train.bundle.codes import encode_alone, load_speech_tokenizer, read_mono_24k
from qwen_train.bundle.fingerprint import fingerprint_of
from qwen_train.digest import file_sha256

# 1: clips encoded in padded batches (a clip's codes depended on its batch-mates), never written down.
# 2: every clip encoded alone, in plain fp32 (`encode_alone`). Bundles record it (bundle.json's provenance,
#    hashed into the fingerprint) and the cache directory is named by it.
EXTRACTION_VERSION = 2

# (batches done, batches total, seconds per batch so far)
CodeProgress = Callable[[int, int, float], None]


def tokenizer_key(model_dir: Path) -> str:
    """Hash of the speech tokenizer's weights and config: the cache's namespace."""
    root = model_dir / "speech_tokenizer"
    if not (root / "config.json").is_file():
        raise FileNotFoundError(f"{root}: no speech tokenizer here; `model` must be a Qwen3-TTS model directory")
    parts = sorted(p for p in root.iterdir() if p.suffix in {".json", ".safetensors", ".bin"})
    # the bundle fingerprint's rule over (name, file sha256): the same bytes the cache was always named by
    return fingerprint_of({p.name: file_sha256(p) for p in parts})[:16]


def cache_namespace(model_dir: Path) -> str:
    """The tokenizer's key and the extraction version: version 1's directory (the bare key) is never read."""
    return f"{tokenizer_key(model_dir)}-v{EXTRACTION_VERSION}"


class CodeCache:
    def __init__(self, work: Path, model_dir: Path) -> None:
        self.dir = work / "codes" / cache_namespace(model_dir)
        self.dir.mkdir(parents=True, exist_ok=True)

    def path(self, sha: str) -> Path:
        return self.dir / f"{sha}.npy"

    def has(self, sha: str) -> bool:
        return self.path(sha).is_file()

    def load(self, sha: str) -> np.ndarray:
        return np.load(self.path(sha))

    def store(self, sha: str, codes: np.ndarray) -> None:
        fd, tmp = tempfile.mkstemp(prefix=".codes.", suffix=".npy", dir=self.dir)
        with os.fdopen(fd, "wb") as handle:
            np.save(handle, codes.astype(np.int16))
        os.replace(tmp, self.path(sha))


def plan_batches(clips: dict[str, float], batch_size: int) -> list[list[str]]:
    """Distinct shas, longest first (ties by sha), cut into units of progress (and of the ETA)."""
    order = sorted(clips, key=lambda sha: (-clips[sha], sha))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def extract_codes(
    clips: dict[str, float],
    wav_path: Callable[[str], Path],
    cache: CodeCache,
    model_dir: Path,
    *,
    batch_size: int,
    device: str = "auto",
    deadline: float | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    progress: CodeProgress | None = None,
) -> bool:
    """Fill the cache for every clip (sha -> duration); False if a bound stopped it first.

    Clips are encoded one by one; `batch_size` of them make one unit of
    progress. The stop and deadline bounds are checked before every clip.
    """
    batches = plan_batches(clips, batch_size)
    todo = [i for i, b in enumerate(batches) if not all(cache.has(s) for s in b)]
    if not todo:
        return True
    tok = load_speech_tokenizer(model_dir, device)
    started = time.monotonic()

    def stopped() -> bool:
        return should_stop() or (deadline is not None and time.monotonic() >= deadline)

    bar = tqdm(total=len(batches), initial=len(batches) - len(todo), desc="codes", unit="batch",
               file=sys.stderr, dynamic_ncols=True, mininterval=1.0)
    try:
        for done, index in enumerate(todo, start=1):
            if not _fill(tok, batches[index], wav_path, cache, stopped):
                return False
            bar.update(1)
            if progress is not None:
                progress(len(batches) - len(todo) + done, len(batches), (time.monotonic() - started) / done)
        return True
    finally:
        bar.close()


def _fill(tok: Any, shas: list[str], wav_path: Callable[[str], Path], cache: CodeCache,
          stopped: Callable[[], bool]) -> bool:
    """Encode and store each clip of one unit not yet cached; False (the rest left) once `stopped`."""
    for sha in shas:
        if cache.has(sha):
            continue
        if stopped():
            return False
        cache.store(sha, encode_alone(tok, read_mono_24k(wav_path(sha))))
    return True
