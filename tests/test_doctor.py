"""`qwen-train doctor`: the versions it wants (torch in the supported range, torchaudio of its build, the rest
pinned), what it says of a GPU, and its compile probe, which must tell a failing compiler from a working one.

The AMD card here is a stand-in (torch.cuda's answers replaced by an R9700's, as ROCm's torch gives them):
no AMD GPU is reachable from these machines. The compile probe runs for real on this CPU (inductor), and
fails through the trainer's own test switch (QWEN_TEST_COMPILE_FAULT).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from qwen_train import doctor, exitcodes
from qwen_train.train.device.compiling import COMPILE_FAULT_ENV, tick
from tests.conftest import REPO, python_env

GIB = 1 << 30
CUDA_STACK = {"torch": "2.11.0+cu130", "torchaudio": "2.11.0+cu130", "qwen-tts": "0.1.1", "transformers": "4.57.3",
              "accelerate": "1.12.0", "peft": "0.21.2", "resemblyzer": "0.1.4", "jiwer": "4.0.0"}
ROCM_STACK = {**CUDA_STACK, "torch": "2.10.0+rocm7.1", "torchaudio": "2.10.0+rocm7.1"}


def marks(installed: dict[str, str]) -> dict[str, str]:
    return {c.text.split()[0]: c.mark for c in doctor.version_checks(lambda name: installed.get(name, "missing"))}


def lines(installed: dict[str, str]) -> list[str]:
    return [c.line() for c in doctor.version_checks(lambda name: installed.get(name, "missing"))]


def test_any_in_range_pair_of_one_build_is_ok() -> None:
    """PyPI's CUDA 2.11.0, Hemma's ROCm 2.10.0, PyPI's 2.10.0: no reinstall asked of any."""
    for stack in (CUDA_STACK, ROCM_STACK, {**CUDA_STACK, "torch": "2.10.0", "torchaudio": "2.10.0"}):
        assert set(marks(stack).values()) == {"ok "}, lines(stack)
    assert lines(ROCM_STACK)[:2] == ["ok  torch 2.10.0+rocm7.1 (supported: 2.10 to 2.11)",
                                     "ok  torchaudio 2.10.0+rocm7.1 (the same release and build as torch)"]
    assert marks({k: v for k, v in CUDA_STACK.items() if k != "qwen-tts"})["qwen-tts"] == "BAD"
    assert marks({**CUDA_STACK, "peft": "0.18.0"})["peft"] == "BAD"  # the adapter mode's pin
    assert "pip install --no-deps resemblyzer==0.1.4" in "\n".join(
        lines({k: v for k, v in CUDA_STACK.items() if k != "resemblyzer"}))
    assert marks({**CUDA_STACK, "jiwer": "4.1.2"})["jiwer"] == "ok "  # the gate's CER and WER: a floor, not a pin
    assert marks({**CUDA_STACK, "jiwer": "3.1.0"})["jiwer"] == "BAD"
    assert "pip install 'jiwer>=4.0'" in "\n".join(lines({k: v for k, v in CUDA_STACK.items() if k != "jiwer"}))


def test_an_out_of_range_torch_is_bad_and_says_what_to_install() -> None:
    old = {**CUDA_STACK, "torch": "2.9.1+cu126", "torchaudio": "2.9.1+cu126"}
    assert lines(old)[:2] == [
        "BAD torch is 2.9.1+cu126, outside the supported range 2.10 to 2.11 (torch>=2.10,<2.12); install a 2.10 "
        "to 2.11 release of the same build: pip install 'torch>=2.10,<2.12' 'torchaudio>=2.10,<2.12' "
        "--index-url https://download.pytorch.org/whl/cu126",
        "--  torchaudio 2.9.1+cu126 (matched against torch once torch is in range)"]
    newer = lines({**CUDA_STACK, "torch": "2.12.0", "torchaudio": "2.12.0"})[0]
    assert newer.startswith("BAD torch is 2.12.0, outside") and "pip install torch==2.11.0 torchaudio==2.11.0" in newer
    assert lines({k: v for k, v in CUDA_STACK.items() if k != "torch"})[0].startswith("BAD torch is not installed")


def test_a_mismatched_torchaudio_is_bad_and_names_the_build_to_take() -> None:
    # PyPI's torchaudio beside a ROCm torch: the right number, the wrong build.
    assert lines({**ROCM_STACK, "torchaudio": "2.10.0"})[:2] == [
        "ok  torch 2.10.0+rocm7.1 (supported: 2.10 to 2.11)",
        "BAD torchaudio is 2.10.0, which does not match torch 2.10.0+rocm7.1 (the two must be one release of one "
        "build: import qwen_tts loads torchaudio's compiled kaldi ops); install torchaudio 2.10.0+rocm7.1 beside "
        "it: pip install --no-deps torchaudio==2.10.0+rocm7.1 --index-url https://download.pytorch.org/whl/rocm7.1"]
    other_release = lines({**CUDA_STACK, "torch": "2.11.0", "torchaudio": "2.10.0"})[1]
    assert other_release.startswith("BAD torchaudio is 2.10.0, which does not match torch 2.11.0 (")
    assert other_release.endswith("pip install --no-deps torchaudio==2.11.0")
    assert marks({k: v for k, v in ROCM_STACK.items() if k != "torchaudio"})["torchaudio"] == "BAD"


def r9700(monkeypatch: pytest.MonkeyPatch, arch_list: list[str]) -> None:
    """torch.cuda as ROCm's torch answers on Hemma's card (HIP build: torch.version.cuda is None)."""
    props = SimpleNamespace(name="AMD Radeon AI PRO R9700", gcnArchName="gfx1201:sramecc-:xnack-",
                            multi_processor_count=64, major=12, minor=0, total_memory=32 * GIB)
    monkeypatch.setattr(torch.version, "hip", "7.1.25424")
    monkeypatch.setattr(torch.version, "cuda", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: props)
    monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: arch_list)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda index: (27 * GIB, 32 * GIB))


def test_an_amd_card_is_reported_by_backend_arch_bf16_and_free_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    r9700(monkeypatch, ["gfx1100", "gfx1200", "gfx1201", "gfx942"])
    lines = [c.line() for c in doctor.device_checks()]
    assert lines[0].startswith("ok  backend HIP 7.1.25424 (torch ") and lines[0].endswith("1 GPU(s)")
    assert "ok  cuda:0 AMD Radeon AI PRO R9700, arch gfx1201, 64 compute units" in lines
    assert "ok  cuda:0 bf16 supported" in lines
    assert "--  cuda:0 memory 27.0 GiB free of 32.0 GiB (5.0 GiB held, by this or other processes)" in lines
    assert not any(line.startswith("BAD") for line in lines)


def test_a_rocm_build_without_kernels_for_the_card_is_bad(monkeypatch: pytest.MonkeyPatch) -> None:
    r9700(monkeypatch, ["gfx90a", "gfx942", "gfx1100"])  # a build from before gfx120x
    bad = [c for c in doctor.device_checks() if c.mark == "BAD"]
    assert len(bad) == 1 and "no kernels for gfx1201" in bad[0].text and "gfx1100" in bad[0].text


def test_without_a_gpu_it_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    (check,) = doctor.device_checks()
    assert check.mark == "-- " and "no GPU visible" in check.text and "cpu" in check.text


@pytest.mark.parametrize("phase", ["compile", "backward"])
def test_the_compile_probe_reports_a_failing_backend(monkeypatch: pytest.MonkeyPatch, phase: str) -> None:
    monkeypatch.setenv(COMPILE_FAULT_ENV, f'{{"phase": "{phase}"}}')
    torch._dynamo.reset()
    works, check = doctor.compile_check(torch.device("cpu"))
    assert not works and check.mark == "WARN"
    assert "test fault" in check.text and "falls back to eager" in check.text and "\n" not in check.text


def test_the_compile_probe_passes_a_working_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(COMPILE_FAULT_ENV, '{"phase": "run", "step": 1}')  # compiles, runs eager ops: clock 0
    tick(0)
    torch._dynamo.reset()
    works, check = doctor.compile_check(torch.device("cpu"))
    assert works and check.mark == "ok " and "match eager" in check.text


def test_require_compile_turns_a_failed_probe_into_a_failed_doctor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(COMPILE_FAULT_ENV, '{"phase": "compile"}')
    monkeypatch.setattr(doctor, "version_checks", lambda: [])  # this test is about the probe, not this venv
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for require, code, mark in [(False, 0, "WARN"), (True, exitcodes.FAILED, "BAD")]:
        torch._dynamo.reset()
        lines: list[str] = []
        assert doctor.run_doctor(require_compile=require, out=lines.append) == code
        assert lines[-1].startswith(f"{mark} compile ")


def test_doctor_compiles_with_inductor_on_this_cpu() -> None:
    """The real command, the real backend: the C++ toolchain inductor needs is there and its code is right."""
    env = {k: v for k, v in python_env().items() if k != COMPILE_FAULT_ENV}
    done = subprocess.run([sys.executable, "-m", "qwen_train", "doctor", "--require-compile"], cwd=Path(REPO),
                          env=env, capture_output=True, text=True)
    lines = done.stdout.splitlines()
    assert any(line.startswith("ok  compile inductor on cpu (scalar C++): ") for line in lines), done.stdout
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]  # this venv is the pinned stack


def test_a_uid_without_a_name_gets_a_warning_not_a_traceback() -> None:
    """A container's --user UID:GID without USER: dynamo cannot load (inductor names its cache after the user).
    The doctor says so on the compile line (image/Dockerfile sets USER for this reason)."""
    env = {k: v for k, v in python_env().items() if k not in ("USER", "LOGNAME", "LNAME", "USERNAME",
                                                               COMPILE_FAULT_ENV)}
    env["HOME"] = "/tmp"
    command = ["setpriv", "--reuid", "54321", "--regid", "54321", "--clear-groups", sys.executable, "-m",
               "qwen_train", "doctor"]
    done = subprocess.run(command, cwd=Path(REPO), env=env, capture_output=True, text=True)
    compile_line = done.stdout.splitlines()[-1]
    assert compile_line.startswith("WARN compile inductor on cpu") and "uid not found: 54321" in compile_line, \
        done.stdout + done.stderr[-2000:]
    assert "Traceback" not in done.stderr


@pytest.mark.gpu
def test_doctor_on_the_accelerator_machine() -> None:
    """On a real GPU: the backend, the card's arch, bf16, its memory, and inductor compiling on it."""
    lines: list[str] = []
    doctor.run_doctor(out=lines.append)
    text = "\n".join(lines)
    assert "ok  backend " in text and "cuda:0 memory " in text
    assert "compute capability" in text or "arch gfx" in text
    assert any(line.startswith("ok  compile inductor on cuda:0") for line in lines), text
