"""The run registry: what the daemon launched, in SQLite (WAL), keyed by run name.

Its file (schema, versions, opening it on a full state dir) is registry_file.py.

The registry is the daemon's memory across its own restarts, so every state
change is a single transaction, and changes that belong to one launch are
conditional on that launch's nonce: a late reap of an old launch can never
overwrite the state of a newer one. Resource samples live in the same file
so a run's summary survives restarts too.

One connection shared by all threads, serialised by a lock: the daemon's
write rate (a few rows a second at most) is far below what that allows.

A name belongs to one job kind for good (`train`, `preprocess`, `diagnose`, `gate`, `score`):
its run dir holds that kind's files, so relaunching a name as another kind is
refused. A child job (diagnose, gate, score) records the run it works on as its `parent`.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import msgspec

from qwen_daemon.jobs.job import Job
from qwen_daemon.protocol import ACTIVE_STATES, ResourceSample, RunState
from qwen_daemon.runs.record import RunRecord
from qwen_daemon.runs.registry_file import open_file
from qwen_daemon.state_writes import StateWrites
from qwen_train.spec import check_name
from qwen_train.status import Event

_ACTIVE = tuple(sorted(ACTIVE_STATES))
_ACTIVE_SQL = f"state IN ({', '.join('?' for _ in _ACTIVE)})"

_RUN_COLUMNS = (
    "name, lane, surface, runner, state, nonce, pid, run_dir, created_at, launched_at, "
    "ended_at, exit_code, spec_json, message, container, kind, parent"
)
class RunConflict(RuntimeError):
    """A launch under a name whose run is still active."""


class Launch(msgspec.Struct, frozen=True):
    """One launch of a run: the window its resource samples belong to."""

    nonce: str
    started_at: float
    ended_at: float | None


class Registry:
    def __init__(self, path: Path, writes: StateWrites | None = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.writes = writes or StateWrites()  # a full disk: StateWriteError (507), reported, rolled back
        self._lock = threading.RLock()
        self._conn = open_file(path)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """Serialise threads and make the block one transaction (or none, on error: SQLite may have rolled a
        full disk's back itself, and a COMMIT that fails is one too)."""
        with self._lock:
            if self._conn.in_transaction:
                yield self._conn
                return
            with self.writes.guard("run registry", self.path):
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self._conn
                    self._conn.execute("COMMIT")
                except BaseException:
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                    raise

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # runs

    def reserve(self, job: Job, run_dir: Path, nonce: str, now: float, from_queue: bool = False) -> RunRecord:
        """Claim `job.name` for a new launch, or raise RunConflict if it is still active, waiting in the
        GPU queue (unless this is the queue starting it), or belongs to another kind of job.

        A name whose run has ended is launched again under the same name (a
        resume); its creation time and history are kept.
        """
        return self._claim(job, run_dir, now, nonce, "launching", None, from_queue)

    def enqueue(self, job: Job, run_dir: Path, now: float, reason: str) -> RunRecord:
        """Record `job` as queued for the GPU (no launch, no nonce yet); `reason` says what it waits for."""
        return self._claim(job, run_dir, now, None, "queued", reason, False)

    def _claim(self, job: Job, run_dir: Path, now: float, nonce: str | None, state: RunState, message: str | None,
               from_queue: bool) -> RunRecord:
        name = check_name(job.name)
        with self._tx() as conn:
            row = conn.execute("SELECT state, kind FROM runs WHERE name = ?", (name,)).fetchone()
            if row is not None and (row[0] in ACTIVE_STATES or (row[0] == "queued" and not from_queue)):
                raise RunConflict(
                    f"run {name!r} is already {'queued for the GPU' if row[0] == 'queued' else 'active'} "
                    f"(state {row[0]}): stop it first, or launch under another name"
                )
            if row is not None and row[1] != job.kind:
                raise RunConflict(
                    f"{name!r} is the name of a {row[1]} job; a {job.kind} job needs a name of its own"
                )
            values = (
                job.lane, job.surface, job.runner, state, nonce, str(run_dir), now,
                job.spec_bytes().decode("utf-8"), job.kind, job.parent, message,
            )
            if row is None:
                conn.execute(
                    "INSERT INTO runs (lane, surface, runner, state, nonce, run_dir, launched_at, "
                    "spec_json, kind, parent, message, name, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (*values, name, now),
                )
            else:
                conn.execute(
                    "UPDATE runs SET lane = ?, surface = ?, runner = ?, state = ?, nonce = ?, "
                    "run_dir = ?, launched_at = ?, spec_json = ?, kind = ?, parent = ?, message = ?, pid = NULL, "
                    "ended_at = NULL, exit_code = NULL, container = NULL WHERE name = ?",
                    (*values, name),
                )
            if nonce is not None:
                conn.execute("INSERT INTO launches (nonce, name, started_at) VALUES (?, ?, ?)", (nonce, name, now))
                self.add_event(name, "launch", f"launching with nonce {nonce}", now)
            else:
                self.add_event(name, "queued", message or "queued for the GPU", now)
        record = self.get(name)
        assert record is not None
        return record

    def queued(self) -> list[RunRecord]:
        """Runs waiting for the GPU, oldest first: the queue's order."""
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE state = 'queued' ORDER BY launched_at, name").fetchall()
        return [RunRecord(*row) for row in rows]

    def dequeue(self, name: str, message: str, now: float, state: RunState = "stopped") -> bool:
        """Take a queued run off the queue, never having launched: a stop, or a start that failed."""
        with self._tx() as conn:
            cur = conn.execute("UPDATE runs SET state = ?, message = ?, ended_at = ? "
                               "WHERE name = ? AND state = 'queued'", (state, message, now, name))
            if cur.rowcount == 1:
                self.add_event(name, "stop" if state == "stopped" else state, message, now)
            return cur.rowcount == 1

    def set_running(self, name: str, nonce: str, pid: int, container: str | None = None) -> bool:
        """Record the trainer's pid (and container) once it is spawned."""
        with self._tx() as conn:
            cur = conn.execute(
                "UPDATE runs SET state = 'running', pid = ?, container = ? WHERE name = ? AND nonce = ? "
                "AND state = 'launching'",
                (pid, container, name, nonce),
            )
            return cur.rowcount == 1

    def set_pid(self, name: str, nonce: str, pid: int, container: str | None) -> None:
        """After a reattach: the container's init may have a new host pid (or none, if it exited)."""
        with self._tx() as conn:
            conn.execute(
                "UPDATE runs SET pid = ?, container = COALESCE(?, container) WHERE name = ? AND nonce = ?",
                (pid, container, name, nonce),
            )

    def mark_stopping(self, name: str, nonce: str, now: float, message: str) -> bool:
        """Move an active launch to `stopping`; False if it already ended or is stopping."""
        with self._tx() as conn:
            cur = conn.execute(
                "UPDATE runs SET state = 'stopping' WHERE name = ? AND nonce = ? "
                "AND state IN ('launching', 'running')",
                (name, nonce),
            )
            if cur.rowcount == 1:
                self.add_event(name, "stop", message, now)
            return cur.rowcount == 1

    def finish(
        self, name: str, nonce: str, state: RunState, exit_code: int | None, message: str | None, now: float
    ) -> bool:
        """End the active launch `nonce` of `name`; a no-op for any other launch."""
        with self._tx() as conn:
            cur = conn.execute(
                f"UPDATE runs SET state = ?, exit_code = ?, message = ?, ended_at = ? "
                f"WHERE name = ? AND nonce = ? AND {_ACTIVE_SQL}",
                (state, exit_code, message, now, name, nonce, *_ACTIVE),
            )
            if cur.rowcount != 1:
                return False
            conn.execute("UPDATE launches SET ended_at = ? WHERE nonce = ?", (now, nonce))
            self.add_event(name, state, message or f"run ended: {state}", now)
            return True

    def get(self, name: str) -> RunRecord | None:
        with self._lock:
            row = self._conn.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE name = ?", (name,)
            ).fetchone()
        return None if row is None else RunRecord(*row)

    def all(self) -> list[RunRecord]:
        """Newest launches first: what an operator looks for."""
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs ORDER BY launched_at DESC, name"
            ).fetchall()
        return [RunRecord(*row) for row in rows]

    def active(self) -> list[RunRecord]:
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE {_ACTIVE_SQL} ORDER BY name", _ACTIVE
            ).fetchall()
        return [RunRecord(*row) for row in rows]

    def launches(self, name: str) -> list[Launch]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT nonce, started_at, ended_at FROM launches WHERE name = ? ORDER BY started_at",
                (name,),
            ).fetchall()
        return [Launch(*row) for row in rows]

    # events

    def add_event(self, name: str, kind: str, message: str, now: float) -> None:
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO events (name, time, kind, message) VALUES (?, ?, ?, ?)",
                (name, now, kind, message),
            )

    def events(self, name: str, limit: int = 200) -> list[Event]:
        """The newest `limit` daemon-side events of a run, oldest first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT time, kind, message FROM events WHERE name = ? ORDER BY time DESC, id DESC "
                "LIMIT ?",
                (name, limit),
            ).fetchall()
        return [Event(time=t, kind=k, message=m) for t, k, m in reversed(rows)]

    # samples

    def add_sample(self, sample: ResourceSample, runs: list[str]) -> None:
        """Store one sample per run active at `sample.time`, or one host-only row if none."""
        blob = msgspec.json.encode(sample)
        targets: list[str | None] = list(runs) if runs else [None]
        with self._tx() as conn:
            conn.executemany(
                "INSERT INTO samples (run, time, sample) VALUES (?, ?, ?)",
                [(run, sample.time, blob) for run in targets],
            )

    def samples(self, name: str, start: float, end: float) -> list[ResourceSample]:
        """The run's samples with start <= time <= end, oldest first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT sample FROM samples WHERE run = ? AND time >= ? AND time <= ? ORDER BY time",
                (name, start, end),
            ).fetchall()
        return [msgspec.json.decode(row[0], type=ResourceSample) for row in rows]

    def last_sample_time(self) -> float | None:
        """When the newest stored sample was taken: a restarted sampler's gap starts there."""
        with self._lock:
            row = self._conn.execute("SELECT MAX(time) FROM samples").fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def prune_host_samples(self, before: float) -> int:
        """Host-only samples are for the recent past; runs keep theirs as evidence."""
        with self._tx() as conn:
            return conn.execute(
                "DELETE FROM samples WHERE run IS NULL AND time < ?", (before,)
            ).rowcount
