"""`qwen-train`'s output as a shell sees it: quiet on a closed pipe, and it says where run files go by default."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from qwen_train import exitcodes
from qwen_train.closed_pipe import EXIT_CLOSED_PIPE
from qwen_train.prepare.spec import PrepareSpec, SourceSpec, encode_prepare_spec
from qwen_train.spec import RunSpec, encode_spec
from qwen_train.status import read_status
from tests.conftest import REPO, python_env


def closed_reader(cmd: list[str], buffered: bool = True) -> tuple[int, str]:
    """Run `cmd` with its stdout a pipe whose only reader closes before anything is written.

    `buffered` is stdout as a shell gives it to Python (block-buffered: the write fails at a flush,
    possibly at exit); unbuffered (PYTHONUNBUFFERED, as under the daemon) fails at the write itself.
    """
    env = python_env()
    if buffered:
        env.pop("PYTHONUNBUFFERED", None)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=REPO)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader goes away (`| head` that has read what it wanted)
    err = proc.stderr.read().decode(errors="replace")
    return proc.wait(timeout=300), err


def quiet(err: str) -> bool:
    return "Traceback" not in err and "BrokenPipeError" not in err and "Exception ignored" not in err


@pytest.mark.parametrize("buffered", [True, False])
def test_a_command_whose_reader_went_away_ends_quietly(demo_root: Path, buffered: bool) -> None:
    argv = ["bundle", "verify", str(demo_root / "bundle")]
    code, err = closed_reader([sys.executable, "-m", "qwen_train", *argv], buffered)
    assert code == EXIT_CLOSED_PIPE and quiet(err), err
    bare = f"from qwen_train.cli import main; raise SystemExit(main.__wrapped__({argv!r}))"
    code, err = closed_reader([sys.executable, "-c", bare], buffered)  # the control: what `main` wraps
    assert code != EXIT_CLOSED_PIPE and "BrokenPipeError" in err


@pytest.mark.parametrize("argv", [["--help"], ["bundle", "build", "--help"], ["prepare", "--help"]])
def test_help_into_a_closed_pipe_ends_quietly_too(argv: list[str]) -> None:
    """argparse prints --help and exits from inside parse_args; the flush still happens inside the guard
    (left to interpreter exit, it would print `Exception ignored ... BrokenPipeError` and exit 120)."""
    code, err = closed_reader([sys.executable, "-m", "qwen_train", *argv])
    assert code == EXIT_CLOSED_PIPE and quiet(err), err
    unbuffered = closed_reader([sys.executable, "-m", "qwen_train", *argv], buffered=False)
    assert unbuffered[0] in (0, EXIT_CLOSED_PIPE) and quiet(unbuffered[1]), unbuffered  # argparse swallows it


def test_prepare_without_run_dir_says_where_its_run_files_go(tmp_path: Path) -> None:
    spec = PrepareSpec(name="where", out=str(tmp_path / "b"), model=str(tmp_path / "m"),
                       sources=[SourceSpec(kind="upstream_jsonl", path=str(tmp_path / "missing.jsonl"))])
    (tmp_path / "spec.json").write_bytes(encode_prepare_spec(spec))
    cmd = [sys.executable, "-m", "qwen_train", "prepare", str(tmp_path / "spec.json")]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=python_env(), cwd=tmp_path, timeout=120)
    assert proc.returncode == exitcodes.FAILED, proc.stderr
    expected = tmp_path / "runs" / "where"
    first = proc.stderr.splitlines()[0]
    assert first == f"qwen-train prepare: no --run-dir given; status.json and the run's files go to {expected}"
    assert read_status(expected / "status.json").state == "failed"  # where it said
    given = tmp_path / "elsewhere"
    proc = subprocess.run([*cmd, "--run-dir", str(given)], capture_output=True, text=True, env=python_env(),
                          cwd=tmp_path, timeout=120)
    assert "no --run-dir given" not in proc.stderr and (given / "status.json").is_file()


def test_run_without_run_dir_says_so_as_well(tmp_path: Path) -> None:
    spec = RunSpec(name="where-run", lane="single-speaker", model=str(tmp_path / "m"), bundle=str(tmp_path / "nob"))
    (tmp_path / "spec.json").write_bytes(encode_spec(spec))
    proc = subprocess.run([sys.executable, "-m", "qwen_train", "run", str(tmp_path / "spec.json")],
                          capture_output=True, text=True, env=python_env(), cwd=tmp_path, timeout=300)
    expected = tmp_path / "runs" / "where-run"
    assert f"no --run-dir given; status.json and the run's files go to {expected}" in proc.stderr.splitlines()[0]
    assert proc.returncode == exitcodes.USAGE and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert read_status(expected / "status.json").state == "failed"
