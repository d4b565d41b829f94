"""What a streamed `tar.gz` held, remembered in the work dir so a resumed window need not read it again.

A gzip stream has no random access: to reach member k one decompresses
everything before it. RixVox's train split is hundreds of GB in archives, so a
resumed `prepare` must not stream every archive it already took. Each archive
that has been read to its end leaves a listing here (its regular members'
names in order, and whether it ended in damage); a later window counts its
rows from the listing and skips the archive unopened. Only the archive it
stopped inside is streamed again, up to the stopping point: that is the seek
cost of a resume (bench/prepare_archives.py measures it).

A listing is keyed by the archive's path, size and mtime: an archive replaced
or re-downloaded is read afresh. Listings are written atomically; a missing or
unreadable one only costs a re-read.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import msgspec

from qwen_train.atomic import atomic_write_bytes
from qwen_train.safe_read import MiB, read_regular

INDEX_DIR = "archive-index"
LISTING_LIMIT = 256 * MiB  # ~60 bytes a member name: millions of members


class Listing(msgspec.Struct, frozen=True):
    archive: str
    size: int
    mtime_ns: int
    members: list[str]
    damaged: str | None = None  # why reading stopped early (a cut-short download), after the members listed


def _key(archive: Path) -> tuple[int, int]:
    stat = archive.stat()
    return stat.st_size, stat.st_mtime_ns


def _path(work: Path, label: str, rel: str) -> Path:
    return work / INDEX_DIR / label / (hashlib.sha256(rel.encode()).hexdigest()[:32] + ".json")


def load(work: Path, label: str, rel: str, archive: Path) -> Listing | None:
    """The listing of `archive` if one was written for this very file, else None."""
    path = _path(work, label, rel)
    try:
        listing = msgspec.json.decode(read_regular(path, LISTING_LIMIT, what="archive listing", nofollow=True),
                                      type=Listing)
    except (OSError, ValueError, msgspec.MsgspecError):
        return None
    size, mtime = _key(archive)
    return listing if (listing.archive, listing.size, listing.mtime_ns) == (rel, size, mtime) else None


def save(work: Path, label: str, rel: str, archive: Path, members: list[str], damaged: str | None) -> None:
    size, mtime = _key(archive)
    listing = Listing(archive=rel, size=size, mtime_ns=mtime, members=members, damaged=damaged)
    path = _path(work, label, rel)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, msgspec.json.encode(listing), durable=False)
