"""Build a frozen bundle from a corpus JSONL (minimal pipeline; see issue #5).

Steps: read rows, pick a reference anchor per speaker and copy it in, split
(held-out speakers and held-out utterances, from a seed), copy audio in,
extract codes, write manifest/spk_id_map/splits/stats, fingerprint, then make
every file read-only.
"""

from __future__ import annotations

import random
import shutil
import statistics
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from qwen_train.bundle.codes import encode_files, load_speech_tokenizer
from qwen_train.bundle.fingerprint import fingerprint_of, hash_tree
from qwen_train.bundle.manifest import (
    BUNDLE_FORMAT,
    BUNDLE_JSON,
    MANIFEST,
    SPK_ID_MAP,
    SPLITS,
    STATS,
    BundleError,
    BundleInfo,
    EvalKind,
    Row,
    Splits,
    write_json,
    write_jsonl,
)
from qwen_train.corpus.espeak import CorpusRow, read_corpus

ANCHOR_MIN_S, ANCHOR_MAX_S = 3.0, 8.0


def choose_anchor(rows: list[CorpusRow]) -> CorpusRow:
    """Rule: the longest clip within 3-8 s; if none fits, the one closest to 5 s."""
    fitting = [r for r in rows if ANCHOR_MIN_S <= r.duration_s <= ANCHOR_MAX_S]
    if fitting:
        return max(fitting, key=lambda r: (r.duration_s, r.id))
    return min(rows, key=lambda r: (abs(r.duration_s - 5.0), r.id))


def split_rows(by_speaker: dict[str, list[CorpusRow]], seed: int, held_out_speakers: int) -> Splits:
    """Held-out speakers (all their rows) plus one held-out utterance per seen speaker."""
    rng = random.Random(seed)
    speakers = sorted(by_speaker)
    if len(speakers) <= held_out_speakers:
        raise BundleError(f"{len(speakers)} speakers cannot hold out {held_out_speakers}; add speakers")
    held = sorted(rng.sample(speakers, held_out_speakers))
    train: list[str] = []
    evals: list[str] = []
    for spk in speakers:
        ids = sorted(r.id for r in by_speaker[spk])
        if spk in held:
            evals.extend(ids)
            continue
        picked = rng.choice(ids)
        evals.append(picked)
        train.extend(i for i in ids if i != picked)
    return Splits(seed=seed, train=train, eval=evals, held_out_speakers=held)


def build_bundle(
    corpus_jsonl: Path,
    model_dir: Path,
    out_dir: Path,
    *,
    source: str = "demo",
    seed: int = 0,
    held_out_speakers: int = 1,
    device: str = "auto",
) -> Path:
    """Build into a temp dir next to `out_dir`, then rename: a half-built bundle never appears."""
    if out_dir.exists():
        raise BundleError(f"{out_dir} already exists; bundles are frozen, choose a new directory")
    corpus_root = corpus_jsonl.parent
    rows = read_corpus(corpus_jsonl)
    if not rows:
        raise BundleError(f"{corpus_jsonl}: no rows")
    tmp = out_dir.with_name(f".{out_dir.name}.building")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    by_speaker: dict[str, list[CorpusRow]] = defaultdict(list)
    for r in rows:
        by_speaker[r.speaker].append(r)
    splits = split_rows(by_speaker, seed, held_out_speakers)
    anchors = _copy_anchors(by_speaker, corpus_root, tmp)
    audio_paths = _copy_audio(rows, corpus_root, tmp)
    tok = load_speech_tokenizer(model_dir, device)
    codes = encode_files(tok, [tmp / a for a in audio_paths])
    manifest = _write_rows(rows, codes, audio_paths, anchors, splits, source, tmp)
    _finish(tmp, manifest, splits, by_speaker, source)
    tmp.rename(out_dir)
    return out_dir


def _copy_anchors(by_speaker: dict[str, list[CorpusRow]], corpus_root: Path, tmp: Path) -> dict[str, str]:
    anchors: dict[str, str] = {}
    for spk, spk_rows in sorted(by_speaker.items()):
        anchor = choose_anchor(spk_rows)
        rel = f"anchors/{spk}.wav"
        (tmp / "anchors").mkdir(exist_ok=True)
        shutil.copyfile(corpus_root / anchor.audio, tmp / rel)
        anchors[spk] = rel
    return anchors


def _copy_audio(rows: list[CorpusRow], corpus_root: Path, tmp: Path) -> list[str]:
    rels: list[str] = []
    for r in rows:
        rel = f"audio/{r.id}.wav"
        (tmp / "audio").mkdir(exist_ok=True)
        shutil.copyfile(corpus_root / r.audio, tmp / rel)
        rels.append(rel)
    return rels


def _write_rows(
    rows: list[CorpusRow],
    codes: list[np.ndarray],
    audio_paths: list[str],
    anchors: dict[str, str],
    splits: Splits,
    source: str,
    tmp: Path,
) -> list[Row]:
    eval_ids = set(splits.eval)
    held = set(splits.held_out_speakers)
    (tmp / "codes").mkdir(exist_ok=True)
    out: list[Row] = []
    for r, c, audio in zip(rows, codes, audio_paths, strict=True):
        rel = f"codes/{r.id}.npy"
        np.save(tmp / rel, c.astype(np.int16))
        in_eval = r.id in eval_ids
        kind: EvalKind | None = None
        if in_eval:
            kind = "held_out_speaker" if r.speaker in held else "held_out_utterance"
        out.append(
            Row(
                id=r.id,
                speaker_id=f"{source}:{r.speaker}",
                text=r.text,
                audio=audio,
                codes=rel,
                frames=int(c.shape[0]),
                duration_s=r.duration_s,
                ref_audio=anchors[r.speaker],
                source=source,
                role="eval" if in_eval else "train",
                split="eval" if in_eval else "train",
                eval_kind=kind,
            )
        )
    return out


def _finish(
    tmp: Path, manifest: list[Row], splits: Splits, by_speaker: dict[str, list[CorpusRow]], source: str
) -> None:
    write_jsonl(tmp / MANIFEST, manifest)
    write_json(tmp / SPK_ID_MAP, {f"{source}:{s}": i for i, s in enumerate(sorted(by_speaker))})
    write_json(tmp / SPLITS, splits)
    write_json(tmp / STATS, _stats(manifest))
    files = hash_tree(tmp)
    info = BundleInfo(
        format=BUNDLE_FORMAT,
        fingerprint=fingerprint_of(files),
        files=files,
        rows=len(manifest),
        speakers=len(by_speaker),
        tokenizer="qwen3_tts_tokenizer_12hz",
        created_at=time.time(),
    )
    write_json(tmp / BUNDLE_JSON, info)
    for p in tmp.rglob("*"):
        p.chmod(0o444 if p.is_file() else 0o555)
    tmp.chmod(0o555)


def _stats(rows: list[Row]) -> dict[str, object]:
    durations = [r.duration_s for r in rows]
    frames = [r.frames for r in rows]
    per_speaker: dict[str, int] = defaultdict(int)
    for r in rows:
        per_speaker[r.speaker_id] += 1
    return {
        "rows": len(rows),
        "train_rows": sum(r.split == "train" for r in rows),
        "eval_rows": sum(r.split == "eval" for r in rows),
        "duration_s": {"total": sum(durations), "median": statistics.median(durations),
                       "min": min(durations), "max": max(durations)},
        "frames": {"total": sum(frames), "median": statistics.median(frames), "max": max(frames)},
        "rows_per_speaker": dict(sorted(per_speaker.items())),
    }
