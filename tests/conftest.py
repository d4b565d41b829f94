"""Shared fixtures: one real demo set (espeak-ng corpus, tiny model, bundle) per test session."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

MakeDir = Callable[[str], Path]


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """corpus/, model/, bundle/ and spec.json built through the real code paths."""
    from qwen_train.demo import build_demo

    root = tmp_path_factory.mktemp("demo")
    build_demo(root, seed=0)
    return root


@pytest.fixture(scope="module")
def module_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MakeDir]:
    """mktemp for a module's shared fixtures, its dirs removed once that module has passed.

    A trainer fixture's run holds ~100 MB of checkpoints; kept to the session's end, as tmp_path_factory keeps
    them, the suite's dirs grew past 4 GB and filled a CI machine's disk. A failing module keeps its dirs to look at.
    """
    made: list[Path] = []
    failed_before = request.session.testsfailed

    def make(name: str) -> Path:
        made.append(tmp_path_factory.mktemp(name))
        return made[-1]

    yield make
    if request.session.testsfailed == failed_before:
        for path in made:
            shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short /tmp path: Unix socket paths must stay under 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="qh-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def python_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env
