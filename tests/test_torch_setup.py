"""scripts/torch_setup.sh (setup.sh's torch step): a venv's in-range pair is kept, a ROCm one included; a wrong
torchaudio is replaced by its torch's build alone; a fresh venv gets the pin, or 2.10.0 under an old NVIDIA driver;
and a venv made from an interpreter that already has a good pair (the ROCm image's venv) keeps that pair.

The venvs are real (python -m venv) and their torch and torchaudio are distributions' metadata only, as a ROCm
index would leave them: no ROCm wheel can be had here. pip inside them is a stand-in that records its
arguments and writes the metadata of what it was asked for, so the script's own choices are what is tested.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

FAKE_PIP = '''import pathlib, re, sys
site = pathlib.Path(__file__).resolve().parent.parent
with open(site / "pip-calls.txt", "a") as calls:
    calls.write(" ".join(sys.argv[1:]) + "\\n")
for arg in sys.argv[1:]:
    match = re.fullmatch(r"(torch|torchaudio)==(.+)", arg)
    if match:
        name, version = match.groups()
        for old in site.glob(f"{name}-*.dist-info"):
            (old / "METADATA").unlink()
            old.rmdir()
        info = site / f"{name}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\\nName: {name}\\nVersion: {version}\\n")
'''


def site_packages(venv: Path) -> Path:
    out = subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()"
                          "['purelib'])"], capture_output=True, text=True, check=True).stdout
    return Path(out.strip())


def make_venv(venv: Path, **packages: str) -> Path:
    """A venv without pip (the stand-in takes its place) holding these distributions' metadata."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = site_packages(venv)
    for name, version in packages.items():
        info = site / f"{name}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (site / "pip").mkdir()
    (site / "pip" / "__init__.py").write_text("")
    (site / "pip" / "__main__.py").write_text(FAKE_PIP)
    return venv


def pip_calls(venv: Path) -> list[str]:
    calls = site_packages(venv) / "pip-calls.txt"
    return calls.read_text().splitlines() if calls.exists() else []


def setup(venv: Path, tmp_path: Path, driver: str | None = None, python: str | None = None) -> str:
    """Run the script with PATH holding a stand-in nvidia-smi (or none), as CI's and Colab's machines differ."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    smi = bin_dir / "nvidia-smi"
    if driver:
        smi.write_text(f"#!/bin/sh\necho {driver}\n")
        smi.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin", "PYTHON": python or sys.executable}
    done = subprocess.run(["bash", str(REPO / "scripts" / "torch_setup.sh"), str(venv)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_a_rocm_pair_is_kept(tmp_path: Path) -> None:
    venv = make_venv(tmp_path / "venv", torch="2.10.0+rocm7.1", torchaudio="2.10.0+rocm7.1")
    out = setup(venv, tmp_path)
    assert out == "setup: keeping torch 2.10.0+rocm7.1 with torchaudio 2.10.0+rocm7.1: in the supported range " \
                  "2.10 to 2.11, one build\n"
    assert pip_calls(venv) == []


def test_pypis_torchaudio_beside_a_rocm_torch_is_replaced_by_the_rocm_build_alone(tmp_path: Path) -> None:
    venv = make_venv(tmp_path / "venv", torch="2.10.0+rocm7.1", torchaudio="2.10.0")
    out = setup(venv, tmp_path, driver="580.82.07")
    assert pip_calls(venv) == ["install -q --no-deps torchaudio==2.10.0+rocm7.1 --index-url "
                               "https://download.pytorch.org/whl/rocm7.1"]
    assert "does not match torch 2.10.0+rocm7.1" in out
    assert out.endswith("torch 2.10.0+rocm7.1 with torchaudio 2.10.0+rocm7.1: in the supported range 2.10 to 2.11, "
                        "one build\n")


@pytest.mark.parametrize("driver, release", [(None, "2.11.0"), ("580.82.07", "2.11.0"), ("550.54.15", "2.10.0")])
def test_a_fresh_venv_gets_pypis_release_for_its_driver(tmp_path: Path, driver: str | None, release: str) -> None:
    venv = make_venv(tmp_path / "venv")
    out = setup(venv, tmp_path, driver=driver)
    assert pip_calls(venv) == [f"install -q torch=={release} torchaudio=={release}"]
    assert "torch is not installed" in out and out.endswith("one build\n")


def test_an_out_of_range_torch_is_replaced(tmp_path: Path) -> None:
    venv = make_venv(tmp_path / "venv", torch="2.9.1", torchaudio="2.9.1")
    setup(venv, tmp_path)
    assert pip_calls(venv) == ["install -q torch==2.11.0 torchaudio==2.11.0"]


def test_a_venv_made_from_an_interpreter_with_a_rocm_pair_keeps_it(tmp_path: Path) -> None:
    """The ROCm image's python is its own venv's: the new venv sees that venv's packages, torch included."""
    parent = make_venv(tmp_path / "image-venv", torch="2.10.0+rocm7.1", torchaudio="2.10.0+rocm7.1")
    child = tmp_path / "venv"
    out = setup(child, tmp_path, python=str(parent / "bin" / "python"))
    assert out.splitlines() == [
        f"setup: {parent}/bin/python has torch 2.10.0+rocm7.1 with torchaudio 2.10.0+rocm7.1: in the supported "
        f"range 2.10 to 2.11, one build; {child} is made on top of it",
        "setup: keeping torch 2.10.0+rocm7.1 with torchaudio 2.10.0+rocm7.1: in the supported range 2.10 to 2.11, "
        "one build"]
    assert pip_calls(parent) == [] and not (site_packages(child) / "pip-calls.txt").exists()
    seen = subprocess.run([str(child / "bin" / "python"), "-c", "from importlib.metadata import version; "
                           "print(version('torch'), version('torchaudio'))"], capture_output=True, text=True)
    assert seen.stdout == "2.10.0+rocm7.1 2.10.0+rocm7.1\n"
