"""The append-only journal: the single record of which rows are done.

One JSON line per row outcome (accepted or rejected) plus one end marker per
source. A row counts as processed exactly when its line is in the journal, so
a resume never does a row twice and never skips one. A kill can leave a torn
last line; `open_journal` cuts the file back to the last whole line before
appending. Lines are fsynced in small groups: after a power cut the unsynced
tail is simply redone (its wav files are content-addressed, so identical).
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import msgspec

from qwen_train.prepare.records import Processed, SourceEnd
from qwen_train.safe_read import MiB, read_regular

JOURNAL = "journal.jsonl"
JOURNAL_LIMIT = 4096 * MiB  # ~300 bytes a row: more rows than any corpus here has
SYNC_EVERY = 32

Entry = Processed | SourceEnd
_decoder = msgspec.json.Decoder(Entry)


@dataclass
class JournalState:
    """What the journal says is done: rows per source, finished sources, ids seen."""

    done: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    ended: dict[str, int] = field(default_factory=dict)
    seen: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    entries: list[Processed] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(self.done.values())

    def add(self, entry: Entry) -> None:
        if isinstance(entry, SourceEnd):
            self.ended[entry.source] = entry.rows
            return
        expected = self.done[entry.source]
        if entry.n != expected:
            raise JournalError(f"journal row {entry.source}#{entry.n} follows #{expected - 1}: the journal is corrupt")
        self.done[entry.source] = expected + 1
        self.seen[entry.source].add(entry.orig_id)
        self.entries.append(entry)


class JournalError(RuntimeError):
    """A journal that contradicts itself; delete the work dir to start over."""


def read_journal(work: Path) -> tuple[JournalState, int]:
    """State from every whole line, and the byte length of those lines."""
    state = JournalState()
    path = work / JOURNAL
    if not path.exists():
        return state, 0
    raw = read_regular(path, JOURNAL_LIMIT, what="prepare journal", nofollow=True)  # UnsafeFile names it
    good = 0
    for line in raw.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        try:
            entry = _decoder.decode(line)
        except msgspec.MsgspecError:
            break
        state.add(entry)
        good += len(line)
    return state, good


class Journal:
    """Appends entries; the caller holds the only writer (one prepare per work dir)."""

    def __init__(self, work: Path) -> None:
        work.mkdir(parents=True, exist_ok=True)
        self.state, good = read_journal(work)
        path = work / JOURNAL
        self._handle: BinaryIO = path.open("ab")
        if self._handle.tell() != good:
            self._handle.truncate(good)
            self._handle.seek(good)
        self._unsynced = 0

    def append(self, entry: Entry) -> None:
        self.state.add(entry)
        self._handle.write(msgspec.json.encode(entry) + b"\n")
        self._handle.flush()
        self._unsynced += 1
        if self._unsynced >= SYNC_EVERY or isinstance(entry, SourceEnd):
            self.sync()

    def sync(self) -> None:
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._unsynced = 0

    def close(self) -> None:
        self.sync()
        self._handle.close()
