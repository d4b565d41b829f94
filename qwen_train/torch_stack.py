"""The torch range the trainer supports, and a verdict on an installed (torch, torchaudio) pair.

Why one module: the doctor, the trainer's start (`qwen-train run`), scripts/setup.sh and the Colab
notebook must agree on which torch is fine. Hemma trains under ROCm with 2.10.0+rocm7.1, the GPU box
and the image under PyPI's 2.11.0 (a CUDA 13.0 build), Colab under whatever it ships; each keeps its
own torch when it is in range, and the two packages must be one release of one build (`import
qwen_tts` loads torchaudio.compliance.kaldi, whose compiled ops are built against one torch).

Standard library only, and torch is never imported: the verdict must work where torch's import is
what is broken, and in setup.sh before this project is installed (`python -m qwen_train.torch_stack`).
Versions are read from the installed distributions' metadata, where a ROCm index build says
`2.10.0+rocm7.1` and PyPI's CUDA build says plain `2.11.0`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

# Releases from FLOOR up to (not including) CEILING: both ends are tested in CI (.ci/run).
FLOOR = (2, 10, 0)
CEILING = (2, 12, 0)
REQUIREMENT = ">=2.10,<2.12"  # as the `train` extra declares it (a test keeps the two equal)
RANGE_TEXT = "2.10 to 2.11"
PIN = "2.11.0"  # the reproducible build: a fresh install, the image's default, the bench; CI's whole suite
# The floor's release: Hemma's (2.10.0+rocm7.1), CI's exactness tests in a second venv, and a fresh install under
# an NVIDIA driver older than the 580 series, which PyPI's 2.11.0 (a CUDA 13.0 build) needs; PyPI's 2.10.0 is a
# CUDA 12.8 build.
FLOOR_PIN = "2.10.0"
CUDA13_DRIVER = 580
INDEX = "https://download.pytorch.org/whl/"
_VERSION = re.compile(r"(\d+(?:\.\d+)*)([^+]*)(?:\+(.+))?")
_INDEX_TAG = re.compile(r"cu\d+|rocm\d+(?:\.\d+)*|cpu|xpu")


@dataclass(frozen=True)
class Build:
    """An installed version split the way the verdict needs it: release numbers, pre-release part, local tag."""

    release: tuple[int, ...]
    pre: str  # "a0", "rc1", ".dev20260101": a pre-release sorts before its release
    tag: str  # the local build tag: "cu130", "rocm7.1", "cpu"; "" for PyPI's builds


def parse(text: str) -> Build | None:
    """None for a version that is not PEP 440-shaped (nothing can be said of its range)."""
    match = _VERSION.fullmatch(text.strip())
    if match is None:
        return None
    release = tuple(int(part) for part in match.group(1).split("."))
    return Build((*release, 0, 0)[:3] if len(release) < 3 else release, match.group(2), match.group(3) or "")


def in_range(build: Build) -> bool:
    """As pip reads `>=2.10,<2.12`: a pre-release of 2.10.0 is below the floor, one of 2.12.0 not below the ceiling."""
    if build.release[:3] == FLOOR and build.pre:
        return False
    return FLOOR <= build.release[:3] < CEILING


def index_for(tag: str) -> str | None:
    """The PyTorch index a tagged build comes from (cu128, rocm7.1, cpu); None for PyPI's or an unknown build."""
    return INDEX + tag if _INDEX_TAG.fullmatch(tag) else None


@dataclass(frozen=True)
class Verdict:
    ok: bool
    culprit: str  # "torch" (missing or out of range), "torchaudio" (missing or not torch's build), "" when ok
    torch: str  # the installed versions as found ("missing" when not installed)
    torchaudio: str
    problem: str  # what is wrong ("" when ok)
    fix: str  # what to do about it ("" when ok)

    def text(self) -> str:
        if self.ok:
            return f"torch {self.torch} with torchaudio {self.torchaudio}: in the supported range {RANGE_TEXT}, " \
                   "one build"
        return f"{self.problem}; {self.fix}"


def _installed(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "missing"


def _pip(*requirements: str, index: str | None = None, no_deps: bool = False) -> str:
    words = ["pip install", *(["--no-deps"] if no_deps else []), *requirements]
    return " ".join([*words, *([f"--index-url {index}"] if index else [])])


def _range_fix(torch: Build | None) -> str:
    """Out of range or missing: the same build family from its own index, else PyPI's reproducible pin."""
    index = index_for(torch.tag) if torch else None
    if index:
        return f"install a {RANGE_TEXT} release of the same build: " + _pip(
            f"'torch{REQUIREMENT}'", f"'torchaudio{REQUIREMENT}'", index=index)
    return f"install the tested pin: {_pip(f'torch=={PIN}', f'torchaudio=={PIN}')} ({FLOOR_PIN} under an NVIDIA " \
           f"driver older than {CUDA13_DRIVER}, or a {RANGE_TEXT} build from your GPU stack's index, e.g. ROCm's)"


def judge(torch_version: str, torchaudio_version: str) -> Verdict:
    """Is this pair one the trainer supports: torch in range, torchaudio of the same release and build tag?"""
    culprit, problem, fix = _problem(torch_version.strip(), torchaudio_version.strip())
    return Verdict(not culprit, culprit, torch_version, torchaudio_version, problem, fix)


def _problem(torch_version: str, torchaudio_version: str) -> tuple[str, str, str]:
    torch, audio = parse(torch_version), parse(torchaudio_version)
    if torch is None or not in_range(torch):
        if torch_version == "missing":
            what = "not installed: the trainer needs"
        elif torch is None:
            what = f"{torch_version}, a version this check cannot read, so not known to be in"
        else:
            what = f"{torch_version}, outside"
        return "torch", f"torch is {what} the supported range {RANGE_TEXT} (torch{REQUIREMENT})", _range_fix(torch)
    if audio is not None and (audio.release, audio.pre, audio.tag) == (torch.release, torch.pre, torch.tag):
        return "", "", ""
    have = "not installed" if torchaudio_version == "missing" else torchaudio_version
    why = "the two must be one release of one build: import qwen_tts loads torchaudio's compiled kaldi ops"
    index = index_for(torch.tag)
    if torch.tag and not index:
        fix = f"install torchaudio {torch_version} from where torch {torch_version} came from"
    else:
        fix = f"install torchaudio {torch_version} beside it: " + _pip(
            f"torchaudio=={torch_version}", index=index, no_deps=True)
    return "torchaudio", f"torchaudio is {have}, which does not match torch {torch_version} ({why})", fix


def installed_verdict(installed: Callable[[str], str] | None = None) -> Verdict:
    """The verdict on this interpreter's installed pair (by metadata: nothing is imported)."""
    lookup = installed or _installed
    return judge(lookup("torch"), lookup("torchaudio"))


def nvidia_driver() -> str | None:
    """The NVIDIA driver's version from nvidia-smi, or None where there is none (a CPU machine, AMD)."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = done.stdout.split()
    return lines[0] if done.returncode == 0 and lines else None


def fresh_release(driver: str | None) -> str:
    """The release a fresh PyPI install takes: the pin, or PyPI's CUDA 12 build under a driver too old for 13.0."""
    major = re.match(r"\d+", driver or "")
    if major is not None and int(major.group()) < CUDA13_DRIVER:
        return FLOOR_PIN
    return PIN


def install_args(verdict: Verdict, driver: str | None) -> list[str]:
    """pip's arguments to make this machine's pair right; [] when it already is (a ROCm torch is kept).

    torch in range with a wrong or missing torchaudio: only torchaudio, for that torch, without touching it.
    torch missing or out of range: a tagged build's range from its own index, else the PyPI release for
    this driver."""
    if verdict.ok:
        return []
    torch = parse(verdict.torch)
    if torch is not None and in_range(torch):
        index = index_for(torch.tag)
        return ["--no-deps", f"torchaudio=={verdict.torch}", *(["--index-url", index] if index else [])]
    index = index_for(torch.tag) if torch else None
    if index:
        return [f"torch{REQUIREMENT}", f"torchaudio{REQUIREMENT}", "--index-url", index]
    release = fresh_release(driver)
    return [f"torch=={release}", f"torchaudio=={release}"]


def main(argv: list[str]) -> int:
    """`check`: print the verdict, exit 1 when off. `install-args`: print what pip needs here, one per line."""
    verdict = installed_verdict()
    if argv == ["check"]:
        print(verdict.text() if verdict.ok else f"torch stack: {verdict.text()}")
        return 0 if verdict.ok else 1
    if argv == ["install-args"]:
        print("\n".join(install_args(verdict, nvidia_driver())))
        return 0
    print("usage: python -m qwen_train.torch_stack check|install-args", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
