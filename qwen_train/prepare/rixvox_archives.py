"""KBLab/rixvox as KBLab publishes it: per-split metadata parquet joined to tar.gz archives of WAVs.

RixVox v1 is a loading-script dataset, so the Hub has no parquet export of its
audio. A user has `data/{split}_metadata.parquet` (one row per observation, no
audio) and `data/{split}/{split}_{n}.tar.gz`, whose members are 16 kHz mono WAVs
named exactly by the metadata's `filename` column
(`GR01KRU1/2442210220028627521_anf5_1_27.wav`). The loading script pairs them
by that name; so do we, without extracting anything to disk and without
holding an archive in memory: each archive is streamed once, in member order,
and a member's bytes go straight to the row that names it.

Row order, per split: the archives in numeric order, their members in archive
order; then the metadata rows no archive held, in metadata order, read from
the archives already extracted in place (`data/{split}/{filename}`) or rejected
`missing_audio` naming the archives looked in. So a split always yields exactly
its metadata's row count, which is what `count` reports from the parquet
footer. A member no metadata row names is not a row: it is counted in the
bundle's stats (`notes`).

The speaker is the Riksdag person id `intressent_id`; rows without one fall back
to `speaker_from_id` when it holds an id rather than the published boolean flag
(KBLab's card: whether the name was taken from the id), else the speaker's
name. `start`/`end`/`duration`/`bleu_score` and the speaker's metadata are kept
as row metadata; a row under the source's `bleu_score` floor is `low_alignment`.
A resumed window skips whole splits by their row count and whole archives by
their listing in the work dir (archive_index.py); inside the archive it stopped
in, it streams past the members it already took without reading them out.
"""

from __future__ import annotations

import datetime
import re
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pyarrow.parquet as pq

from qwen_train.bundle.paths import PathEscape, resolve_inside
from qwen_train.prepare import archive_index, parquet_shards
from qwen_train.prepare.audio import AUDIO_LIMIT
from qwen_train.prepare.records import AudioRef, ImportReject, Item, Meta, SourceRow
from qwen_train.prepare.spec import SourceSpec
from qwen_train.prepare.splits import select

METADATA = "_metadata.parquet"
REQUIRED = ("filename", "text")
KEPT = ("start", "end", "duration", "bleu_score", "speaker", "name", "party", "gender", "birth_year",
        "electoral_district", "district", "speaker_from_id", "dokid", "anforande_nummer", "observation_nr",
        "debatedate")
_NUMBER = re.compile(r"(\d+)")
SHOWN = 3


def metadata_files(src: SourceSpec) -> list[Path]:
    """The `{split}_metadata.parquet` files of the source (a file, or a tree holding them), split-filtered."""
    root = Path(src.path)
    return select(root, _found(root), src.splits, f"rixvox {root}")


def _found(root: Path) -> list[Path]:
    """Metadata files where KBLab puts them: in `data/`, the source's path being `data/` or the repo root.

    Not a recursive search: a train split extracted in place is a million files to walk on every count.
    """
    if root.is_file():
        return [root] if root.name.endswith(METADATA) else []
    return sorted([*root.glob("*" + METADATA), *root.glob("data/*" + METADATA)])


def is_published_layout(src: SourceSpec) -> bool:
    return bool(_found(Path(src.path)))


def _rows_in(path: Path) -> int | None:
    """The metadata's row count from its footer, or None when it is unreadable or lacks the join columns.

    A FIFO or a symlink out of `data/` is never opened (shard_problem): the parquet reader would block or
    read another tree.
    """
    if parquet_shards.shard_problem(path.parent, path) is not None:
        return None
    try:
        schema = pq.read_schema(path)
        return int(pq.ParquetFile(path).metadata.num_rows) if all(c in schema.names for c in REQUIRED) else None
    except Exception:  # noqa: BLE001 - any unreadable footer makes the file one reject
        return None


def count(src: SourceSpec, work: Path) -> int:
    return sum(_rows_in(m) or 1 for m in metadata_files(src))


def _natural(path: Path) -> tuple[Any, ...]:
    return tuple(int(p) if p.isdigit() else p for p in _NUMBER.split(path.name))


def _scalar(value: Any) -> str | int | float | bool:
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    return str(value)


def _flag(value: Any) -> bool:
    return isinstance(value, bool) or str(value).strip().lower() in ("true", "false", "0", "1")


def speaker_of(rec: dict[str, Any]) -> str | None:
    """The person id; an id-valued `speaker_from_id`; the name. None when the row names no one."""
    for key in ("intressent_id", "speaker_from_id", "speaker"):
        value = rec.get(key)
        if value is None or (key == "speaker_from_id" and _flag(value)):
            continue
        text = str(value).strip()
        if text:
            return text
    return None


def row_meta(rec: dict[str, Any]) -> Meta:
    """The publisher's facts about a row worth keeping in the manifest (times, alignment score, speaker)."""
    return {k: _scalar(v) for k in KEPT if (v := rec.get(k)) is not None}


def low_alignment(n: int, orig_id: str, rec: dict[str, Any], floor: float, where: str) -> ImportReject | None:
    """`low_alignment` for a row whose published bleu_score is under the source's floor, else None."""
    bleu = rec.get("bleu_score")
    if isinstance(bleu, (int, float)) and not isinstance(bleu, bool) and bleu < floor:
        return ImportReject(n, orig_id, "low_alignment", f"{where}: bleu_score {bleu:.3f} is under min_bleu_score "
                            f"{floor}: the protocol text and the audio disagree")
    return None


@dataclass
class _Cursor:
    """Where a split's walk is: the next row number, and which metadata rows an archive member has claimed."""

    n: int
    claimed: set[int] = field(default_factory=set)


class SplitWalk:
    """One split: its metadata, its archives, and the rows they make from `start` on."""

    def __init__(self, src: SourceSpec, work: Path, meta_path: Path) -> None:
        self.src, self.work, self.meta_path = src, work, meta_path
        self.split = meta_path.name[: -len(METADATA)]
        self.base = meta_path.parent  # data/: archives, extracted members and the metadata stay inside it
        table = pq.read_table(meta_path).combine_chunks()
        self.columns = {c: table.column(c) for c in table.column_names if c in (*REQUIRED, *KEPT, "intressent_id")}
        self.names = [str(x) for x in table.column("filename").to_pylist()]
        self.by_name: dict[str, int] = {}
        for i, name in enumerate(self.names):
            self.by_name.setdefault(name, i)
        self.damage: dict[str, str] = {}

    def archives(self) -> list[Path]:
        folder = self.base / self.split
        return sorted(folder.glob("*.tar.gz"), key=_natural) if folder.is_dir() else []

    def rel(self, path: Path) -> str:
        return str(path.relative_to(self.base))

    def record(self, i: int) -> dict[str, Any]:
        return {c: col[i].as_py() for c, col in self.columns.items()}

    def rows(self, n0: int, start: int) -> Iterator[Item]:
        cur = _Cursor(n0)
        for archive in self.archives():
            yield from self._archive(archive, cur, start)
        for i in range(len(self.names)):
            if i in cur.claimed:
                continue
            n, cur.n = cur.n, cur.n + 1
            if n >= start:
                yield self._unarchived(n, i)

    def _archive(self, archive: Path, cur: _Cursor, start: int) -> Iterator[Item]:
        rel = self.rel(archive)
        listing = archive_index.load(self.work, self.src.label, rel, archive)
        if listing is not None:
            held = self._claimable(listing.members, cur.claimed)
            if cur.n + len(held) <= start:  # every row it holds is journaled: skip it unopened
                cur.claimed.update(held)
                cur.n += len(held)
                if listing.damaged:
                    self.damage[rel] = listing.damaged
                return
        yield from self._stream(archive, rel, cur, start)

    def _claimable(self, members: list[str], claimed: set[int]) -> list[int]:
        out: list[int] = []
        seen = set(claimed)
        for name in members:
            i = self.by_name.get(name)
            if i is not None and i not in seen:
                seen.add(i)
                out.append(i)
        return out

    def _stream(self, archive: Path, rel: str, cur: _Cursor, start: int) -> Iterator[Item]:
        members: list[str] = []
        damaged: str | None = None
        try:
            real = resolve_inside(self.base, archive)
            if not real.is_file():  # a FIFO would block the reader
                raise tarfile.ReadError("not a regular file")
            with real.open("rb") as raw, tarfile.open(fileobj=raw, mode="r|gz") as tar:
                for member in tar:
                    if not member.isfile():
                        continue
                    i = self.by_name.get(member.name)
                    if i is None or i in cur.claimed:
                        members.append(member.name)
                        continue
                    if cur.n < start:  # a row already journaled: advance past it without reading it out
                        members.append(member.name)
                        cur.claimed.add(i)
                        cur.n += 1
                        continue
                    item = self._member(cur.n, i, tar, member, rel)
                    members.append(member.name)
                    cur.claimed.add(i)
                    cur.n += 1
                    yield item
        except PathEscape as exc:
            damaged = f"{rel}: {exc}: refused, a corpus stays inside its root"
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            damaged = f"{rel} could not be read past its member {len(members)} ({exc}): re-download it"
        if damaged:
            self.damage[rel] = damaged
        archive_index.save(self.work, self.src.label, rel, archive, members, damaged)

    def _member(self, n: int, i: int, tar: tarfile.TarFile, member: tarfile.TarInfo, rel: str) -> Item:
        if member.size > AUDIO_LIMIT:
            return ImportReject(n, self._orig_id(i), "decode_error",
                                f"{rel}: member {member.name} is {member.size} bytes, more than any clip: refused")
        verdict = self._reject_early(n, i)
        if verdict is not None:
            return verdict
        handle: IO[bytes] | None = tar.extractfile(member)
        data = handle.read() if handle is not None else b""  # a read error is the archive's damage (caller)
        return self._row(n, i, AudioRef("bytes", data=data))

    def _unarchived(self, n: int, i: int) -> Item:
        """A metadata row no archive held: its extracted file, or missing_audio naming where we looked."""
        name = self.names[i]
        early = self._reject_early(n, i)
        if early is not None:
            return early
        try:
            path = resolve_inside(self.base, Path(self.split) / name)
        except PathEscape as exc:
            return ImportReject(n, self._orig_id(i), "path_escape", f"{self.split}/{name}: {exc}: refused")
        if path.is_file():
            return self._row(n, i, AudioRef("file", str(path)))
        return ImportReject(n, self._orig_id(i), "missing_audio", self._looked_in(name))

    def _looked_in(self, name: str) -> str:
        archives = [self.rel(a) for a in self.archives()]
        shown = ", ".join(archives[:SHOWN]) + (f" and {len(archives) - SHOWN} more" if len(archives) > SHOWN else "")
        where = f"none of the {len(archives)} archive(s) {shown}" if archives else f"no archive ({self.split}/*.tar.gz)"
        damage = "".join(f"; {d}" for d in self.damage.values())
        return (f"{self.meta_path.name} names {name}, which is in {where} and not extracted at "
                f"{self.split}/{name}{damage}; download the split's archives beside the metadata")

    def _orig_id(self, i: int) -> str:
        return self.names[i].removesuffix(".wav")

    def _reject_early(self, n: int, i: int) -> ImportReject | None:
        """Rows refused on their metadata alone, before any audio is read."""
        rec = self.record(i)
        where = f"{self.meta_path.name} row {i}"
        if speaker_of(rec) is None:
            return ImportReject(n, self._orig_id(i), "bad_metadata",
                                f"{where}: no speaker (intressent_id, speaker_from_id or speaker)")
        return low_alignment(n, self._orig_id(i), rec, self.src.bleu_floor, where)

    def _row(self, n: int, i: int, audio: AudioRef) -> SourceRow:
        rec = self.record(i)
        meta = row_meta(rec)
        meta["split"] = self.split
        text = "" if rec.get("text") is None else str(rec["text"]).strip()
        return SourceRow(n=n, orig_id=self._orig_id(i), speaker=speaker_of(rec) or "", text=text, audio=audio,
                         meta=meta)


def rows(src: SourceSpec, work: Path, start: int = 0) -> Iterator[Item]:
    n = 0
    for meta_path in metadata_files(src):
        total = _rows_in(meta_path)
        if total is None:
            if n >= start:
                reason, detail = parquet_shards.shard_problem(meta_path.parent, meta_path) or (
                    "bad_metadata", f"not a readable RixVox metadata parquet (needs columns {', '.join(REQUIRED)}); "
                    "re-download it")
                yield ImportReject(n, meta_path.name, reason, f"{meta_path.name}: {detail}")
            n += 1
            continue
        if n + total > start:
            yield from SplitWalk(src, work, meta_path).rows(n, start)
        n += total


def notes(src: SourceSpec, work: Path) -> dict[str, int]:
    """Archive facts for the bundle's stats: members no metadata row names, duplicates, damaged archives."""
    out = {"archives": 0, "archive_members": 0, "members_without_metadata": 0, "duplicate_members": 0,
           "damaged_archives": 0, "unlisted_archives": 0}
    for meta_path in metadata_files(src):
        if _rows_in(meta_path) is None:
            continue
        names = set(pq.read_table(meta_path, columns=["filename"]).column("filename").to_pylist())
        walk_base, split = meta_path.parent, meta_path.name[: -len(METADATA)]
        folder = walk_base / split
        seen: set[str] = set()
        for archive in sorted(folder.glob("*.tar.gz"), key=_natural) if folder.is_dir() else []:
            out["archives"] += 1
            listing = archive_index.load(work, src.label, str(archive.relative_to(walk_base)), archive)
            if listing is None:
                out["unlisted_archives"] += 1
                continue
            out["damaged_archives"] += listing.damaged is not None
            for member in listing.members:
                out["archive_members"] += 1
                out["members_without_metadata"] += member not in names
                out["duplicate_members"] += member in names and member in seen
                seen.add(member)
    return out

