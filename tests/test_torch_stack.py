"""The supported torch range: which (torch, torchaudio) pairs pass, what the verdict tells the operator to do,
what a fresh install takes, and that the trainer refuses to start outside the range, touching nothing.

Versions are given as importlib.metadata reports them: PyPI's CUDA build is plain "2.11.0", an index build
carries its tag ("2.10.0+rocm7.1"). Runs in both CI venvs (the pin's and the floor's, scripts/test_torch_floor.sh).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from qwen_train import cli, exitcodes, torch_stack
from qwen_train.torch_stack import FLOOR_PIN, PIN, REQUIREMENT, install_args, judge
from tests.conftest import REPO

ROCM_INDEX = "https://download.pytorch.org/whl/rocm7.1"


@pytest.mark.parametrize("torch, audio", [
    ("2.11.0", "2.11.0"),  # PyPI's CUDA 13.0 build: the pin
    ("2.10.0", "2.10.0"),  # PyPI's CUDA 12.8 build: the floor
    ("2.10.0+rocm7.1", "2.10.0+rocm7.1"),  # Hemma
    ("2.11.0+cu128", "2.11.0+cu128"),  # an index build, as Colab ships them
    ("2.10.1+cpu", "2.10.1+cpu"),
    ("2.11.0rc1", "2.11.0rc1"),
])
def test_in_range_pairs_of_one_build_pass(torch: str, audio: str) -> None:
    verdict = judge(torch, audio)
    assert verdict.ok and verdict.culprit == "" and "in the supported range 2.10 to 2.11" in verdict.text()


@pytest.mark.parametrize("torch", ["2.9.1+cu126", "2.12.0", "2.12.0.dev20260301+cpu", "2.10.0a0+nv25.01", "1.13.1"])
def test_out_of_range_torch_is_the_culprit(torch: str) -> None:
    verdict = judge(torch, torch)
    assert not verdict.ok and verdict.culprit == "torch"
    assert f"torch is {torch}, outside the supported range 2.10 to 2.11 (torch>=2.10,<2.12)" in verdict.text()


def test_an_out_of_range_index_build_is_told_to_stay_with_its_index() -> None:
    """Colab's or a ROCm host's older torch: the range from the index its build came from, not PyPI's CUDA 13."""
    text = judge("2.9.1+rocm6.4", "2.9.1+rocm6.4").text()
    assert text.endswith("install a 2.10 to 2.11 release of the same build: pip install 'torch>=2.10,<2.12' "
                         "'torchaudio>=2.10,<2.12' --index-url https://download.pytorch.org/whl/rocm6.4")


def test_missing_or_pypi_torch_out_of_range_is_told_the_pin() -> None:
    for torch in ("missing", "2.9.0"):
        verdict = judge(torch, "missing")
        assert verdict.culprit == "torch" and "pip install torch==2.11.0 torchaudio==2.11.0" in verdict.fix
    assert judge("missing", "2.11.0").problem.startswith("torch is not installed: the trainer needs the supported")
    assert "cannot read" in judge("nightly", "nightly").problem


@pytest.mark.parametrize("torch, audio, fix", [
    # PyPI's torchaudio beside a ROCm torch: the right number, the wrong build.
    ("2.10.0+rocm7.1", "2.10.0", f"pip install --no-deps torchaudio==2.10.0+rocm7.1 --index-url {ROCM_INDEX}"),
    ("2.11.0", "2.10.0", "pip install --no-deps torchaudio==2.11.0"),
    ("2.10.0", "missing", "pip install --no-deps torchaudio==2.10.0"),
    ("2.11.0+cu130", "2.11.0", "pip install --no-deps torchaudio==2.11.0+cu130 --index-url "
                               "https://download.pytorch.org/whl/cu130"),
    ("2.10.0+git1a2b3c", "2.10.0", "install torchaudio 2.10.0+git1a2b3c from where torch 2.10.0+git1a2b3c came from"),
])
def test_a_mismatched_torchaudio_is_the_culprit_and_told_the_build_to_take(torch: str, audio: str, fix: str) -> None:
    verdict = judge(torch, audio)
    assert not verdict.ok and verdict.culprit == "torchaudio"
    have = "not installed" if audio == "missing" else audio
    assert verdict.problem.startswith(f"torchaudio is {have}, which does not match torch {torch} (")
    assert "torchaudio's compiled kaldi ops" in verdict.problem and verdict.fix.endswith(fix)


def test_install_args_keep_a_good_pair_and_repair_only_torchaudio_beside_an_in_range_torch() -> None:
    assert install_args(judge("2.10.0+rocm7.1", "2.10.0+rocm7.1"), None) == []
    assert install_args(judge("2.10.0+rocm7.1", "2.10.0"), "580.1") == [
        "--no-deps", "torchaudio==2.10.0+rocm7.1", "--index-url", ROCM_INDEX]
    assert install_args(judge("2.11.0", "missing"), None) == ["--no-deps", "torchaudio==2.11.0"]
    assert install_args(judge("2.9.1+rocm6.4", "2.9.1+rocm6.4"), None) == [
        "torch>=2.10,<2.12", "torchaudio>=2.10,<2.12", "--index-url", "https://download.pytorch.org/whl/rocm6.4"]


@pytest.mark.parametrize("driver, release", [(None, PIN), ("580.82.07", PIN), ("595.1", PIN),
                                             ("550.54.15", FLOOR_PIN), ("470.256.02", FLOOR_PIN)])
def test_a_fresh_install_takes_the_pin_unless_the_nvidia_driver_predates_cuda_13(driver: str | None,
                                                                                 release: str) -> None:
    assert install_args(judge("missing", "missing"), driver) == [f"torch=={release}", f"torchaudio=={release}"]
    assert install_args(judge("2.9.0", "2.9.0"), driver) == [f"torch=={release}", f"torchaudio=={release}"]


def test_the_declared_range_is_the_modules_and_the_pins_are_its_ends() -> None:
    """pyproject's train extra, the module's bounds, the image's default and the floor venv say the same."""
    train = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["train"]
    assert [r for r in train if re.match(r"torch(audio)?\b", r)] == [f"torch{REQUIREMENT}", f"torchaudio{REQUIREMENT}"]
    floor, ceiling = torch_stack.FLOOR, torch_stack.CEILING
    assert f">={floor[0]}.{floor[1]},<{ceiling[0]}.{ceiling[1]}" == REQUIREMENT
    assert torch_stack.parse(FLOOR_PIN) == torch_stack.Build(floor, "", "")
    for pin in (PIN, FLOOR_PIN):
        assert judge(pin, pin).ok
    assert f"ARG TORCH_VERSION={PIN}\n" in (REPO / "image" / "Dockerfile").read_text()


def test_the_image_requirements_leave_torch_to_the_image_under_a_range() -> None:
    import runpy

    requirements = runpy.run_path(str(REPO / "image" / "requirements.py"))
    wanted = requirements["image_requirements"](REPO / "pyproject.toml")
    names = {requirements["requirement_name"](r) for r in wanted}
    assert "torch" not in names and "torchaudio" not in names and {"transformers", "accelerate", "msgspec"} <= names
    assert requirements["requirement_name"]("torch>=2.10,<2.12") == "torch"
    with_dev = requirements["image_requirements"](REPO / "pyproject.toml", ("train", "dev"))
    assert {"pytest", "mypy"} <= {requirements["requirement_name"](r) for r in with_dev}


def test_this_venvs_pair_is_in_range() -> None:
    """Whichever end this venv is (the pin's whole suite, or the floor's exactness tests)."""
    verdict = torch_stack.installed_verdict()
    assert verdict.ok, verdict.text()


@pytest.mark.parametrize("extra", [[], ["--resume"]])
def test_the_trainer_refuses_outside_the_range_before_any_work(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str],
                                                               extra: list[str]) -> None:
    """Exit TORCH_UNSUPPORTED with the doctor's words; the spec is not even read and no run dir appears."""
    from qwen_train import doctor

    stack = {"torch": "2.9.1+cu126", "torchaudio": "2.9.1+cu126"}
    monkeypatch.setattr(torch_stack, "_installed", lambda name: stack.get(name, "missing"))
    run_dir = tmp_path / "run"
    code = cli.main(["run", str(tmp_path / "no-such-spec.json"), "--run-dir", str(run_dir), *extra])
    assert code == exitcodes.TORCH_UNSUPPORTED and exitcodes.state_for_exit(code) == "failed"
    assert not run_dir.exists()
    err = capsys.readouterr().err
    (bad,) = [c for c in doctor.torch_checks(lambda name: stack.get(name, "missing")) if c.mark == "BAD"]
    assert err == f"qwen-train run: refused: {bad.text}\n"


def test_a_mismatched_pair_is_refused_too(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    stack = {"torch": "2.10.0+rocm7.1", "torchaudio": "2.10.0"}
    monkeypatch.setattr(torch_stack, "_installed", lambda name: stack[name])
    assert cli.main(["run", str(tmp_path / "spec.json"), "--run-dir", str(tmp_path / "r")]) == \
        exitcodes.TORCH_UNSUPPORTED
    assert "torchaudio is 2.10.0, which does not match torch 2.10.0+rocm7.1" in capsys.readouterr().err


def test_the_module_command_says_what_it_found() -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "qwen_train.torch_stack", "check"], cwd=REPO, capture_output=True,
                          text=True)
    assert done.returncode == 0 and done.stdout.startswith("torch ") and "one build" in done.stdout
    usage = subprocess.run([sys.executable, "-m", "qwen_train.torch_stack"], cwd=REPO, capture_output=True, text=True)
    assert usage.returncode == 2 and "usage" in usage.stderr
