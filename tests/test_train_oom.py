"""A GPU out of memory mid-run: its own exit code and state, the step not applied, nothing lost, resume exact.

The GPU's torch.OutOfMemoryError is raised on a CPU by the test fault (kind "oom") from inside the forward of
a decoder layer, where a real one would come from.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qwen_train import exitcodes
from qwen_train.spec import Posture
from qwen_train.status import read_status
from qwen_train.train.checkpointing.checkpoint import list_checkpoints
from tests.conftest import MakeDir
from tests.trainer_harness import finish, losses, run, start, write_spec

POSTURE = Posture(checkpoint_every=2, eval_every=100, keep_last=3)
STEPS = 6
MLP = "talker.model.layers.1.mlp"


@pytest.fixture(scope="module")
def reference(demo_root: Path, module_dir: MakeDir) -> list[tuple[int, float, float, float]]:
    where = module_dir("oomref")
    spec = write_spec(demo_root, where, "ref", STEPS, POSTURE, grad_accum=2)
    code, out = run(spec, where / "run")
    assert code == exitcodes.COMPLETED, out[-2000:]
    return losses(where / "run")


def test_out_of_memory_ends_failed_oom_keeps_the_checkpoint_and_resume_loses_nothing(
        demo_root: Path, tmp_path: Path, reference: list[tuple[int, float, float, float]]) -> None:
    spec = write_spec(demo_root, tmp_path, "oom", STEPS, POSTURE, grad_accum=2)
    run_dir = tmp_path / "run"
    fault = {"QWEN_TEST_FAULT": json.dumps({"module": MLP, "step": 5, "kind": "oom"})}
    code, out = finish(start(spec, run_dir, env=fault))
    assert code == exitcodes.FAILED_OOM == 8, out[-3000:]
    assert exitcodes.state_for_exit(code) == "failed_oom"

    status = read_status(run_dir / "status.json")
    assert status.state == "failed_oom" and status.step == 4
    message = status.message or ""
    for words in ("GPU out of memory in step 5", "micro-batch 1/2 (2 rows", "codec frames", "padded to 2 x",
                  "Step 5 was not applied", "step-00000004, is kept", "train.batch_size (now 2)", "--resume",
                  "qwen-train plan"):
        assert words in message, (words, message)
    assert [e.kind for e in status.events].count("out_of_memory") == 1
    assert message in out  # the log says it too

    # Nothing written after the failed step: the newest durable checkpoint is step 4, no half-written one.
    ckpts = run_dir / "checkpoints"
    assert [c.name for c in list_checkpoints(run_dir)] == ["step-00000002", "step-00000004"]
    assert not any(p.name.startswith(".tmp-") for p in ckpts.iterdir())
    assert losses(run_dir) == reference[:4]

    code, out = run(spec, run_dir, "--resume")
    assert code == exitcodes.COMPLETED, out[-3000:]
    assert losses(run_dir) == reference  # steps 5 and 6 as if memory had never run out
    resumed = read_status(run_dir / "status.json")
    assert any(e.kind == "resume" and "step-00000004" in e.message for e in resumed.events)
