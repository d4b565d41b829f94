"""Print pip requirements from pyproject.toml: the project's dependencies and extras (default `train`), less torch
and torchaudio.

Why: the image installs torch and torchaudio first, at its pinned TORCH_VERSION from the index that matches its
GPU stack (PyPI's CUDA wheels, or the PyTorch ROCm index's +rocm builds), then these requirements under a
constraint on that torch. The `train` extra declares a range (>=2.10,<2.12), which a ROCm 2.10.0+rocm7.1
satisfies, but a requirement on torch still lets pip look at other builds (and an index's newest release) when
anything else moves; with torch left out and constrained, pip cannot swap it. scripts/test_torch_floor.sh builds
CI's second venv the same way (`train dev`). Standard library only: it runs before anything is installed.

    python3 image/requirements.py pyproject.toml [EXTRA ...] > requirements.txt
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

SKIPPED = {"torch", "torchaudio"}  # installed first, from the image's TORCH_INDEX


def requirement_name(requirement: str) -> str:
    """The distribution name of a PEP 508 requirement, normalised (PEP 503)."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def image_requirements(pyproject: Path, extras: tuple[str, ...] = ("train",)) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    wanted = [*project["dependencies"], *(r for extra in extras for r in project["optional-dependencies"][extra])]
    return [r for r in wanted if requirement_name(r) not in SKIPPED]


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(f"usage: {argv[0]} PYPROJECT [EXTRA ...]", file=sys.stderr)
        return 2
    try:
        print("\n".join(image_requirements(Path(argv[1]), tuple(argv[2:]) or ("train",))))
    except KeyError as exc:
        print(f"{argv[0]}: no such extra in {argv[1]}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
