"""Write the frozen bundle: audio, codes, anchors, manifest, maps, splits, stats, rejects, fingerprint.

Built in a hidden sibling directory and renamed into place, so `out` either
does not exist or is a whole bundle. Every file is hashed into `bundle.json`
(the fingerprint covers content only: no timestamps, no absolute paths, so
an interrupted-and-resumed build fingerprints equal to an uninterrupted one),
then every file and directory is made read-only.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from qwen_train.atomic import atomic_write_bytes, fsync_dir
from qwen_train.bundle.fingerprint import CODES_EXTRACTION, bundle_fingerprint, hash_tree
from qwen_train.bundle.manifest import (
    ANCHORS,
    BUNDLE_FORMAT,
    BUNDLE_JSON,
    MANIFEST,
    REJECTS,
    SPK_ID_MAP,
    SPLITS,
    STATS,
    BundleError,
    BundleInfo,
    Row,
    Splits,
    write_json,
    write_jsonl,
)
from qwen_train.prepare.anchors import safe_name, write_anchors
from qwen_train.prepare.codes import EXTRACTION_VERSION, CodeCache
from qwen_train.prepare.reject_summary import journal_path, no_rows_message
from qwen_train.prepare.select import Selection
from qwen_train.prepare.spec import PrepareSpec, encode_prepare_spec

TOKENIZER = "qwen3_tts_tokenizer_12hz"


def file_names(selection: Selection) -> dict[str, str]:
    """row id -> '<source>/<safe orig id>', unique even where sanitising collides."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for s in selection.rows:
        base = f"{safe_name(s.entry.source)}/{safe_name(s.entry.orig_id)}"
        name, k = base, 1
        while name in used:
            name, k = f"{base}-{k}", k + 1
        used.add(name)
        out[s.row_id] = name
    return out


def assemble(
    spec: PrepareSpec,
    selection: Selection,
    imported: dict[str, int],
    cache: CodeCache,
    wav_path: Callable[[str], Path],
    notes: dict[str, dict[str, int]] | None = None,
) -> tuple[Path, str]:
    out = Path(spec.out)
    if out.exists():
        raise BundleError(f"{out} already exists; bundles are frozen, choose a new `out` or remove it")
    if not selection.rows:
        raise BundleError(no_rows_message(selection.rejects, sum(selection.unselected.values()), journal_path(spec)))
    tmp = out.with_name(f".{out.name}.building")
    if tmp.exists():
        _make_writable(tmp)
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    names = file_names(selection)
    anchors = write_anchors(selection.rows, wav_path, tmp)
    rows: list[Row] = []
    for s in selection.rows:
        e = s.entry
        sha = e.audio_sha or ""
        audio_rel, codes_rel = f"audio/{names[s.row_id]}.wav", f"codes/{names[s.row_id]}.npy"
        for rel in (audio_rel, codes_rel):
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(wav_path(sha), tmp / audio_rel)
        codes = cache.load(sha)
        np.save(tmp / codes_rel, codes.astype(np.int16))
        rows.append(
            Row(
                id=s.row_id,
                speaker_id=s.speaker_id,
                text=e.text,
                audio=audio_rel,
                codes=codes_rel,
                frames=int(codes.shape[0]),
                duration_s=e.duration_s,
                ref_audio=anchors[s.speaker_id].path,
                source=e.source,
                role=s.role,
                split="train" if s.split == "train" else "eval",
                eval_kind=s.eval_kind,
                orig_id=e.orig_id,
                meta=e.meta,
            )
        )
    _write_records(spec, tmp, rows, selection, imported, anchors, notes or {})
    fingerprint = _seal(spec, tmp, rows)
    tmp.rename(out)
    fsync_dir(out.parent)
    return out, fingerprint


def _write_records(
    spec: PrepareSpec,
    tmp: Path,
    rows: list[Row],
    selection: Selection,
    imported: dict[str, int],
    anchors: dict[str, Any],
    notes: dict[str, dict[str, int]],
) -> None:
    from qwen_train.prepare.stats import bundle_stats

    speakers = sorted({r.speaker_id for r in rows})
    write_jsonl(tmp / MANIFEST, rows)
    write_json(tmp / SPK_ID_MAP, {sid: i for i, sid in enumerate(speakers)})
    splits = Splits(
        seed=spec.seed,
        train=[r.id for r in rows if r.split == "train"],
        eval=[r.id for r in rows if r.split == "eval"],
        held_out_speakers=selection.held_out_speakers,
        held_out_utterances=[r.id for r in rows if r.eval_kind == "held_out_utterance"],
        roles={s.label: s.resolved_role for s in spec.sources},
    )
    write_json(tmp / SPLITS, splits)
    anchor_dicts = {sid: msgspec.to_builtins(a) for sid, a in anchors.items()}
    write_json(tmp / ANCHORS, anchor_dicts)
    write_json(tmp / STATS, bundle_stats(rows, selection.rejects, imported, selection.unselected, anchor_dicts,
                                                  notes))
    atomic_write_bytes(tmp / REJECTS, b"".join(msgspec.json.encode(r) + b"\n" for r in selection.rejects))


def _seal(spec: PrepareSpec, tmp: Path, rows: list[Row]) -> str:
    files = hash_tree(tmp)
    fingerprint = bundle_fingerprint(files, EXTRACTION_VERSION)
    info = BundleInfo(
        format=BUNDLE_FORMAT,
        fingerprint=fingerprint,
        files=files,
        rows=len(rows),
        speakers=len({r.speaker_id for r in rows}),
        tokenizer=TOKENIZER,
        created_at=time.time(),
        name=spec.name,
        provenance={CODES_EXTRACTION: EXTRACTION_VERSION,
                    "prepare_spec": msgspec.json.decode(encode_prepare_spec(spec))},
    )
    write_json(tmp / BUNDLE_JSON, info)
    for p in sorted(tmp.rglob("*"), reverse=True):
        p.chmod(0o444 if p.is_file() else 0o555)
    tmp.chmod(0o555)
    return fingerprint


def _make_writable(root: Path) -> None:
    for p in [root, *root.rglob("*")]:
        if p.is_dir():
            p.chmod(0o755)
