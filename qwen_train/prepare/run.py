"""`qwen-train prepare SPEC`: the window, the codes, the bundle, under one heartbeat.

The same status.json contract as training (run id, nonce, pid, state, step,
throughput, message), so the daemon can run a `preprocess` job like a run and
the dashboard can show it: state `preparing` while working, `stopped` when a
bound or SIGTERM ended the window (run again to continue, exit code STOPPED),
`completed` with the fingerprint, or `failed` with the reason.

The work dir is locked (one prepare at a time) and remembers the spec it was
started with: resuming under a spec that changes what rows mean (sources,
limits, seed, shares, splits, batch size) would mix two bundles, so it is
refused with a message saying what to do. Bounds and workers may change.
"""

from __future__ import annotations

import fcntl
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import msgspec
from tqdm import tqdm

from qwen_train import exitcodes
from qwen_train.atomic import atomic_write_bytes
from qwen_train.bundle.fingerprint import verify_bundle
from qwen_train.bundle.manifest import BUNDLE_JSON, BundleError
from qwen_train.prepare.journal import Journal
from qwen_train.prepare.process import stored_wav
from qwen_train.prepare.records import Processed
from qwen_train.prepare.reject_summary import journal_path, no_rows_message
from qwen_train.prepare.select import check_eval_split, select
from qwen_train.prepare.spec import PrepareSpec, encode_prepare_spec
from qwen_train.prepare.window import audio_root, count_rows, run_window, source_notes
from qwen_train.safe_read import MiB, read_regular
from qwen_train.spec import Lane
from qwen_train.status import Throughput
from qwen_train.train.heartbeat import Heartbeat

SPEC_COPY = "prepare_spec.json"
SPEC_COPY_LIMIT = 16 * MiB
BEAT_EVERY_S = 1.0


class PrepareError(RuntimeError):
    """Preparation cannot go on; the message says why and what to do."""


class Outcome(msgspec.Struct, frozen=True):
    code: int
    state: str
    message: str
    fingerprint: str | None = None
    rows_done: int | None = None  # the final heartbeat's step: the rate-limited one may lag behind


def identity(spec: PrepareSpec) -> bytes:
    """The parts of a spec that decide the bundle's content (bounds, workers, device do not)."""
    return encode_prepare_spec(_content(spec))


def _content(spec: PrepareSpec) -> PrepareSpec:
    return msgspec.structs.replace(spec, max_rows=None, max_seconds=None, workers=1, device="auto", name="x")


def _same_content(stored: bytes, spec: PrepareSpec) -> bool:
    """Compared as specs, not bytes: a copy written before a field was added reads back with its default,
    so a work dir started by an older version resumes unless the spec really changed."""
    try:
        return msgspec.json.decode(stored, type=PrepareSpec) == _content(spec)
    except msgspec.MsgspecError:
        return False


@contextmanager
def work_lock(work: Path) -> Iterator[None]:
    work.mkdir(parents=True, exist_ok=True)
    with (work / ".lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PrepareError(f"another prepare is running on {work}; wait for it or stop it") from None
        yield


def _check_spec(spec: PrepareSpec, work: Path) -> None:
    copy = work / SPEC_COPY
    if copy.exists() and not _same_content(read_regular(copy, SPEC_COPY_LIMIT, what="work dir spec", nofollow=True),
                                           spec):
        raise PrepareError(
            f"{work} was started with a different spec (sources, limits, seed, shares, splits or batch size); "
            f"resume with the original spec, or choose a new work_dir/out to start over"
        )
    if not copy.exists():
        atomic_write_bytes(copy, identity(spec))


class _Beat:
    """Rate-limited heartbeat plus a progress bar for the row window."""

    def __init__(self, heartbeat: Heartbeat | None, total: int, done: int) -> None:
        self.hb = heartbeat
        self.total = total
        self.start_done = done
        self.started = time.monotonic()
        self.last = 0.0
        self.audio_s = 0.0
        self.rejected = 0
        self.bar = tqdm(total=total, initial=done, desc="validate+resample", unit="row", file=sys.stderr,
                        dynamic_ncols=True, mininterval=1.0)

    def row(self, done: int, total: int, entry: Processed) -> None:
        self.bar.update(1)
        self.audio_s += entry.duration_s
        self.rejected += entry.reason is not None
        now = time.monotonic()
        if now - self.last >= BEAT_EVERY_S or done == total:
            self.last = now
            elapsed = max(now - self.started, 1e-6)
            rate = (done - self.start_done) / elapsed
            eta = (total - done) / rate if rate > 0 else 0.0
            self.update(done, f"validate+resample {done}/{total} rows, {self.rejected} rejected this window, "
                              f"{rate:.1f} rows/s, ETA {eta:.0f} s", rate, self.audio_s * 12.5 / elapsed)

    def phase(self, message: str) -> None:
        """A long step between two rows (a recording's VAD pass, a Whisper batch): said, rate-limited, so the
        heartbeat keeps beating and the dashboard shows what the window is doing."""
        now = time.monotonic()
        if now - self.last >= BEAT_EVERY_S:
            self.last = now
            self.update(self.bar.n, message, 0.0, 0.0)

    def codes(self, done: int, total: int, per_batch: float) -> None:
        self.update(self.total, f"codes {done}/{total} batches, ETA {(total - done) * per_batch:.0f} s", 0.0, 0.0)

    def update(self, step: int, message: str, rows_s: float, frames_s: float) -> None:
        if self.hb is not None:
            self.hb.update(state="preparing", step=step, max_steps=self.total, message=message,
                           throughput=Throughput(steps_per_s=rows_s, frames_per_s=frames_s))

    def close(self) -> None:
        self.bar.close()


def prepare(
    spec: PrepareSpec,
    heartbeat: Heartbeat | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    lane: Lane | None = None,
) -> Outcome:
    """Run one window (and, once every row is journaled, codes and the bundle).

    `lane` is the request lane the bundle is for: its split policy is checked before codes are extracted.
    """
    from qwen_train.prepare.assemble import assemble
    from qwen_train.prepare.codes import CodeCache, extract_codes

    out, work = Path(spec.out), Path(spec.work_dir or spec.out + ".work")
    if (out / BUNDLE_JSON).exists():
        fingerprint = verify_bundle(out)
        return Outcome(exitcodes.COMPLETED, "completed", f"bundle {out} is already built and intact", fingerprint)
    deadline = time.monotonic() + spec.max_seconds if spec.max_seconds else None
    with work_lock(work):
        _check_spec(spec, work)
        journal = Journal(work)
        total = count_rows(spec)
        beat = _Beat(heartbeat, total, journal.state.rows)
        try:
            beat.update(journal.state.rows, f"validate+resample from row {journal.state.rows}/{total}", 0.0, 0.0)
            result = run_window(spec, journal, total, should_stop, beat.row, beat.phase)
        finally:
            journal.close()
            beat.close()
        if not result.complete:
            return Outcome(exitcodes.STOPPED, "stopped",
                           f"window ended ({result.stop_reason}) after {result.rows_this_window} rows; "
                           f"{result.journaled}/{total} rows done; run the same command again to continue",
                           rows_done=result.journaled)
        selection = select(spec, journal.state.entries)
        if not selection.rows:  # said before the model's tokenizer is hashed for a cache that would stay empty
            raise BundleError(no_rows_message(selection.rejects, sum(selection.unselected.values()),
                                              journal_path(spec)))
        note = check_eval_split(selection, lane)
        clips = {s.entry.audio_sha or "": s.entry.duration_s for s in selection.rows}
        cache = CodeCache(work, Path(spec.model))
        audio_dir = audio_root(spec)

        def wav_path(sha: str) -> Path:
            return stored_wav(audio_dir, sha)

        if not extract_codes(clips, wav_path, cache, Path(spec.model), batch_size=spec.batch_size,
                             device=spec.device, deadline=deadline, should_stop=should_stop, progress=beat.codes):
            return Outcome(exitcodes.STOPPED, "stopped",
                           "window ended during code extraction (cached codes are kept); run again to continue")
        imported = {s.label: journal.state.ended.get(s.label, 0) for s in spec.sources}
        path, fingerprint = assemble(spec, selection, imported, cache, wav_path, source_notes(spec))
        rows = len(selection.rows)
        return Outcome(exitcodes.COMPLETED, "completed",
                       f"bundle {path}: {rows} rows, {len(selection.rejects)} rejected; fingerprint {fingerprint}"
                       + (f"; {note}" if note else ""), fingerprint)


def run_prepare(spec: PrepareSpec, run_dir: Path, run_id: str, nonce: str, lane: Lane | None = None) -> int:
    """CLI entry: heartbeat in run_dir, SIGTERM finishes the row in hand and stops cleanly."""
    run_dir.mkdir(parents=True, exist_ok=True)
    heartbeat = Heartbeat(run_dir, run_id, nonce, max_steps=0)
    heartbeat.state("starting", f"prepare {spec.name}: {len(spec.sources)} source(s) -> {spec.out}")
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        outcome = prepare(spec, heartbeat, stop.is_set, lane)
    except (PrepareError, FileNotFoundError, ValueError, OSError) as exc:
        heartbeat.state("failed", str(exc))
        print(f"qwen-train prepare: {exc}", file=sys.stderr)
        return exitcodes.FAILED
    finally:
        signal.signal(signal.SIGTERM, previous)
    final_step = outcome.rows_done if outcome.rows_done is not None else heartbeat.status.step
    heartbeat.update(state=outcome.state, message=outcome.message, step=final_step)
    heartbeat.event("prepare", outcome.message)
    print(outcome.message, file=sys.stderr if outcome.code else sys.stdout)
    return outcome.code
