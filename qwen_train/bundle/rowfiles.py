"""The files a manifest row names (codes, audio, reference anchor), read as the trainer needs them.

A row's paths are relative to the bundle root and must stay inside it: a bundle copied in from
elsewhere, or named with `--bundle-root`, could carry `../`, an absolute path or a symlink out to
any file on the host, and the fingerprint would not notice (whoever rewrote the manifest rewrote
bundle.json too). `check_rows` refuses the lexical ways out when a split is loaded (cheap over a
million rows); each read then resolves its path, symlinks included, and reads it without blocking,
as a regular file within a bound. Every refusal is a BundleError naming the row and the file.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import soundfile as sf

from qwen_train.bundle.manifest import BundleError, Row
from qwen_train.bundle.paths import PathEscape, lexically_inside, resolve_inside
from qwen_train.safe_read import MiB, UnsafeFile, read_regular

CODES_LIMIT = 16 * MiB  # 16 groups x 12.5 frames/s x int16: an hour of speech is 1.4 MiB
AUDIO_LIMIT = 256 * MiB  # 24 kHz mono 16-bit: 256 MiB is an hour and a half


def check_rows(root: Path, rows: Iterable[Row]) -> None:
    """Refuse a row whose codes, audio or reference path is absolute or climbs out with '..'."""
    for row in rows:
        for field, value in (("codes", row.codes), ("audio", row.audio), ("ref_audio", row.ref_audio)):
            if not lexically_inside(value):
                raise BundleError(f"{root}: row {row.id} has {field} {value!r}, which is not a path inside the "
                                  "bundle (absolute, '..' or empty): refused; rebuild the bundle")


def row_file(root: Path, rel: str, limit: int, what: str) -> bytes:
    """The bytes of `rel` under `root` once its real path is inside root and it is a bounded regular file."""
    try:
        return read_regular(resolve_inside(root, rel), limit, what=what)
    except PathEscape as exc:
        raise BundleError(f"bundle {root}: {what} {exc}: refused, a bundle's files stay inside it") from None
    except UnsafeFile as exc:
        raise BundleError(f"bundle {root}: {exc}") from None
    except OSError as exc:
        raise BundleError(f"bundle {root}: {what} {rel} cannot be read ({exc.strerror}); rebuild the bundle") from None


def read_codes(root: Path, rel: str) -> np.ndarray:
    """A row's codec codes: (frames, groups) integers, from an .npy that holds no pickled objects."""
    data = row_file(root, rel, CODES_LIMIT, "codes")
    try:
        codes = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise BundleError(f"bundle {root}: codes {rel} is not a readable .npy ({exc}); rebuild the bundle") from None
    if codes.ndim != 2 or codes.dtype.kind not in "iu":
        raise BundleError(f"bundle {root}: codes {rel} holds {codes.dtype} of shape {codes.shape}, expected "
                          "(frames, groups) integers; rebuild the bundle")
    return codes


def read_wave(root: Path, rel: str, what: str = "audio") -> tuple[np.ndarray, int]:
    """(frames, channels) float32 and the rate of a wav inside the bundle."""
    data = row_file(root, rel, AUDIO_LIMIT, what)
    try:
        audio, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as exc:
        raise BundleError(f"bundle {root}: {what} {rel} cannot be decoded ({exc}); rebuild the bundle") from None
    return audio, int(rate)
