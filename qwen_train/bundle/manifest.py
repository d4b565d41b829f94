"""Bundle records: manifest rows, the speaker map and bundle.json. No torch.

A bundle is a directory; these Structs are its schema. Every reader decodes
through them, so a malformed file is one error naming the file and line. A
bundle may arrive from anywhere (`--bundle-root`, a copied directory), so its
records are read through `safe_read`: a FIFO, a device, a symlink or a file
past its kind's bound is a BundleError naming it, never a hang or a huge read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import msgspec

from qwen_train.atomic import atomic_write_bytes
from qwen_train.safe_read import MiB, UnsafeFile, decode_json, read_regular

BUNDLE_FORMAT = 1
MANIFEST = "manifest.jsonl"
SPK_ID_MAP = "spk_id_map.json"
SPLITS = "splits.json"
BUNDLE_JSON = "bundle.json"
STATS = "stats.json"
ANCHORS = "anchors.json"
REJECTS = "rejects.jsonl"

# Bounds per record, each far above what a RixVox-scale bundle (two million rows) writes: a manifest
# row is ~400 bytes; bundle.json lists two files a row; splits lists every row id.
LIMITS = {MANIFEST: 2048 * MiB, BUNDLE_JSON: 1024 * MiB, SPLITS: 512 * MiB, SPK_ID_MAP: 64 * MiB,
          ANCHORS: 128 * MiB, STATS: 64 * MiB}

Split = Literal["train", "eval"]
EvalKind = Literal["held_out_speaker", "held_out_utterance"]


class BundleError(ValueError):
    """A bundle that cannot be used; the message names the file and the fix."""


class Row(msgspec.Struct, frozen=True):
    """One utterance. Paths are relative to the bundle root, never outside it."""

    id: str
    speaker_id: str
    text: str
    audio: str
    codes: str
    frames: int
    duration_s: float
    ref_audio: str
    source: str
    role: str
    split: Split
    eval_kind: EvalKind | None = None
    orig_id: str = ""
    meta: dict[str, str | int | float | bool] = {}  # the publisher's row metadata (prepare/records.py Meta)


class Splits(msgspec.Struct, frozen=True):
    seed: int
    train: list[str]
    eval: list[str]
    held_out_speakers: list[str]
    held_out_utterances: list[str] = []
    roles: dict[str, str] = {}


class BundleInfo(msgspec.Struct, frozen=True):
    format: int
    fingerprint: str
    files: dict[str, str]
    rows: int
    speakers: int
    tokenizer: str
    created_at: float
    name: str = ""
    provenance: dict[str, Any] = {}


def write_jsonl(path: Path, rows: list[Row]) -> None:
    atomic_write_bytes(path, b"".join(msgspec.json.encode(r) + b"\n" for r in rows))


def write_json(path: Path, value: object) -> None:
    atomic_write_bytes(path, msgspec.json.format(msgspec.json.encode(value), indent=2) + b"\n")


def read_record(root: Path, name: str) -> bytes:
    """The bytes of one of the bundle's own files: regular, not a symlink, within its bound."""
    path = root / name
    try:
        return read_regular(path, LIMITS[name], what="bundle file", nofollow=True)
    except UnsafeFile as exc:
        raise BundleError(f"{exc}; is {root} a bundle as prepare wrote it?") from None
    except OSError as exc:
        raise BundleError(f"{path}: cannot read ({exc.strerror}); is {root} a bundle?") from None


def read_manifest(root: Path) -> list[Row]:
    """Every row; lines decode one by one into the flat Row (no nesting to bound, so no depth scan)."""
    path = root / MANIFEST
    rows: list[Row] = []
    for n, line in enumerate(read_record(root, MANIFEST).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(msgspec.json.decode(line, type=Row))
        except msgspec.MsgspecError as exc:
            raise BundleError(f"{path}:{n}: malformed manifest row: {exc}") from None
    return rows


def read_spk_id_map(root: Path) -> dict[str, int]:
    return _read(root, SPK_ID_MAP, dict[str, int])


def read_bundle_info(root: Path) -> BundleInfo:
    return _read(root, BUNDLE_JSON, BundleInfo)


def read_splits(root: Path) -> Splits:
    return _read(root, SPLITS, Splits)


def _read(root: Path, name: str, kind: Any) -> Any:
    """A JSON record: too deep, malformed or mistyped is a BundleError naming the file.

    bundle.json and splits.json grow with the rows (hundreds of MB at RixVox scale), where decode_json's
    depth scan would cost half a minute on every verify; they are typed down to one `Any` (provenance),
    and msgspec turns nesting past the interpreter's limit into a RecursionError, caught here.
    """
    raw, source = read_record(root, name), str(root / name)
    try:
        if name in (BUNDLE_JSON, SPLITS):
            return msgspec.json.decode(raw, type=kind)
        return decode_json(raw, kind, source)
    except msgspec.MsgspecError as exc:
        raise BundleError(f"{source}: malformed: {exc}") from None
    except (RecursionError, MemoryError):
        raise BundleError(f"{source}: malformed: nested too deep") from None
    except ValueError as exc:
        raise BundleError(str(exc)) from None
