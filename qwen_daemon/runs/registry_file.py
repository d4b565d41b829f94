"""The registry's file: its schema and versions, and opening it, on a full state dir too.

Registry (registry.py) holds the one connection this returns; what a file of
an older schema lacks is added in one transaction, a newer one is refused. A
state dir with no room for the file (a first start), or for WAL's index of a
file closed cleanly, is what a daemon restarted after another tenant filled
the disk meets: `open_file` gets past the second and names the first
(`RegistryFull`), which the daemon's CLI reports in one line and systemd retries.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from qwen_daemon.state_writes import disk_words, free_words

log = logging.getLogger(__name__)

SCHEMA_VERSION = 3

_SCHEMA = """
CREATE TABLE runs (
    name TEXT PRIMARY KEY,
    lane TEXT NOT NULL,
    surface TEXT NOT NULL,
    runner TEXT NOT NULL,
    state TEXT NOT NULL,
    nonce TEXT,
    pid INTEGER,
    run_dir TEXT NOT NULL,
    created_at REAL NOT NULL,
    launched_at REAL NOT NULL,
    ended_at REAL,
    exit_code INTEGER,
    spec_json TEXT NOT NULL,
    message TEXT,
    container TEXT,
    kind TEXT NOT NULL DEFAULT 'train',
    parent TEXT
);
CREATE TABLE launches (
    nonce TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    started_at REAL NOT NULL,
    ended_at REAL
);
CREATE INDEX launches_by_name ON launches (name, started_at);
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    time REAL NOT NULL,
    kind TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX events_by_name ON events (name, time);
CREATE TABLE samples (
    id INTEGER PRIMARY KEY,
    run TEXT,
    time REAL NOT NULL,
    sample BLOB NOT NULL
);
CREATE INDEX samples_by_run ON samples (run, time);
"""

# Upgrades of older files, by the version they start from: each adds what later versions added.
_UPGRADES: dict[int, str] = {
    1: "ALTER TABLE runs ADD COLUMN container TEXT;",  # the walking skeleton's file
    2: "ALTER TABLE runs ADD COLUMN kind TEXT NOT NULL DEFAULT 'train'; ALTER TABLE runs ADD COLUMN parent TEXT;",
}


class RegistryError(RuntimeError):
    """The registry file cannot be used (wrong schema, unreadable)."""


class RegistryFull(RegistryError):
    """A state dir too full to open the registry in at all: a new one cannot be made, an old one not migrated."""


def open_file(path: Path) -> sqlite3.Connection:
    """The registry's connection, its schema current; RegistryFull when the disk leaves no room to open it."""
    conn: sqlite3.Connection | None = None
    try:
        conn = _connect(path)
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=5000")
        _migrate(conn, path)
        return conn
    except sqlite3.Error as exc:
        if conn is not None:
            conn.close()
        words = disk_words(exc)
        if words is None:
            raise
        raise RegistryFull(
            f"cannot open the run registry {path}: {words}; {free_words(path)}. Free space on the state dir "
            "and start the daemon again (under systemd it restarts on its own); nothing in the registry was "
            "changed") from exc


def _connect(path: Path) -> sqlite3.Connection:
    """WAL, with its shared-memory index in the heap when the state dir is too full to hold the -shm file.

    A daemon that closed cleanly removed its -wal and -shm; restarted on a full disk (another tenant filled
    it meanwhile) it cannot make the -shm again and would fail to start. In exclusive locking mode SQLite
    keeps that index in its own memory, so the registry reads at once and writes once there is room; no
    other process opens it meanwhile, which the state dir's daemon lock already guarantees for writers.
    """
    conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        return conn
    except sqlite3.OperationalError as exc:
        conn.close()
        words = disk_words(exc)
        if words is None:
            raise
    conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA locking_mode=EXCLUSIVE")
    conn.execute("PRAGMA journal_mode=WAL")
    log.warning("run registry %s: %s at start; its WAL index is kept in memory (exclusive locking) until "
                "the daemon restarts", path, words)
    return conn


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Create the schema in a new file, upgrade an older one in one transaction; refuse any other version."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:
        return
    if version in _UPGRADES:
        steps = " ".join(_UPGRADES[v] for v in range(version, SCHEMA_VERSION))
        conn.executescript(f"BEGIN IMMEDIATE; {steps} PRAGMA user_version={SCHEMA_VERSION}; COMMIT;")
        return
    if version != 0:
        raise RegistryError(
            f"registry {path} has schema version {version}; this daemon knows "
            f"{SCHEMA_VERSION}: use a matching qwen-daemon or another --state-dir"
        )
    conn.executescript("BEGIN IMMEDIATE;" + _SCHEMA + f"PRAGMA user_version={SCHEMA_VERSION}; COMMIT;")
