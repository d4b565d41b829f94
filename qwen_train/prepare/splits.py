"""Which of a corpus's files belong to the splits a source asks for.

Publishers put the split in a folder (`data/train/0000.parquet`, FLEURS's
`sv_se/validation/0000.parquet`) or in the file name: Hub shards pushed by
`datasets` (`train-00000-of-00002.parquet`), RixVox's metadata and archives
(`train_metadata.parquet`, `train_3.tar.gz`), FLEURS's older parquet converter
(`fleurs-train-00000-of-00001.parquet`). A file belongs to split `s` when a
folder below the source's root is named `s`, or when `s` is one of the words
of its file name split at `-`, `_` and `.`. `validation` and `dev` are one
split (FLEURS's TSVs say `dev`, its parquet export `validation`).

A split filter that selects no file is an error naming the files it saw: an
empty source would otherwise surface much later as "0 speakers".
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

ALIASES: dict[str, frozenset[str]] = {
    "dev": frozenset({"dev", "validation", "valid"}),
    "validation": frozenset({"dev", "validation", "valid"}),
    "valid": frozenset({"dev", "validation", "valid"}),
}
_WORD = re.compile(r"[-_.]")
SHOWN = 8


class SplitSelectsNothing(ValueError):
    """A `splits` filter matched none of the source's files; the message lists what was there."""


def names_of(split: str) -> frozenset[str]:
    """The spellings of one split (`dev` is also `validation`)."""
    return ALIASES.get(split.lower(), frozenset({split.lower()}))


def words(rel: Path) -> set[str]:
    """The folder names and file-name words that can name a split, lower-cased."""
    found = {part.lower() for part in rel.parts[:-1]}
    found.update(w.lower() for w in _WORD.split(rel.name) if w)
    return found


def split_of(rel: Path, known: Iterable[str]) -> str | None:
    """The first of `known` that this file belongs to, or None."""
    found = words(rel)
    return next((s for s in known if names_of(s) & found), None)


def matches(rel: Path, wanted: Iterable[str]) -> bool:
    found = words(rel)
    return any(names_of(s) & found for s in wanted)


def select(root: Path, files: list[Path], wanted: list[str] | None, what: str) -> list[Path]:
    """The files under `root` that belong to `wanted` (every file when no filter); SplitSelectsNothing if none."""
    if not wanted:
        return files
    chosen = [f for f in files if matches(f.relative_to(root) if f != root else Path(f.name), wanted)]
    if not chosen and files:
        seen = [str(f.relative_to(root)) if f != root else f.name for f in files]
        more = f" and {len(seen) - SHOWN} more" if len(seen) > SHOWN else ""
        raise SplitSelectsNothing(
            f"{what}: splits {wanted} select none of the {len(seen)} file(s) under {root} "
            f"({', '.join(seen[:SHOWN])}{more}); a split is a folder name or a word of the file name "
            "(train-00000-of-00002.parquet, train_metadata.parquet): fix `splits` or the source's path"
        )
    return chosen
