"""Google FLEURS `sv_se` as the Hub's parquet export: what a current `datasets` library hands users.

The loading script of google/fleurs no longer runs under `datasets` 3+, so a
user who downloads FLEURS today gets parquet shards, in one of two layouts:
`sv_se/{train,validation,test}/NNNN.parquet` (the Hub's parquet branch) or
`sv_se/fleurs-{split}-0000k-of-0000n.parquet` (the older converter). Columns:
`id` (the sentence id: several speakers read one sentence), `num_samples`,
`path` (the wav's file name), `audio` (the `Audio` struct `{bytes, path}`),
`transcription` (normalised), `raw_transcription`, `gender` (a class label:
0 male, 1 female, 2 other), `lang_id`, `language`, `lang_group_id`.

Rows become the very items the TSV reader (fleurs.py) yields for the same
recording: the parquet split `validation` is the TSVs' `dev`, the text is the
raw transcription, the orig_id is `{split}/{wav stem}` and each recording is
its own speaker. A bundle prepared from either download then names its rows
alike, and an operator can switch downloads without renaming anything.

Shards are walked by the shared helper (parquet_shards.py): in split order,
resumable by footer row counts, an unreadable shard one `bad_metadata` reject.
A row without audio bytes, or whose named file is not there, is
`missing_audio`; a path leading out of the source's root is `path_escape`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from qwen_train.bundle.paths import PathEscape
from qwen_train.prepare import parquet_shards
from qwen_train.prepare.records import ImportReject, Item, SourceRow
from qwen_train.prepare.splits import names_of, select, split_of

# The ClassLabel names of google/fleurs's `gender` feature, in label order.
GENDERS = ("male", "female", "other")


def split_folders(known: Sequence[str]) -> frozenset[str]:
    """Folder names a shard of the parquet branch may sit in: every spelling of a known split."""
    return frozenset().union(*(names_of(s) for s in known))


def listed(lang: Path, known: Sequence[str]) -> list[Path]:
    """Shards directly in the language dir (the older converter) or in its split folders (the parquet branch).

    Other folders are not looked into: pointed at an export holding every
    language, only `sv_se` is read, never a neighbour's shards.
    """
    folders = split_folders(known)
    found = list(lang.glob("*.parquet"))
    found += [p for p in lang.glob("*/*.parquet") if p.parent.name.lower() in folders]
    return sorted(found)


def holds_shards(lang: Path, known: Sequence[str]) -> bool:
    return lang.is_dir() and bool(listed(lang, known))


def shard_splits(root: Path, lang: Path, wanted: list[str] | None, order: Sequence[str],
                 known: Sequence[str]) -> list[tuple[Path, str]]:
    """The shards `wanted` selects, each with its canonical split of `known`, in `order` then by path.

    Rows are numbered in this order, so it must not depend on the file system's.
    SplitSelectsNothing (naming every shard) when the filter picks none;
    ValueError for a shard whose folder or name carries no split, since its
    rows could not be named the way the TSV reader names them.
    """
    tagged: list[tuple[Path, str]] = []
    for shard in select(root, listed(lang, known), wanted, "fleurs"):
        split = split_of(shard.relative_to(lang), known)
        if split is None:
            raise ValueError(f"fleurs: {shard.relative_to(root)} names no split ({', '.join(known)}) in its folder "
                             "or file name; keep the export's names (sv_se/validation/0000.parquet)")
        if split in order:
            tagged.append((shard, split))
    return sorted(tagged, key=lambda t: (list(order).index(t[1]), t[0]))


def count(root: Path, shards: list[tuple[Path, str]]) -> int:
    return parquet_shards.count(parquet_shards.base_of(root), [s for s, _ in shards])


def rows(root: Path, shards: list[tuple[Path, str]], start: int) -> Iterator[Item]:
    """Every chosen shard's rows from `start` on; paths must stay inside `root`, the source's path."""
    split_by_shard = dict(shards)
    make = partial(_item, base=parquet_shards.base_of(root), split_by_shard=split_by_shard)
    yield from parquet_shards.walk(root, [s for s, _ in shards], start, make)


def wav_stem(rec: dict[str, Any], shard: Path, index: int) -> str:
    """The recording's wav stem, as the TSV names it: from `path`, else the audio struct's path."""
    audio = rec.get("audio")
    for named in (rec.get("path"), audio.get("path") if isinstance(audio, dict) else None):
        if isinstance(named, str) and Path(named).stem:
            return Path(named).stem
    return f"{shard.stem}-{index}"


def gender_of(value: Any) -> str:
    """The class label's name (the TSV's word, lower-cased); an unknown label stays its number."""
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, int):
        return GENDERS[value] if 0 <= value < len(GENDERS) else str(value)
    return str(value).strip().lower()


def _item(n: int, rec: dict[str, Any], shard: Path, index: int, rel: str, *, base: Path,
          split_by_shard: dict[Path, str]) -> Item:
    split = split_by_shard[shard]
    stem = wav_stem(rec, shard, index)
    orig_id, where = f"{split}/{stem}", f"{rel} row {index}"
    text = rec.get("raw_transcription")
    if not isinstance(text, str):
        return ImportReject(n, orig_id, "bad_metadata", f"{where}: no raw_transcription")
    try:
        ref = parquet_shards.audio_ref(base, shard, rec)
    except PathEscape as exc:
        return ImportReject(n, orig_id, "path_escape", f"{where}: {exc}: refused, a corpus stays inside its root")
    if ref is None:
        return ImportReject(n, orig_id, "missing_audio", f"{where}: no audio bytes or path")
    if ref.kind == "file" and not Path(ref.path).exists():
        return ImportReject(n, orig_id, "missing_audio", f"{where}: no audio bytes, and {Path(ref.path).name} "
                            "is not there")
    sentence = rec.get("id")
    return SourceRow(
        n=n,
        orig_id=orig_id,
        speaker=f"{split}-{stem}",
        text=text,
        audio=ref,
        meta={"split": split, "sentence_id": "" if sentence is None else str(sentence),
              "gender": gender_of(rec.get("gender"))},
    )
