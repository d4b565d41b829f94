"""Print the image's pip requirements: the project's dependencies and its `train` extra, less torch and torchaudio.

Why: the image installs torch and torchaudio first, from the index that matches its GPU stack (PyPI's
CUDA wheels, or the PyTorch ROCm index's +rocm builds). Installing `.[train]` afterwards would let pip
replace a ROCm torch 2.10.0 by PyPI's CUDA torch 2.11.0 to satisfy the extra's pin; installing these
requirements under a constraint on the torch already there cannot. Standard library only: it runs in the
image before anything is installed.

    python3 image/requirements.py pyproject.toml > requirements.txt
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


def image_requirements(pyproject: Path) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["train"]]
    return [r for r in wanted if requirement_name(r) not in SKIPPED]


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(f"usage: {argv[0]} PYPROJECT", file=sys.stderr)
        return 2
    print("\n".join(image_requirements(Path(argv[1]))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
