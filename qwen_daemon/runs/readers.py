"""What the daemon reads from a run dir besides status.json: curves, diagnosis, log tail.

losses.jsonl grows by one line per optimizer step for as long as a run
lives (a week-long run: ~10^6 lines), and the dashboard asks for the curves
every few seconds, so it is read incrementally: per file (by inode) the
daemon keeps the parsed points in compact arrays and the byte offset it has
read to, and reads only what was appended since. A file that was replaced
or shrank (the trainer rewrites it atomically when it rolls back to a
checkpoint) is read again from the start. A last line without its newline
is a write in progress or a kill mid-write: it is left for the next read,
never an error. A line for a step at or before one already seen means the
steps after it were trained again: the older points from that step on go.

report.json and diagnosis.json are written atomically, so a malformed one is
a real problem and is named (FileProblem), never silently skipped.

Every file here is the trainer's, so none is opened as a plain open() would:
a FIFO, a device, a symlink or a file over its kind's bound is refused with a
FileProblem naming it (qwen_train.safe_read for whole files, safe_files for
losses.jsonl's offsets and the log's tail), and nothing is read in one piece
larger than READ_CHUNK.
"""

from __future__ import annotations

import os
import threading
from array import array
from bisect import bisect_left
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from qwen_daemon.protocol import EvalPoint, LossPoint, RunHistory
from qwen_daemon.runs.safe_files import open_regular, read_tail
from qwen_train.safe_read import MiB, UnsafeFile, decode_json, read_regular
from qwen_train.status import Diagnosis, EvalResult

LOSSES_FILE = "losses.jsonl"
REPORT_FILE = "report.json"
DIAGNOSIS_FILE = "diagnosis.json"
MAX_POINTS = 2000
MAX_CACHED = 32
LOG_TAIL_BYTES = 64 << 10
LOSSES_LIMIT = 256 * MiB  # ~2.5 million steps of ~100-byte lines; a week-long run has ~10^6
REPORT_LIMIT = 64 * MiB  # an eval every 100 steps, each with its per-split and per-speaker losses
DIAGNOSIS_LIMIT = 4 * MiB
READ_CHUNK = 8 * MiB


class FileProblem(Exception):
    """A run file that exists but cannot be used; the message names the file."""


class _LossLine(msgspec.Struct):
    step: int
    total: float
    talker: float
    code_predictor: float


class _Report(msgspec.Struct):
    evals: list[EvalResult] = []


_LINE = msgspec.json.Decoder(_LossLine)


@dataclass
class _Losses:
    """Parsed points of one losses.jsonl: steps ascending, values in parallel arrays."""

    identity: tuple[int, int]
    offset: int = 0
    steps: array[int] = field(default_factory=lambda: array("q"))
    values: tuple[array[float], array[float], array[float]] = field(
        default_factory=lambda: (array("d"), array("d"), array("d")))

    def add(self, line: _LossLine) -> None:
        if self.steps and line.step <= self.steps[-1]:
            cut = bisect_left(self.steps, line.step)
            del self.steps[cut:]
            for column in self.values:
                del column[cut:]
        self.steps.append(line.step)
        for column, value in zip(self.values, (line.total, line.talker, line.code_predictor), strict=True):
            column.append(value)

    def feed(self, data: bytes) -> None:
        """Parse complete lines; the offset moves past the last newline only."""
        end = data.rfind(b"\n")
        if end < 0:
            return
        for raw in data[:end].split(b"\n"):
            try:
                self.add(_LINE.decode(raw))
            except msgspec.MsgspecError:
                continue  # a line torn by a kill and then appended to, or a non-finite value (null)
        self.offset += end + 1


def _feed_from(fd: int, entry: _Losses, size: int) -> None:
    """Parse from the entry's offset to `size` in READ_CHUNK pieces; a line split across two is joined."""
    position, pending = entry.offset, b""
    while position < size:
        chunk = os.pread(fd, min(READ_CHUNK, size - position), position)
        if not chunk:
            break
        position += len(chunk)
        pending += chunk
        end = pending.rfind(b"\n")
        if end >= 0:
            entry.feed(pending[:end + 1])
            pending = pending[end + 1:]


def downsample(count: int, limit: int = MAX_POINTS) -> list[int]:
    """At most `limit` indices into `count` points, evenly spread, always the first and the last."""
    if count <= limit:
        return list(range(count))
    return [round(i * (count - 1) / (limit - 1)) for i in range(limit)]


class HistoryReader:
    """Curves per run dir, cached by file identity and size; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._losses: OrderedDict[str, _Losses] = OrderedDict()
        self._reports: dict[str, tuple[tuple[int, int, int], list[EvalPoint]]] = {}

    def history(self, name: str, run_dir: Path) -> RunHistory:
        return RunHistory(name=name, losses=self.losses(run_dir), evals=self.evals(run_dir))

    def losses(self, run_dir: Path) -> list[LossPoint]:
        path = run_dir / LOSSES_FILE
        key = str(path)
        with self._lock:  # one reader at a time per daemon: reads are incremental and short
            try:
                entry = self._read_losses(path, self._losses.get(key))
            except FileNotFoundError:
                self._losses.pop(key, None)
                return []
            except UnsafeFile as exc:
                raise FileProblem(str(exc)) from None
            except OSError as exc:
                raise FileProblem(f"{path}: cannot read ({exc.strerror})") from None
            self._losses[key] = entry
            self._losses.move_to_end(key)
            while len(self._losses) > MAX_CACHED:
                self._losses.popitem(last=False)
            total, talker, cp = entry.values
            return [LossPoint(step=entry.steps[i], total=total[i], talker=talker[i], code_predictor=cp[i])
                    for i in downsample(len(entry.steps))]

    @staticmethod
    def _read_losses(path: Path, entry: _Losses | None) -> _Losses:
        """`entry` brought up to date with what was appended since, or read afresh (replaced, shrunk)."""
        fd = open_regular(path, LOSSES_FILE)
        try:
            info = os.fstat(fd)
            if info.st_size > LOSSES_LIMIT:
                raise UnsafeFile(f"{LOSSES_FILE} {path} is {info.st_size} bytes, over the {LOSSES_LIMIT}-byte "
                                 "bound for it: refused")
            if entry is None or entry.identity != (info.st_dev, info.st_ino) or info.st_size < entry.offset:
                entry = _Losses((info.st_dev, info.st_ino))
            _feed_from(fd, entry, info.st_size)
            return entry
        finally:
            os.close(fd)

    def evals(self, run_dir: Path) -> list[EvalPoint]:
        path = run_dir / REPORT_FILE
        key = str(path)
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise FileProblem(f"{path}: cannot read ({exc.strerror})") from None
        stamp = (info.st_ino, info.st_size, info.st_mtime_ns)
        with self._lock:
            cached = self._reports.get(key)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        try:
            report = decode_json(read_regular(path, REPORT_LIMIT, what=REPORT_FILE, nofollow=True), _Report,
                                 f"{path} is malformed")
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise FileProblem(f"{path}: cannot read ({exc.strerror})") from None
        except ValueError as exc:  # UnsafeFile, or decode_json's malformed JSON: both name the file
            raise FileProblem(str(exc)) from None
        evals = sorted(report.evals, key=lambda e: e.step)
        points = [EvalPoint(step=e.step, total=e.losses.total,
                            per_split={split: losses.total for split, losses in e.per_split.items()})
                  for e in (evals[i] for i in downsample(len(evals)))]
        with self._lock:
            self._reports[key] = (stamp, points)
        return points


def read_diagnosis(run_dir: Path) -> Diagnosis | None:
    """RUN_DIR/diagnosis.json, None if there is none; FileProblem if it cannot be used."""
    path = run_dir / DIAGNOSIS_FILE
    try:
        raw = read_regular(path, DIAGNOSIS_LIMIT, what=DIAGNOSIS_FILE, nofollow=True)
    except FileNotFoundError:
        return None
    except UnsafeFile as exc:
        raise FileProblem(str(exc)) from None
    except OSError as exc:
        raise FileProblem(f"{path}: cannot read ({exc.strerror})") from None
    try:
        return decode_json(raw, Diagnosis, f"{path} is malformed")
    except ValueError as exc:
        raise FileProblem(str(exc)) from None


def last_line(log: Path, after: str | None = None) -> str | None:
    """The job's last line of output: from the log's tail, after the line containing `after`
    (the launch's own marker), skipping blank lines and progress-bar redraws (the text after '\\r')."""
    try:
        text = read_tail(log, LOG_TAIL_BYTES, "log").decode("utf-8", "replace")
    except (OSError, UnsafeFile):  # no log, or something a trainer planted in its place: no line to show
        return None
    lines = text.split("\n")  # not splitlines(): a '\r' redraws a line, it does not end one
    if after is not None:
        marks = [i for i, line in enumerate(lines) if after in line and line.startswith("===")]
        lines = lines[marks[-1] + 1:] if marks else lines
    for line in reversed(lines):
        shown = line.split("\r")[-1].strip()
        if shown and not shown.startswith("==="):
            return shown[:500]
    return None
