"""The unit files under real systemd (PID 1 in systemd-nspawn), as an operator would use them.

qwen-daemon.service reaches `active` only through READY=1 on the notify
socket; a daemon that stops answering (SIGSTOP) misses its watchdog and is
restarted; `systemctl start qwen-run@NAME` launches run NAME through the
daemon and follows it, `systemctl stop` stops it gracefully; and the
sampler's records land in the machine's journald with the run id and metric
fields, read back with `journalctl --directory ... -o json`.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from qwen_daemon.protocol.client import DaemonClient
from tests.nspawn import Machine, install_units
from tests.small_fs import fill, small_fs
from tests.test_daemon_harness import make_spec, trainer_wrapper, wait_until

INSIDE = "/srv/qh"  # the test dir inside the machine (the daemon's PrivateTmp hides /tmp)


@pytest.fixture
def machine(short_tmp: Path) -> Iterator[Machine]:
    short_tmp.chmod(0o755)  # the qwen user inside reads the spec's paths and runs the fake trainer
    specs = short_tmp / "specs"
    specs.mkdir()
    make_spec(short_tmp, "unitrun")  # creates model/ and bundle/
    spec = make_spec(short_tmp, "unitrun")
    inside = msgspec.structs.replace(spec, model=f"{INSIDE}/model", bundle=f"{INSIDE}/bundle")
    (specs / "unitrun.json").write_bytes(msgspec.json.encode(inside))
    trainer_wrapper(short_tmp)
    install_units(short_tmp / "units", ["--trainer-python", f"{INSIDE}/fake-python", "--sample-period", "0.5",
                                        "--stop-timeout", "20"])
    box = Machine(short_tmp / "units", [(short_tmp, INSIDE), (specs, "/etc/qwen-hemma/runs")],
                  short_tmp / "nspawn.log")
    try:
        yield box
    finally:
        box.stop()


def journal_entries(box: Machine, run: str) -> list[dict[str, str]]:
    """The machine's journal files (volatile or, once flushed, persistent), read from the host."""
    entries = []
    for root in ("/run/log/journal", "/var/log/journal"):
        for directory in box.host_path(root).glob("*"):
            out = subprocess.run(["journalctl", "--directory", str(directory), "-o", "json", "--no-pager",
                                  f"QWEN_RUN_ID={run}"], capture_output=True, text=True, check=False).stdout
            entries += [json.loads(line) for line in out.splitlines() if line.strip()]
    return sorted(entries, key=lambda e: int(e["__REALTIME_TIMESTAMP"]))


def test_daemon_notify_watchdog_run_units_and_journal(machine: Machine) -> None:
    machine.run("systemctl", "start", "qwen-daemon.service")  # returns once READY=1 arrived
    daemon = machine.show("qwen-daemon.service", "ActiveState", "SubState", "MainPID", "NRestarts", "StatusText")
    assert (daemon["ActiveState"], daemon["SubState"]) == ("active", "running"), daemon
    assert daemon["StatusText"].startswith("serving on /run/qwen-hemma/daemon.sock")
    sock = machine.host_path("/run/qwen-hemma/daemon.sock")
    mode = sock.stat()
    assert stat.S_IMODE(mode.st_mode) == 0o660 and stat.S_ISSOCK(mode.st_mode)
    client = DaemonClient(sock)
    assert client.health().ok

    machine.run("systemctl", "start", "qwen-run@unitrun.service")  # READY once the daemon launched it
    unit = machine.show("qwen-run@unitrun.service", "ActiveState", "StatusText")
    assert unit["ActiveState"] == "active" and "run unitrun" in unit["StatusText"], unit
    live = wait_until(lambda: (v := client.run("unitrun").run).health == "live" and v, 30, "the run to go live")
    assert live.state == "running"

    entries = wait_until(lambda: journal_entries(machine, "unitrun"), 30, "sampler records in the journal")
    record = entries[-1]
    assert record["SYSLOG_IDENTIFIER"] == "qwen-daemon" and record["QWEN_RUN_ID"] == "unitrun"
    assert float(record["QWEN_CPU_PERCENT"]) >= 0 and int(record["QWEN_RAM_USED_BYTES"]) > 0
    assert int(wait_until(lambda: journal_entries(machine, "unitrun")[-1].get("QWEN_RUN_RSS_BYTES"), 10,
                          "the run's own usage in the journal")) > 0

    machine.run("systemctl", "stop", "qwen-run@unitrun.service")  # ExecStop waits for the graceful end
    done = client.run("unitrun").run
    assert (done.state, done.exit_code) == ("stopped", 5), done
    assert machine.show("qwen-run@unitrun.service", "ActiveState")["ActiveState"] == "inactive"

    # the watchdog: a daemon that stops answering is restarted by systemd
    first_pid = daemon["MainPID"]
    machine.run("kill", "-STOP", first_pid)
    restarted = wait_until(
        lambda: (s := machine.show("qwen-daemon.service", "MainPID", "NRestarts", "ActiveState"))["NRestarts"] == "1"
        and s["ActiveState"] == "active" and s, 30, "the watchdog restart")
    assert restarted["MainPID"] != first_pid
    assert wait_until(lambda: _answers(client), 10, "the restarted daemon to answer")
    assert client.run("unitrun").run.state == "stopped"  # its registry survived the restart


def _answers(client: DaemonClient) -> bool:
    try:
        return client.health().ok
    except Exception:
        return False


def test_units_are_accepted_by_systemd_analyze(tmp_path: Path) -> None:
    """The shipped files, unmodified, pass systemd's own checker (paths aside: they are not installed here)."""
    repo = Path(__file__).resolve().parent.parent / "systemd"
    for name in ("qwen-daemon.service", "qwen-run@.service"):
        text = (repo / name).read_text()
        assert "ExecStart=/opt/qwen-hemma/.venv/bin/qwen-daemon" in text
        target = tmp_path / name.replace("@", "@x")
        target.write_text(text)
    out = subprocess.run(["systemd-analyze", "verify", "--man=no", str(tmp_path / "qwen-daemon.service")],
                         capture_output=True, text=True, check=False, env={**os.environ, "SYSTEMD_LOG_LEVEL": "err"})
    problems = [line for line in (out.stdout + out.stderr).splitlines()
                if "Unknown" in line or "bad-setting" in line.lower() or "Invalid" in line]
    assert problems == [], problems


def test_a_daemon_that_cannot_open_its_full_state_dir_is_restarted_until_it_can(short_tmp: Path) -> None:
    """A first start on a full /var/lib/qwen-hemma exits 1 with one line in the unit's journal, and systemd's
    Restart=on-failure keeps trying, within its start limit, until there is room: then it serves."""
    install_units(short_tmp / "units", ["--sample-period", "0.5"])
    with small_fs(4) as state:
        filler = fill(state)
        box = Machine(short_tmp / "units", [(state, "/var/lib/qwen-hemma")], short_tmp / "nspawn.log")
        try:
            assert box.run("systemctl", "start", "qwen-daemon.service", check=False).returncode != 0
            wait_until(lambda: int(box.show("qwen-daemon.service", "NRestarts")["NRestarts"]) >= 3, 60,
                       "systemd to restart the daemon three times")
            said = box.run("journalctl", "-u", "qwen-daemon.service", "--no-pager", "-o", "cat").stdout
            assert "cannot open the run registry /var/lib/qwen-hemma/registry.sqlite3" in said, said
            assert "Traceback" not in said and "start request repeated too quickly" not in said, said
            filler.unlink()
            wait_until(lambda: box.show("qwen-daemon.service", "ActiveState")["ActiveState"] == "active", 60,
                       "the daemon to come up once there is room")
            assert _answers(DaemonClient(box.host_path("/run/qwen-hemma/daemon.sock")))
        finally:
            box.stop()
