"""One `prepare` window over a few sources, in this process: the harness the importer tests share.

Entries are returned as read back from the journal file, so what a test sees is what a resumed
window and the bundle see (a row's `meta` included), not the objects the window held in memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qwen_train.prepare.journal import Journal, read_journal
from qwen_train.prepare.records import Processed
from qwen_train.prepare.spec import PrepareSpec, SourceSpec, validate_prepare_spec
from qwen_train.prepare.window import WindowResult, count_rows, run_window


def window_spec(tmp: Path, *sources: SourceSpec, **over: Any) -> PrepareSpec:
    """A validated spec whose bundle and work dir lie under `tmp`; `over` sets any other field."""
    return validate_prepare_spec(PrepareSpec(name="t", out=str(tmp / "out"), model="unused", sources=list(sources),
                                             work_dir=str(tmp / "work"), **over))


def run_once(spec: PrepareSpec) -> tuple[WindowResult, list[Processed]]:
    """One window from the journal's cursor; every entry journaled so far, read back from the file."""
    work = Path(spec.work_dir or "")
    journal = Journal(work)
    result = run_window(spec, journal, count_rows(spec))
    journal.close()
    return result, read_journal(work)[0].entries


def run_whole(tmp: Path, source: SourceSpec) -> tuple[dict[str, Processed], PrepareSpec]:
    """Every row of one source in one window, keyed by orig_id (a repeated id as `id#dup`)."""
    spec = window_spec(tmp, source)
    result, journaled = run_once(spec)
    assert result.complete and result.journaled == count_rows(spec) == len(journaled), result
    entries: dict[str, Processed] = {}
    for e in journaled:
        entries[e.orig_id + ("#dup" if e.orig_id in entries else "")] = e
    return entries, spec
