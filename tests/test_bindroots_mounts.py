"""Bind roots on real bind mounts: `status` reads the mount table, `probe` goes through a container."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from qwen_daemon.config import BindRoot, DaemonConfig, DockerSettings
from qwen_daemon.jobs import bindroots
from qwen_daemon.jobs.docker_runner import DockerRunner
from qwen_daemon.jobs.job import RunnerRefusal
from tests.conftest import python_env
from tests.dockerd import IMAGE, USER, Engine, start_engine
from tests.test_daemon_harness import DaemonProcess, trainer_wrapper


@pytest.fixture
def tree(short_tmp: Path) -> Iterator[tuple[Path, Path, Path]]:
    """home source, canonical mount point and a decoy, with the bind mount undone afterwards."""
    source, canonical, decoy = short_tmp / "home-scratch", short_tmp / "srv-scratch", short_tmp / "decoy"
    for path in (source, canonical, decoy):
        path.mkdir()
        path.chmod(0o777)  # the probe container's non-root user writes here
    try:
        yield source, canonical, decoy
    finally:
        subprocess.run(["umount", "-l", str(canonical)], capture_output=True, check=False)


def mount(source: Path, target: Path) -> None:
    subprocess.run(["mount", "--bind", str(source), str(target)], check=True)


def test_status_proves_the_mount_and_says_what_is_wrong(tree: tuple[Path, Path, Path]) -> None:
    source, canonical, decoy = tree
    root = BindRoot(path=str(canonical), source=str(source))
    (problem,) = bindroots.status([root]).roots[0].problems
    assert "is not a mount point" in problem and f"mount --bind {source} {canonical}" in problem
    mount(decoy, canonical)
    (problem,) = bindroots.status([root]).roots[0].problems
    assert "not from" in problem and "device/inode differ" in problem
    subprocess.run(["umount", str(canonical)], check=True)
    mount(source, canonical)
    good = bindroots.status([root, BindRoot(path=str(decoy))]).roots
    assert [r.ok for r in good] == [True, True] and good[0].mounted_from is not None
    missing = bindroots.status([BindRoot(path=str(canonical / "nope"))]).roots[0]
    assert not missing.ok and "mkdir -p" in missing.problems[0]


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    engine = start_engine()
    try:
        yield engine
    finally:
        engine.stop()


def test_probe_writes_through_the_source_and_reads_at_the_canonical_path(
    engine: Engine, tree: tuple[Path, Path, Path], short_tmp: Path
) -> None:
    source, canonical, decoy = tree
    config = DaemonConfig(state_dir=str(short_tmp), docker=DockerSettings(
        host=engine.url, image=IMAGE, user=USER, python=engine.python(), runtime_mounts=engine.runtime_mounts()))
    runner = DockerRunner(config)
    root = BindRoot(path=str(canonical), source=str(source))
    try:
        (result,) = bindroots.probe([root], engine.python(), runner.run_once).results
        assert not result.ok and "is not the tree Docker sees" in result.detail  # not mounted yet
        mount(source, canonical)
        (result,) = bindroots.probe([root], engine.python(), runner.run_once).results
        assert result.ok, result.detail
        assert list(canonical.iterdir()) == []  # the probe cleans up after itself
        decoy.chmod(0o755)  # root-owned, not writable by the container user
        (result,) = bindroots.probe([BindRoot(path=str(decoy))], engine.python(), runner.run_once).results
        assert not result.ok and "could not write" in result.detail
    finally:
        runner.close()
    with pytest.raises(RunnerRefusal, match="outside the bind roots"):
        bindroots.docker_source(Path("/etc"), [root], "spec.model")
    assert bindroots.docker_source(canonical / "runs" / "a", [root], "x") == str(source / "runs" / "a")


def test_bind_roots_command_reports_through_the_daemon(tree: tuple[Path, Path, Path], short_tmp: Path) -> None:
    source, canonical, _ = tree
    daemon = DaemonProcess(short_tmp / "state", short_tmp / "d.sock", trainer_wrapper(short_tmp),
                           "--journal-socket", "", "--bind-root", f"{canonical}={source}").start()
    try:
        cli = [sys.executable, "-m", "qwen_daemon", "bind-roots", "status", "--socket", str(daemon.socket)]
        bad = subprocess.run(cli, capture_output=True, text=True, env=python_env(), check=False)
        assert bad.returncode == 1 and bad.stdout.startswith(f"BAD {canonical} <- {source}")
        mount(source, canonical)
        good = subprocess.run(cli, capture_output=True, text=True, env=python_env(), check=False)
        assert good.returncode == 0 and good.stdout.startswith(f"ok  {canonical}"), good.stdout
    finally:
        daemon.stop()
