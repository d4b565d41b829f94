"""Bundle records: manifest rows, the speaker map and bundle.json. No torch.

A bundle is a directory; these Structs are its schema. Every reader decodes
through them, so a malformed file is one error naming the file and line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import msgspec

from qwen_train.atomic import atomic_write_bytes

BUNDLE_FORMAT = 1
MANIFEST = "manifest.jsonl"
SPK_ID_MAP = "spk_id_map.json"
SPLITS = "splits.json"
BUNDLE_JSON = "bundle.json"
STATS = "stats.json"
ANCHORS = "anchors.json"
REJECTS = "rejects.jsonl"

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


def read_manifest(root: Path) -> list[Row]:
    path = root / MANIFEST
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise BundleError(f"{path}: cannot read manifest ({exc.strerror}); is {root} a bundle?") from None
    rows: list[Row] = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append(msgspec.json.decode(line, type=Row))
        except msgspec.MsgspecError as exc:
            raise BundleError(f"{path}:{n}: malformed manifest row: {exc}") from None
    return rows


def read_spk_id_map(root: Path) -> dict[str, int]:
    return _read(root / SPK_ID_MAP, dict[str, int])


def read_bundle_info(root: Path) -> BundleInfo:
    return _read(root / BUNDLE_JSON, BundleInfo)


def _read(path: Path, kind: Any) -> Any:
    try:
        return msgspec.json.decode(path.read_bytes(), type=kind)
    except OSError as exc:
        raise BundleError(f"{path}: cannot read ({exc.strerror})") from None
    except msgspec.MsgspecError as exc:
        raise BundleError(f"{path}: malformed: {exc}") from None
