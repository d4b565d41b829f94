"""Run and surface names are matched in full: no control character rides along, anywhere a name enters.

`re.match` with `$` also matches before a trailing newline, so "nl\\n" used to pass the 1-64 letters,
digits, '.', '_' or '-' rule and get a run dir of that name. The rule (qwen_train.spec.check_name) is
checked here at the trainer's function and CLI, the daemon's API over its socket, and the daemon's CLI.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from qwen_train import exitcodes
from qwen_train.spec import SpecError, check_name
from tests.conftest import REPO, python_env
from tests.test_daemon_harness import (
    DaemonProcess,
    make_spec,
    plain_daemon,
    raw_request,
)

CONTROL = ["\n", "\r", "\t", "\x00", "\x1b", "\x7f"]
BAD_NAMES = [f"nl{c}" for c in CONTROL] + [f"{c}lead" for c in CONTROL] + ["mid\ndle", "a\r\nb"]
RULE = "is not allowed"


@pytest.mark.parametrize("name", BAD_NAMES)
def test_check_name_refuses_a_control_character_anywhere(name: str) -> None:
    with pytest.raises(SpecError, match=RULE) as info:
        check_name(name)
    assert repr(name) in str(info.value)  # the message shows the character, escaped


@pytest.mark.parametrize("name", ["a", "run-1", "r.diagnose", "A_b.c-9", "x" * 64])
def test_check_name_still_takes_every_name_the_rule_allows(name: str) -> None:
    assert check_name(name) == name


def test_check_name_keeps_its_other_refusals() -> None:
    for name in ("", "x" * 65, "-lead", ".hidden", "a..b", "a/b", "a b", "å"):
        with pytest.raises(SpecError, match=RULE):
            check_name(name)


@pytest.fixture
def daemon() -> Iterator[DaemonProcess]:
    yield from plain_daemon()


def _spec_body(daemon: DaemonProcess, name: str) -> bytes:
    spec = msgspec.structs.replace(make_spec(daemon.state_dir.parent, "placeholder"), name=name)
    return msgspec.json.encode({"spec": spec})


def test_the_api_refuses_control_characters_in_names(daemon: DaemonProcess) -> None:
    for name in ("nl\n", "cr\r", "tab\t", "nul\x00", "esc\x1b"):
        status, body = raw_request(daemon.socket, "POST", "/runs", _spec_body(daemon, name))
        assert status == 400 and RULE in body["error"] and repr(name) in body["error"], (name, body)
        quoted = urllib.parse.quote(name, safe="")
        for method, path in (("GET", f"/runs/{quoted}"), ("POST", f"/runs/{quoted}/stop"),
                             ("GET", f"/runs/{quoted}/history"), ("POST", f"/surfaces/{quoted}/class")):
            status, body = raw_request(daemon.socket, method, path, b'{"class": "mechanism", "reason": "x"}')
            assert status == 400 and RULE in body["error"], (method, path, body)
    runs_dir = daemon.state_dir / "runs"
    assert not runs_dir.exists() or list(runs_dir.iterdir()) == []  # no run dir was made for any of them
    assert daemon.client.runs().runs == []
    assert {s.name for s in daemon.client.surfaces().surfaces} == {"default"}  # no surface got registered


def test_a_valid_name_is_still_launched(daemon: DaemonProcess) -> None:
    status, body = raw_request(daemon.socket, "POST", "/runs", _spec_body(daemon, "fine-1"))
    assert status == 201 and body["name"] == "fine-1"
    daemon.client.stop("fine-1")


def _daemon_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "qwen_daemon", *args], capture_output=True, text=True,
                          env=python_env(), cwd=REPO, timeout=60)


def test_the_daemon_cli_refuses_them_before_asking_the_daemon(tmp_path: Path) -> None:
    missing_socket = str(tmp_path / "none.sock")  # no daemon: a name check must not need one
    for name in ("nl\n", "cr\r", "tab\t", "esc\x1b"):
        for command in (["show", name], ["stop", name], ["history", name], ["diagnose", name], ["unit-run", name]):
            done = _daemon_cli(*command, "--socket", missing_socket)
            assert done.returncode == 2, (command, done.stderr)
            assert "argument NAME" in done.stderr and RULE in done.stderr and "Traceback" not in done.stderr
        done = _daemon_cli("surfaces", "set-class", name, "mechanism", "--reason", "r", "--socket", missing_socket)
        assert done.returncode == 2 and "surface name" in done.stderr and RULE in done.stderr, done.stderr
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"name": "nl\n", "lane": "benchmark", "model": "m", "bundle": "b"}))
    done = _daemon_cli("launch", str(spec), "--socket", missing_socket)
    assert done.returncode == 2 and RULE in done.stderr and "'nl\\n'" in done.stderr, done.stderr


def _train_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "qwen_train", *args], capture_output=True, text=True,
                          env=python_env(), cwd=REPO, timeout=120)


def test_the_trainer_cli_refuses_them_in_a_spec_and_in_run_id(tmp_path: Path) -> None:
    for name in ("nl\n", "tab\t", "nul\x00"):
        spec = tmp_path / "run.json"
        spec.write_text(json.dumps({"name": name, "lane": "benchmark", "model": "m", "bundle": "b"}))
        done = _train_cli("plan", str(spec))
        assert done.returncode == exitcodes.USAGE and RULE in done.stderr, done.stderr
    prepare = tmp_path / "prepare.json"
    prepare.write_text(json.dumps({"name": "ok", "out": str(tmp_path / "out"), "model": str(tmp_path),
                                   "sources": [{"kind": "fleurs", "path": str(tmp_path)}]}))
    for run_id in ("x\n", "x\r", "x\x1b"):
        done = _train_cli("prepare", str(prepare), "--run-id", run_id, "--run-dir", str(tmp_path / "rd"))
        assert done.returncode == exitcodes.USAGE and RULE in done.stderr, done.stderr
    assert not (tmp_path / "rd").exists()  # refused before anything was written
