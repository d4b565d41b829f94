"""A compile failure on the device turns the run eager, says so, and trains exactly what an eager run trains.

The failures are forced through QWEN_TEST_COMPILE_FAULT (train/device/compiling.py), whose backend runs the
eager ops until it fails, so on a CPU every step's losses must equal those of a run that never compiled:
a step applied twice, skipped, or carrying the gradients of its failed attempt would show in them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest
import torch

from qwen_train.spec import Posture
from qwen_train.status import read_status
from qwen_train.train.device.compiling import (
    COMPILE_FAULT_ENV,
    compile_backend,
    compile_failure,
    compile_regions,
    compiled_modules,
    decompile,
    describe_failure,
    setup_failure,
)
from qwen_train.train.device.fallback import announce_compilation, eval_or_eager
from qwen_train.train.device.perf import Perf
from qwen_train.train.heartbeat import Heartbeat
from qwen_train.train.session import Session
from tests.conftest import MakeDir, python_env
from tests.trainer_harness import finish, losses, start, write_spec

POSTURE = Posture(checkpoint_every=2, eval_every=2, keep_last=2)
COMPILE_ON = json.dumps({"compile_layers": True})


def _spec(demo_root: Path, where: Path, name: str) -> Path:
    # Two micro-batches per step: a failure in the first backward leaves gradients behind to be cleared.
    return write_spec(demo_root, where, name, 4, POSTURE, grad_accum=2, warmup_steps=1)


@pytest.fixture(scope="module")
def eager_losses(demo_root: Path, module_dir: MakeDir) -> list[tuple[int, float, float, float]]:
    where = module_dir("eager")
    env = {"QWEN_TRAIN_PERF": "", COMPILE_FAULT_ENV: ""}  # the CPU defaults: nothing compiled
    code, out = finish(start(_spec(demo_root, where, "eager"), where / "run", env=env))
    assert code == 0, out[-3000:]
    status = read_status(where / "run" / "status.json")
    assert status.compilation is not None and status.compilation.startswith("eager: compilation is off on cpu")
    return losses(where / "run")


@pytest.mark.parametrize(("fault", "step", "what"), [
    ({"phase": "backward"}, 1, "the backend failed to compile"),  # lazily, in step 1's first backward
    ({"phase": "run", "step": 3}, 3, "a compiled kernel failed at step 3"),  # after two compiled steps
])
def test_a_compile_failure_falls_back_to_eager_and_trains_the_same_steps(
        demo_root: Path, tmp_path: Path, eager_losses: list[tuple[int, float, float, float]],
        fault: dict[str, object], step: int, what: str) -> None:
    env = {"QWEN_TRAIN_PERF": COMPILE_ON, COMPILE_FAULT_ENV: json.dumps(fault)}
    code, out = finish(start(_spec(demo_root, tmp_path, "fallback"), tmp_path / "run", env=env))
    assert code == 0, out[-3000:]
    assert f"torch.compile failed in step {step} on cpu" in out
    status = read_status(tmp_path / "run" / "status.json")
    assert status.state == "completed" and status.step == 4
    assert status.compilation is not None and status.compilation.startswith(f"eager since step {step}, ")
    assert what in status.compilation
    fallbacks = [e for e in status.events if e.kind == "compile_fallback"]
    assert [e.step for e in fallbacks] == [step]
    assert what in fallbacks[0].message and f"step {step} was computed again without compilation" in \
        fallbacks[0].message
    assert losses(tmp_path / "run") == eager_losses  # steps 1..4, once each, the eager run's values exactly


class Layer(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.silu(self.linear(x))


def _failure(monkeypatch: pytest.MonkeyPatch, phase: str, backward: bool) -> BaseException:
    monkeypatch.setenv(COMPILE_FAULT_ENV, json.dumps({"phase": phase}))
    torch._dynamo.reset()
    model = torch.nn.Sequential()
    model.add_module("layer", Layer())
    model.add_module("head", torch.nn.Linear(4, 1))
    model.layer.compile(dynamic=True, backend=compile_backend())
    assert compiled_modules(model) == ["layer"]
    x = torch.randn(3, 4)
    with pytest.raises(Exception) as caught:
        out = model(x).sum()
        if backward:
            out.backward()
    assert decompile(model) == 1 and compiled_modules(model) == []
    model(x).sum().backward()  # eager now: the failing backend is not asked again
    return caught.value


@pytest.mark.parametrize(("phase", "backward"), [("compile", False), ("backward", True)])
def test_failures_out_of_compiled_code_are_told_from_other_errors(monkeypatch: pytest.MonkeyPatch, phase: str,
                                                                 backward: bool) -> None:
    failure = _failure(monkeypatch, phase, backward)
    assert compile_failure(failure)
    assert describe_failure(failure).count("\n") == 0 and "test fault" in describe_failure(failure)
    if phase == "backward":  # a plain RuntimeError: only where it was raised marks it
        assert type(failure) is RuntimeError
    assert not compile_failure(RuntimeError("a shape mismatch in eager code"))
    assert not compile_failure(torch.OutOfMemoryError("out of memory"))  # eager would run out too: oom.py's
    assert not compile_failure(KeyboardInterrupt())


def test_no_fault_compiles_with_inductor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(COMPILE_FAULT_ENV, raising=False)
    assert compile_backend() == "inductor"
    monkeypatch.setenv(COMPILE_FAULT_ENV, '{"phase": "sometimes"}')
    with pytest.raises(ValueError, match=COMPILE_FAULT_ENV):
        compile_backend()


def _fake_session(tmp_path: Path, processes: int) -> tuple[SimpleNamespace, torch.nn.Module]:
    """The parts of a Session the evaluation guard reads, around a model with one compiled layer."""
    torch._dynamo.reset()
    model = torch.nn.Module()
    model.add_module("layer", Layer())
    model.add_module("speaker_encoder", Layer())
    compile_regions([model.get_submodule("layer")])  # as perf.speed_up_model compiles
    model.train()
    model.speaker_encoder.eval()
    session = SimpleNamespace(perf=Perf(compile_layers=True), model=model, progress=SimpleNamespace(step=2),
                              accelerator=SimpleNamespace(num_processes=processes), device=torch.device("cpu"),
                              heartbeat=Heartbeat(tmp_path, "r", "n", 4))
    return session, model


def _evaluate(model: torch.nn.Module) -> float:
    """As evaluate.evaluate does: eval mode, no grad, back to train mode only on return."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        value = float(model.get_submodule("layer")(torch.ones(2, 4)).sum())
    if was_training:
        model.train()
        model.get_submodule("speaker_encoder").eval()
    return value


def test_an_evaluation_that_fails_compiled_is_computed_again_eagerly(monkeypatch: pytest.MonkeyPatch,
                                                                    tmp_path: Path) -> None:
    monkeypatch.setenv(COMPILE_FAULT_ENV, '{"phase": "compile"}')
    session, model = _fake_session(tmp_path, processes=1)
    value = eval_or_eager(cast(Session, session), lambda: _evaluate(model))
    with torch.no_grad():
        assert value == float(model.get_submodule("layer")(torch.ones(2, 4)).sum())
    assert model.training and not model.get_submodule("speaker_encoder").training  # train mode, as before
    assert session.perf.compile_layers is False and compiled_modules(model) == []
    status = read_status(tmp_path / "status.json")
    assert status.compilation is not None and status.compilation.startswith("eager since the evaluation after step 2")
    assert [(e.kind, e.step) for e in status.events] == [("compile_fallback", 2)]


def test_with_several_processes_a_compile_failure_ends_the_run_saying_how_to_go_eager(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(COMPILE_FAULT_ENV, '{"phase": "compile"}')
    session, model = _fake_session(tmp_path, processes=2)
    with pytest.raises(Exception) as caught:
        eval_or_eager(cast(Session, session), lambda: _evaluate(model))
    assert compile_failure(caught.value)
    assert compiled_modules(model) == ["layer"] and session.perf.compile_layers  # nothing half-undone
    status = read_status(tmp_path / "status.json")
    assert [e.kind for e in status.events] == ["compile_failed"]
    assert "compile_layers" in status.events[0].message and "2 processes" in status.events[0].message


NAMELESS = """
import torch
from qwen_train.train.device.compiling import compile_regions, setup_failure
layer = torch.nn.Linear(2, 2)
compile_regions([layer])
print(setup_failure())
print(layer._compiled_call_impl is None, tuple(layer(torch.ones(1, 2)).shape))
"""


def test_a_uid_without_a_name_cannot_set_compilation_up_and_the_layers_stay_eager() -> None:
    """As in a container started with --user UID:GID and no USER: importing dynamo fails (inductor names its
    cache after the user). The regions stay eager and the reason is kept for the run's status."""
    env = {k: v for k, v in python_env().items() if k not in ("USER", "LOGNAME", "LNAME", "USERNAME")}
    env["HOME"] = "/tmp"
    # setpriv (util-linux) switches the uid the way a container's --user does: no passwd entry behind it.
    command = ["setpriv", "--reuid", "54321", "--regid", "54321", "--clear-groups", sys.executable, "-c", NAMELESS]
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd="/")
    assert done.returncode == 0, done.stderr[-2000:]
    failure, state = done.stdout.strip().splitlines()[-2:]
    assert failure.startswith("KeyError: ") and "uid not found: 54321" in failure
    assert state == "True (1, 2)"  # not compiled, and it still computes


def test_a_run_whose_compilation_could_not_be_set_up_says_it_trains_eagerly(monkeypatch: pytest.MonkeyPatch,
                                                                         tmp_path: Path) -> None:
    def refuse(self: torch.nn.Module, *args: object, **kwargs: object) -> None:
        raise KeyError("getpwuid(): uid not found: 1000")

    monkeypatch.delenv(COMPILE_FAULT_ENV, raising=False)
    monkeypatch.setattr(torch.nn.Module, "compile", refuse)
    session, model = _fake_session(tmp_path, processes=1)  # its compile call is refused: nothing compiled
    assert compiled_modules(model) == []
    assert setup_failure() == "KeyError: 'getpwuid(): uid not found: 1000'"
    announce_compilation(cast(Session, session))
    assert session.perf.compile_layers is False
    status = read_status(tmp_path / "status.json")
    assert status.compilation == ("eager: torch.compile could not be set up on cpu: KeyError: 'getpwuid(): uid "
                                  "not found: 1000'; the run trains eagerly")
    assert [(e.kind, e.step) for e in status.events] == [("compile_fallback", 2)]
