"""The native journal protocol against a standalone systemd-journald in a private mount namespace.

journald binds /run/systemd/journal/socket; in its own mount namespace (a
private tmpfs on /run) it touches nothing of the host, and both its socket and
its journal files are reachable from here through /proc/PID/root.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from qwen_daemon.resources.sampler import Sampler
from qwen_daemon.runs.registry import Registry
from qwen_daemon.systemd.journal import JournalWriter, encode_entry

JOURNALD = "/lib/systemd/systemd-journald"
SETUP = "mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/journal /run/log/journal && exec \"$0\""


@pytest.fixture
def journald() -> Iterator[Path]:
    proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", SETUP,
                             JOURNALD], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    root = Path(f"/proc/{proc.pid}/root")
    try:
        deadline = time.monotonic() + 10
        while not (root / "run/systemd/journal/socket").exists():
            assert time.monotonic() < deadline and proc.poll() is None, "journald did not start"
            time.sleep(0.05)
        yield root
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def read(root: Path, *match: str) -> list[dict[str, object]]:
    entries: list[dict[str, object]] = []
    for directory in (root / "run/log/journal").glob("*"):
        out = subprocess.run(["journalctl", "--directory", str(directory), "-o", "json", "--all", "--no-pager",
                              *match], capture_output=True, text=True, check=False).stdout
        entries += [json.loads(line) for line in out.splitlines() if line.strip()]
    return entries


def wait_read(root: Path, *match: str) -> list[dict[str, object]]:
    deadline = time.monotonic() + 10
    while not (found := read(root, *match)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


def test_fields_newlines_and_entries_too_big_for_a_datagram(journald: Path) -> None:
    writer = JournalWriter(str(journald / "run/systemd/journal/socket"), identifier="qwen-test")
    assert writer.send("two lines", {"QWEN_RUN_ID": "r1", "QWEN_NOTE": "a\nb"})
    big = "x" * (1 << 20)  # over the datagram limit: goes as a sealed memfd
    assert writer.send("big", {"QWEN_RUN_ID": "r2", "QWEN_BIG": big})
    (entry,) = wait_read(journald, "QWEN_RUN_ID=r1")
    assert entry["MESSAGE"] == "two lines" and entry["QWEN_NOTE"] == "a\nb"
    assert entry["SYSLOG_IDENTIFIER"] == "qwen-test"
    (large,) = wait_read(journald, "QWEN_RUN_ID=r2")
    assert large["QWEN_BIG"] == big
    writer.close()


def test_sampler_records_carry_the_run_id_and_metrics(journald: Path, tmp_path: Path) -> None:
    writer = JournalWriter(str(journald / "run/systemd/journal/socket"))
    registry = Registry(tmp_path / "r.sqlite3")
    sampler = Sampler(1.0, registry, lambda: ["run-a"], run_pids=lambda _: [os.getpid()], journal=writer)
    try:
        sampler.sample_once()
        sampler.sample_once()
        entries = wait_read(journald, "QWEN_RUN_ID=run-a")
        assert len(entries) >= 2
        last = entries[-1]
        assert int(str(last["QWEN_RAM_USED_BYTES"])) > 0 and float(str(last["QWEN_CPU_PERCENT"])) >= 0
        assert int(str(last["QWEN_RUN_RSS_BYTES"])) > 0 and last["QWEN_RUN_PROCESSES"] == "1"
        assert sampler.health(time.time()).journal is not None
    finally:
        sampler.stop()
        registry.close()
        writer.close()


def test_journald_away_is_reported_not_raised(tmp_path: Path) -> None:
    writer = JournalWriter(str(tmp_path / "no-journald.sock"))
    assert not writer.send("lost", {"QWEN_RUN_ID": "r"})
    assert writer.problem is not None and "journald not receiving" in writer.problem
    with pytest.raises(ValueError, match="invalid"):
        encode_entry({"_PRIVILEGED": "x"})
