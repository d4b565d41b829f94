"""The long part: every source row through decode/validate/resample, resumable and bounded.

Sources are walked in spec order, rows in each importer's deterministic order,
starting at the journal's cursor. A window ends when every row is journaled,
or at a bound (`max_rows` rows this window, `max_seconds` of wall time, or a
stop request such as SIGTERM): the row in hand is finished and journaled, and
the next window starts right after it. With `workers > 1` rows are decoded in
worker processes but journaled in order by this process, so the journal is the
same whatever the parallelism.
"""

from __future__ import annotations

import multiprocessing
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from qwen_train.prepare import fleurs, recordings, rixvox, upstream_jsonl, waxholm
from qwen_train.prepare.journal import Journal
from qwen_train.prepare.process import process_row
from qwen_train.prepare.records import ImportReject, Item, Processed, SourceEnd, SourceRow
from qwen_train.prepare.spec import PrepareSpec, SourceSpec

IMPORTERS: dict[str, ModuleType] = {
    "rixvox": rixvox,
    "fleurs": fleurs,
    "waxholm": waxholm,
    "upstream_jsonl": upstream_jsonl,
    "recordings": recordings,
}

Progress = Callable[[int, int, Processed], None]
Phase = Callable[[str], None]  # what a long step between two rows is doing (a recording's VAD pass, its ASR)


@dataclass
class WindowResult:
    complete: bool
    rows_this_window: int
    total_rows: int
    journaled: int
    stop_reason: str | None = None


def audio_root(spec: PrepareSpec) -> Path:
    return Path(spec.work_dir or spec.out + ".work") / "audio"


def count_rows(spec: PrepareSpec) -> int:
    work = Path(spec.work_dir or "")
    return sum(IMPORTERS[s.kind].count(s, work) for s in spec.sources)


def source_notes(spec: PrepareSpec) -> dict[str, dict[str, int]]:
    """Per source, what its layout held beyond rows (RixVox's archive members that no metadata row names)."""
    work = Path(spec.work_dir or "")
    out: dict[str, dict[str, int]] = {}
    for src in spec.sources:
        notes = getattr(IMPORTERS[src.kind], "notes", None)
        found = notes(src, work) if notes is not None else {}
        if found:
            out[src.label] = found
    return out


def _items(spec: PrepareSpec, src: SourceSpec, work: Path, start: int, phase: Phase | None) -> Iterator[Item]:
    if src.kind == "recordings":  # slices to the spec's duration limits, transcribes on the spec's device
        yield from recordings.rows(src, work, start, spec.limits, spec.device, note=phase)
        return
    yield from IMPORTERS[src.kind].rows(src, work, start)


class _Bound:
    def __init__(self, spec: PrepareSpec, should_stop: Callable[[], bool]) -> None:
        self.max_rows = spec.max_rows
        self.deadline = time.monotonic() + spec.max_seconds if spec.max_seconds else None
        self.should_stop = should_stop
        self.rows = 0

    def reason(self) -> str | None:
        if self.should_stop():
            return "stop requested"
        if self.max_rows is not None and self.rows >= self.max_rows:
            return f"max_rows={self.max_rows} reached"
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return "max_seconds reached"
        return None


def _reject_entry(source: str, item: ImportReject) -> Processed:
    return Processed(source=source, n=item.n, orig_id=item.orig_id, reason=item.reason, detail=item.detail)


def run_window(
    spec: PrepareSpec,
    journal: Journal,
    total_rows: int,
    should_stop: Callable[[], bool] = lambda: False,
    progress: Progress | None = None,
    phase: Phase | None = None,
) -> WindowResult:
    work = Path(spec.work_dir or "")
    audio_dir = audio_root(spec)
    bound = _Bound(spec, should_stop)
    pool = _pool(spec.workers)
    try:
        for src in spec.sources:
            if src.label in journal.state.ended:
                continue
            stop = _run_source(spec, src, work, audio_dir, journal, bound, pool, total_rows, progress, phase)
            if stop is not None:
                return WindowResult(False, bound.rows, total_rows, journal.state.rows, stop)
        return WindowResult(True, bound.rows, total_rows, journal.state.rows)
    finally:
        journal.sync()
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def _pool(workers: int) -> ProcessPoolExecutor | None:
    if workers <= 1:
        return None
    # spawn: the parent may hold torch threads; forking those can deadlock.
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))


def _run_source(
    spec: PrepareSpec,
    src: SourceSpec,
    work: Path,
    audio_dir: Path,
    journal: Journal,
    bound: _Bound,
    pool: ProcessPoolExecutor | None,
    total_rows: int,
    progress: Progress | None,
    phase: Phase | None = None,
) -> str | None:
    """Journal this source's rows from the cursor on; return why it stopped early, or None."""
    label = src.label
    seen = journal.state.seen[label]
    dispatched: set[str] = set()
    pending: deque[tuple[Item, bool, Future[Processed] | None]] = deque()
    ahead = 4 * spec.workers if pool is not None else 1

    def entry_for(item: Item, duplicate: bool, future: Future[Processed] | None) -> Processed:
        if isinstance(item, ImportReject):
            return _reject_entry(label, item)
        if duplicate:
            return Processed(source=label, n=item.n, orig_id=item.orig_id, speaker=item.speaker,
                             reason="duplicate_id", detail=f"id {item.orig_id!r} appeared earlier in {label}")
        if future is not None:
            return future.result()
        return process_row(label, item, spec.limits, audio_dir)

    def drain(keep: int) -> str | None:
        while len(pending) > keep:
            stop = bound.reason()
            if stop is not None:
                return stop
            entry = entry_for(*pending.popleft())
            journal.append(entry)
            bound.rows += 1
            if progress is not None:
                progress(journal.state.rows, total_rows, entry)
        return None

    for item in _items(spec, src, work, journal.state.done[label], phase):
        stop = drain(ahead - 1)
        if stop is not None:
            return stop
        duplicate = item.orig_id in seen or item.orig_id in dispatched
        dispatched.add(item.orig_id)
        future: Future[Processed] | None = None
        if pool is not None and isinstance(item, SourceRow) and not duplicate:
            future = pool.submit(process_row, label, item, spec.limits, audio_dir)
        pending.append((item, duplicate, future))
    stop = drain(0)
    if stop is not None:
        return stop
    journal.append(SourceEnd(source=label, rows=journal.state.done[label]))
    report = getattr(IMPORTERS[src.kind], "summary", None)
    if report is not None:  # recordings: hours in and kept, slices, rejects by reason, per speaker
        report(src, work, [e for e in journal.state.entries if e.source == label])
    return None
