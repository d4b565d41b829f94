"""The lean recipe keeps what fp32 master guarantees: exact resume (the rounding stream included), durable and
smaller checkpoints, the non-finite guard with diagnosis and retry, and a loadable export."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from qwen_train import exitcodes
from qwen_train.export import export_run
from qwen_train.spec import Posture
from qwen_train.status import read_status
from qwen_train.train.checkpointing.checkpoint import list_checkpoints, load_state
from qwen_train.train.recipes.lean_adamw import ROUNDING_KEY
from tests.conftest import MakeDir
from tests.trainer_harness import finish, kill, losses, run, start, step_of, wait_until, write_spec

STEPS = 10
POSTURE = Posture(checkpoint_every=4, eval_every=5, keep_last=3)
MLP = "talker.model.layers.1.mlp"
LEAN = {"recipe": "lean", "device": "cpu"}


@pytest.fixture(scope="module")
def reference(demo_root: Path, module_dir: MakeDir) -> Path:
    where = module_dir("leanref")
    spec = write_spec(demo_root, where, "leanref", STEPS, POSTURE, **LEAN)
    code, out = run(spec, where / "run")
    assert code == exitcodes.COMPLETED, out[-2000:]
    assert [s[0] for s in losses(where / "run")] == list(range(1, STEPS + 1))
    return where / "run"


def test_status_and_events_name_the_recipe(reference: Path) -> None:
    status = read_status(reference / "status.json")
    assert status.recipe is not None and status.recipe.startswith("recipe lean: bf16 weights")
    assert "stochastic rounding" in status.recipe and "asked in the spec" in status.recipe
    assert status.events[0].kind == "recipe" and status.events[0].message == status.recipe


def test_sigkill_then_resume_matches_uninterrupted_bit_for_bit(demo_root: Path, tmp_path: Path,
                                                               reference: Path) -> None:
    """The rounding generator's state travels in the checkpoint: a fresh stream after the resume would round
    the weights differently at the very next step, and the losses would part. Both launches write their
    checkpoints through the background writer (the GPU default), which snapshots the lean state too."""
    spec = write_spec(demo_root, tmp_path, "leankill", STEPS, POSTURE, **LEAN)
    run_dir = tmp_path / "run"
    background = {"QWEN_TRAIN_PERF": json.dumps({"async_checkpoint": True})}
    proc = start(spec, run_dir, env=background)
    wait_until(lambda: step_of(run_dir) >= 6, 300, "step 6")
    kill(proc)
    code, out = finish(start(spec, run_dir, "--resume", env=background))
    assert code == exitcodes.COMPLETED, out[-2000:]
    assert losses(run_dir) == losses(reference)


def test_checkpoint_holds_bf16_weights_bf16_moments_and_the_rounding_stream(reference: Path) -> None:
    ckpt = list_checkpoints(reference)[-1]
    state = load_state(ckpt)
    weights = state["model"]
    assert {t.dtype for t in weights.values() if t.is_floating_point()} == {torch.bfloat16}
    moments = [t for entry in state["optimizer"]["state"].values() for k, t in entry.items() if k != "step"]
    assert moments and {t.dtype for t in moments} == {torch.bfloat16}
    rounding = state["optimizer"][ROUNDING_KEY]
    assert rounding["device"] == "cpu" and rounding["state"].dtype == torch.uint8
    # Half of fp32 master's: 2 bytes a weight and 2 a moment instead of 4 (plus a little pickle and RNG state).
    tensor_bytes = sum(t.numel() * t.element_size() for t in [*weights.values(), *moments])
    fp32_bytes = sum(t.numel() * 4 for t in [*weights.values(), *moments])
    size = (ckpt / "state.pt").stat().st_size
    assert tensor_bytes <= size < tensor_bytes + 0.05 * fp32_bytes


def test_a_resume_under_another_recipe_is_refused_with_the_fix(demo_root: Path, tmp_path: Path,
                                                               reference: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(reference, run_dir, ignore=shutil.ignore_patterns("run.lock"))
    spec = write_spec(demo_root, tmp_path, "leanref", STEPS + 2, POSTURE, recipe="fp32-master")
    code, out = run(spec, run_dir, "--resume")
    assert code == exitcodes.CURSOR_REJECTED, out[-2000:]
    status = read_status(run_dir / "status.json")
    assert status.state == "cursor_rejected" and status.message is not None
    assert "trained with recipe 'lean'" in status.message and "set train.recipe to 'lean'" in status.message
    assert [c.name for c in list_checkpoints(run_dir)] == [c.name for c in list_checkpoints(reference)]


def test_export_of_a_lean_checkpoint_loads_with_the_trained_weights(reference: Path, tmp_path: Path) -> None:
    from qwen_tts import Qwen3TTSModel

    out = export_run(reference, out=tmp_path / "exported")
    model = Qwen3TTSModel.from_pretrained(str(out), dtype=torch.float32).model
    assert model.tts_model_type == "base" and model.speaker_encoder is not None
    trained = load_state(list_checkpoints(reference)[-1])["model"]
    for name in ("talker.codec_head.weight", "talker.model.layers.0.mlp.up_proj.weight", "speaker_encoder.fc.weight"):
        assert torch.equal(model.state_dict()[name], trained[name].float())  # bf16 -> fp32 is exact


def test_non_finite_is_diagnosed_rolled_back_and_retried_under_lean(demo_root: Path, tmp_path: Path) -> None:
    spec = write_spec(demo_root, tmp_path, "leannan", 6, Posture(checkpoint_every=2, eval_every=100, keep_last=3),
                      **LEAN)
    run_dir = tmp_path / "run"
    fault = {"QWEN_TEST_FAULT": json.dumps({"module": MLP, "step": 3, "kind": "nan", "times": 1})}
    code, out = finish(start(spec, run_dir, env=fault))
    assert code == exitcodes.COMPLETED, out[-3000:]
    status = read_status(run_dir / "status.json")
    assert status.step == 6 and status.retries == 1
    retry = [e for e in status.events if e.kind == "retry"]
    assert len(retry) == 1 and "rolled back to step-00000002" in retry[0].message
    diag = status.diagnosis
    assert diag is not None and diag.forward is not None and diag.forward.name == MLP
    assert diag.recipe == "lean" and diag.precision == "bf16" and diag.fp32_reproduces is True
    assert "trained with recipe lean, bf16 compute" in diag.summary
    assert [s[0] for s in losses(run_dir)] == list(range(1, 7))


def test_a_frozen_text_embedding_keeps_its_weights_and_gets_no_optimizer_state(demo_root: Path,
                                                                               tmp_path: Path) -> None:
    spec = write_spec(demo_root, tmp_path, "frozen", 2, Posture(checkpoint_every=2, eval_every=100, keep_last=1),
                      freeze_text_embedding=True, **LEAN)
    code, out = run(spec, tmp_path / "run")
    assert code == exitcodes.COMPLETED, out[-2000:]
    state = load_state(list_checkpoints(tmp_path / "run")[-1])
    from qwen_train.modeldir import load_base_model

    model = load_base_model(str(demo_root / "model"), None)[0]
    base = model.state_dict()
    name = "talker.model.text_embedding.weight"
    assert torch.equal(state["model"][name], base[name].to(torch.bfloat16))  # untouched
    assert not torch.equal(state["model"]["talker.codec_head.weight"], base["talker.codec_head.weight"].to(
        torch.bfloat16))  # the rest trained
    trainable = [n for n, _ in model.named_parameters() if not n.startswith("speaker_encoder.") and n != name]
    assert len(state["optimizer"]["param_groups"][0]["params"]) == len(trainable)  # the embedding is not in it
    assert "text embedding frozen" in (read_status(tmp_path / "run" / "status.json").recipe or "")
