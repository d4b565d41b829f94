"""Google FLEURS `sv_se`: per-split TSV transcripts plus per-split audio archives.

Layout of the published dataset: `data/sv_se/{train,dev,test}.tsv` and
`data/sv_se/audio/{split}.tar.gz`, whose members are `{split}/<file_name>`
(16 kHz wav). Each TSV line has seven tab-separated columns without a header:
sentence id, file name, raw transcription, normalised transcription, word
segmentation, number of samples, gender. We take the raw transcription
(cased, punctuated: what a TTS model should read).

FLEURS publishes no speaker ids, only that speakers are disjoint across splits.
So each recording is its own speaker (`fleurs:<split>-<file stem>`) and its
anchor is cut from itself: honest, and it never merges two voices into one.
Archives are extracted once into the work dir (members checked to stay inside).
A TSV names its wav by file name; one that resolves outside its audio
directory, or an audio directory that is a symlink out of the corpus, is
`path_escape`.

The same corpus downloaded through a current `datasets` library comes as
parquet shards instead (`sv_se/{train,validation,test}/NNNN.parquet` or
`sv_se/fleurs-{split}-0000k-of-0000n.parquet`): fleurs_parquet.py reads those
into the same items, so `count` and `rows` here pick the reader by what the
source's directory holds. In both, `splits` may say `dev` or `validation`
(one split), and a filter that selects no file is an error naming the files.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from qwen_train.atomic import atomic_write_text
from qwen_train.bundle.paths import PathEscape, resolve_inside
from qwen_train.prepare import fleurs_parquet
from qwen_train.prepare.records import AudioRef, ImportReject, Item, SourceRow
from qwen_train.prepare.spec import SourceSpec
from qwen_train.prepare.splits import names_of, select
from qwen_train.safe_read import MiB, read_regular

SPLITS = ("train", "dev", "test")
COLUMNS = 7
TSV_LIMIT = 256 * MiB  # the largest FLEURS split's TSV is a few MB


Layout = Literal["tsv", "parquet"]


def layout(path: Path) -> tuple[Layout, Path]:
    """Which download this is and its language dir: the dataset root (holding data/sv_se or sv_se) or sv_se itself.

    TSVs win over shards in one dir: the published layout is what this reader
    was first written for, and a TSV that is no regular file is refused by name.
    """
    for cand in (path / "data" / "sv_se", path / "sv_se", path):
        if any((cand / f"{s}.tsv").exists() for s in SPLITS):
            return "tsv", cand
        if fleurs_parquet.holds_shards(cand, SPLITS):
            return "parquet", cand
    raise FileNotFoundError(f"fleurs: no {{train,dev,test}}.tsv and no parquet shards under {path}; point the "
                            "source at data/sv_se (or sv_se/ of the parquet export)")


def wanted_splits(wanted: list[str] | None) -> list[str]:
    """The asked splits as the TSVs spell them (`validation` is `dev`), in the order asked, each once.

    The order asked is the order rows are numbered in, as it always was: a
    journal written before keeps resuming at the same row.
    """
    if not wanted:
        return list(SPLITS)
    unknown = sorted(w for w in wanted if not any(names_of(s) & names_of(w) for s in SPLITS))
    if unknown:
        raise ValueError(f"fleurs: unknown splits {unknown}; FLEURS has {list(SPLITS)} (dev is also validation)")
    return list(dict.fromkeys(s for w in wanted for s in SPLITS if names_of(s) & names_of(w)))


def _splits(src: SourceSpec, root: Path) -> list[str]:
    order = wanted_splits(src.splits)
    select(root, [root / f"{s}.tsv" for s in SPLITS if (root / f"{s}.tsv").exists()], src.splits, "fleurs")
    return [s for s in order if (root / f"{s}.tsv").exists()]


def _shards(src: SourceSpec, lang: Path) -> list[tuple[Path, str]]:
    return fleurs_parquet.shard_splits(Path(src.path), lang, src.splits, wanted_splits(src.splits), SPLITS)


def audio_dir(root: Path, split: str, work: Path, label: str) -> Path | None:
    """The directory holding the split's wavs: extracted beside the TSV, or extracted by us once."""
    extracted = root / "audio" / split
    if extracted.is_dir():
        return extracted
    archive = root / "audio" / f"{split}.tar.gz"
    if not archive.is_file():
        return None
    try:
        archive = resolve_inside(root, archive)
    except PathEscape as exc:
        raise PathEscape(f"fleurs: the {split} archive {exc}: refused, a corpus stays inside its root") from None
    dest = work / "extracted" / label
    done = dest / f".{split}.done"
    if not done.is_file():
        dest.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as tar:
            tar.extractall(dest, filter="data")  # "data" refuses members escaping dest
        atomic_write_text(done, archive.name)
    return dest / split


def _lines(root: Path, split: str) -> list[str]:
    return read_regular(root / f"{split}.tsv", TSV_LIMIT, what="fleurs transcript").decode("utf-8").splitlines()


def count(src: SourceSpec, work: Path) -> int:
    kind, root = layout(Path(src.path))
    if kind == "parquet":
        return fleurs_parquet.count(Path(src.path), _shards(src, root))
    return sum(len(_lines(root, s)) for s in _splits(src, root))


def rows(src: SourceSpec, work: Path, start: int = 0) -> Iterator[Item]:
    kind, root = layout(Path(src.path))
    if kind == "parquet":
        yield from fleurs_parquet.rows(Path(src.path), _shards(src, root), start)
        return
    n = -1
    for split in _splits(src, root):
        lines = _lines(root, split)
        if n + len(lines) < start:
            n += len(lines)
            continue
        wavs = audio_dir(root, split, work, src.label)
        inside = Path(src.path) if wavs is None or not wavs.is_relative_to(work) else wavs
        for k, line in enumerate(lines, start=1):
            n += 1
            if n < start:
                continue
            cols = line.split("\t")
            if len(cols) != COLUMNS or not cols[1].strip():
                yield ImportReject(n, f"{split}:line{k}", "bad_metadata",
                                   f"{split}.tsv line {k}: {len(cols)} columns, expected {COLUMNS}")
                continue
            sentence_id, file_name, raw_text, _norm, _words, _samples, gender = cols
            stem = Path(file_name).stem
            orig_id = f"{split}/{stem}"
            try:
                wav = resolve_inside(inside, wavs / file_name) if wavs is not None else None
            except PathEscape as exc:
                yield ImportReject(n, orig_id, "path_escape", f"{split}.tsv line {k}: {exc}: refused, a corpus "
                                   "stays inside its root")
                continue
            if wav is None or not wav.exists():
                detail = f"{split}.tsv line {k}: {file_name} not in audio/{split}"
                yield ImportReject(n, orig_id, "missing_audio", detail)
                continue
            yield SourceRow(
                n=n,
                orig_id=orig_id,
                speaker=f"{split}-{stem}",
                text=raw_text,
                audio=AudioRef("file", str(wav)),
                meta={"split": split, "sentence_id": sentence_id, "gender": gender.lower()},
            )
