"""Shared fixtures: one real demo set (espeak-ng corpus, tiny model, bundle) per test session."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """corpus/, model/, bundle/ and spec.json built through the real code paths."""
    from qwen_train.demo import build_demo

    root = tmp_path_factory.mktemp("demo")
    build_demo(root, seed=0)
    return root


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
