"""LoRA adapters as a training mode (train.adapter): the same loop, guard, exact resume and export as a full run.

Real trainer processes on the tiny model, as the full-run tests: a LoRA run trains (its loss falls), its
checkpoints hold the adapter and its optimizer state only, it resumes bit for bit after SIGKILL (under
both recipes), the non-finite guard rolls it back and retries, a resume that would change the mode or the
base weights is refused, and the merged export loads in qwen-tts, generates, and computes what the base
with the adapter applied computes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import torch

from qwen_train import exitcodes
from qwen_train.bundle.manifest import read_manifest
from qwen_train.export import ExportError, export_run
from qwen_train.spec import Adapter, Posture, RunSpec, TrainConfig
from qwen_train.status import read_status
from qwen_train.train.checkpointing.checkpoint import list_checkpoints, load_state, verify_checkpoint
from qwen_train.train.heartbeat import Heartbeat
from qwen_train.train.loop import announce_recipe
from qwen_train.train.recipes.adapter import base_digest, load_adapter_dir
from qwen_train.train.recipes.recipe import Recipe
from tests.conftest import MakeDir, python_env
from tests.trainer_harness import finish, kill, losses, run, start, step_of, wait_until, write_spec

STEPS = 10
POSTURE = Posture(checkpoint_every=4, eval_every=5, keep_last=3)
ADAPTER = {"rank": 4, "alpha": 8}
MLP = "talker.model.layers.1.mlp"


def lora_spec(demo_root: Path, where: Path, name: str, steps: int = STEPS, posture: Posture = POSTURE,
              **train: object) -> Path:
    """A Swedish-tagged LoRA spec (the language row trains too); an adapter wants a larger lr than 1e-3."""
    config = {"adapter": ADAPTER, "lr": 5e-3, "device": "cpu", **train}
    spec = write_spec(demo_root, where, name, steps, posture, **config)
    spec.write_bytes(spec.read_bytes().replace(b'"language": null', b'"language": "swedish"'))
    return spec


def _reference(demo_root: Path, where: Path, **train: object) -> Path:
    spec = lora_spec(demo_root, where, "loraref", **train)
    code, out = run(spec, where / "run")
    assert code == exitcodes.COMPLETED, out[-2000:]
    assert [s[0] for s in losses(where / "run")] == list(range(1, STEPS + 1))
    return where / "run"


@pytest.fixture(scope="module")
def reference(demo_root: Path, module_dir: MakeDir) -> Path:
    return _reference(demo_root, module_dir("loraref"))


@pytest.fixture(scope="module")
def lean_reference(demo_root: Path, module_dir: MakeDir) -> Path:
    return _reference(demo_root, module_dir("loralean"), recipe="lean")


def test_a_lora_run_trains_and_says_so(reference: Path) -> None:
    totals = [s[1] for s in losses(reference)]
    assert np.mean(totals[-3:]) < np.mean(totals[:3]) - 0.05  # the loss falls
    status = read_status(reference / "status.json")
    assert status.recipe is not None and "fp32 LoRA adapters" in status.recipe
    assert "LoRA rank 4, alpha 8, dropout 0 on talker attention + MLP" in status.recipe
    assert not [e for e in status.events if e.kind == "hint"]  # lr 5e-3: nothing to say


@pytest.mark.parametrize(("lr", "hinted"), [(2e-5, True), (2e-4, False)])
def test_an_adapter_run_at_a_full_runs_learning_rate_is_told_so(tmp_path: Path, lr: float, hinted: bool,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    spec = RunSpec(name="r", lane="benchmark", model="m", bundle="b", train=TrainConfig(lr=lr, adapter=Adapter()))
    session = SimpleNamespace(spec=spec, recipe=Recipe("lean", "asked in the spec"),
                              accelerator=SimpleNamespace(mixed_precision="bf16"),
                              heartbeat=Heartbeat(tmp_path, "r", "n", 10))
    announce_recipe(session)  # type: ignore[arg-type]
    hints = [e.message for e in read_status(tmp_path / "status.json").events if e.kind == "hint"]
    assert bool(hints) == hinted
    if hinted:
        assert "train.lr 2e-05 is a full fine-tune's learning rate" in hints[0] and "1e-4 to 2e-4" in hints[0]
        assert hints[0] in capsys.readouterr().err


def test_checkpoints_hold_the_adapter_and_its_optimizer_state_only(demo_root: Path, reference: Path) -> None:
    ckpt = list_checkpoints(reference)[-1]
    state = load_state(ckpt)
    names = set(state["model"])
    assert names and all(".lora_A." in n or ".lora_B." in n or n == "language_row.delta" for n in names)
    assert sum(".lora_A." in n for n in names) == 2 * 7  # two talker layers, seven projections each
    assert not any("code_predictor" in n for n in names)  # the code predictor is optional, off by default
    assert len(state["optimizer"]["param_groups"][0]["params"]) == len(names)
    assert {t.dtype for t in state["model"].values()} == {torch.float32}
    assert state["model"]["language_row.delta"].abs().sum() > 0  # the Swedish tag's row trained
    assert verify_checkpoint(ckpt).base_model_digest == base_digest(demo_root / "model")
    base_bytes = (demo_root / "model" / "model.safetensors").stat().st_size
    assert (ckpt / "state.pt").stat().st_size < base_bytes / 5


@pytest.mark.parametrize("recipe", ["fp32-master", "lean"])
def test_sigkill_then_resume_matches_uninterrupted_bit_for_bit(demo_root: Path, tmp_path: Path, recipe: str,
                                                               request: pytest.FixtureRequest) -> None:
    """Killed after the step-4 checkpoint, resumed from it: the same losses as the uninterrupted run. The
    background writer (the GPU default) snapshots the adapter state on both launches."""
    ref = request.getfixturevalue("reference" if recipe == "fp32-master" else "lean_reference")
    spec = lora_spec(demo_root, tmp_path, "lorakill", recipe=recipe)
    run_dir = tmp_path / "run"
    background = {"QWEN_TRAIN_PERF": json.dumps({"async_checkpoint": True})}
    proc = start(spec, run_dir, env=background)
    wait_until(lambda: step_of(run_dir) >= 6, 300, "step 6")
    kill(proc)
    code, out = finish(start(spec, run_dir, "--resume", env=background))
    assert code == exitcodes.COMPLETED, out[-2000:]
    assert "resumed from step-00000004" in " ".join(e.message for e in read_status(run_dir / "status.json").events)
    assert losses(run_dir) == losses(ref)


def test_a_resume_that_changes_the_mode_is_refused_with_the_fix(demo_root: Path, tmp_path: Path,
                                                                reference: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(reference, run_dir, ignore=shutil.ignore_patterns("run.lock"))
    spec = write_spec(demo_root, tmp_path, "loraref", STEPS + 2, POSTURE, device="cpu")  # no adapter: full
    code, out = run(spec, run_dir, "--resume")
    assert code == exitcodes.CURSOR_REJECTED, out[-2000:]
    message = read_status(run_dir / "status.json").message or ""
    assert "trained as a lora run" in message and "asks for a full one" in message
    assert 'set train.adapter to {"rank":4,"alpha":8' in message
    assert [c.name for c in list_checkpoints(run_dir)] == [c.name for c in list_checkpoints(reference)]


def test_a_resume_or_export_over_other_base_weights_is_refused(demo_root: Path, tmp_path: Path,
                                                               reference: Path) -> None:
    """The checkpoint holds no base weights: applied to another base it would train something else."""
    from safetensors.torch import load_file, save_file

    other = tmp_path / "model"
    shutil.copytree(demo_root / "model", other)
    weights = load_file(str(other / "model.safetensors"))
    weights["talker.codec_head.weight"] = weights["talker.codec_head.weight"] + 1.0
    save_file(weights, str(other / "model.safetensors"), metadata={"format": "pt"})
    run_dir = tmp_path / "run"
    shutil.copytree(reference, run_dir, ignore=shutil.ignore_patterns("run.lock"))
    spec = lora_spec(demo_root, tmp_path, "loraref", STEPS + 2)
    spec.write_bytes(spec.read_bytes().replace(str(demo_root / "model").encode(), str(other).encode()))
    code, out = run(spec, run_dir, "--resume")
    assert code == exitcodes.CURSOR_REJECTED, out[-2000:]
    message = read_status(run_dir / "status.json").message or ""
    assert "other base weights" in message and "point spec.model at the base it was trained on" in message


def test_the_guard_diagnoses_rolls_back_to_the_fresh_adapter_and_retries(demo_root: Path, tmp_path: Path) -> None:
    """A NaN before the first durable checkpoint: the rollback restores the adapter as initialised."""
    spec = lora_spec(demo_root, tmp_path, "loranan", 4, Posture(checkpoint_every=2, eval_every=100, keep_last=3))
    run_dir = tmp_path / "run"
    fault = {"QWEN_TEST_FAULT": json.dumps({"module": MLP, "step": 1, "kind": "nan", "times": 1})}
    code, out = finish(start(spec, run_dir, env=fault))
    assert code == exitcodes.COMPLETED, out[-3000:]
    status = read_status(run_dir / "status.json")
    assert status.step == 4 and status.retries == 1
    retry = [e for e in status.events if e.kind == "retry"]
    assert len(retry) == 1 and "rolled back to the base weights" in retry[0].message
    diag = status.diagnosis
    assert diag is not None and diag.forward is not None and diag.forward.name == MLP
    assert [s[0] for s in losses(run_dir)] == [1, 2, 3, 4]


@pytest.fixture(scope="module")
def exports(reference: Path, module_dir: MakeDir) -> tuple[Path, Path]:
    where = module_dir("loraexport")
    return export_run(reference, out=where / "merged"), export_run(reference, out=where / "adapter", adapter_only=True)


def test_the_merged_export_loads_as_a_base_model_and_generates(demo_root: Path, exports: tuple[Path, Path]) -> None:
    from qwen_tts import Qwen3TTSModel

    merged, _adapter = exports
    wrapper = Qwen3TTSModel.from_pretrained(str(merged), dtype=torch.float32)
    model = wrapper.model
    assert model.tts_model_type == "base" and model.speaker_encoder is not None
    assert "swedish" in model.config.talker_config.codec_language_id
    assert not any("lora" in name or "language_row" in name for name in model.state_dict())
    provenance = json.loads((merged / "export.json").read_text())
    assert provenance["contents"] == "lora-merged"
    held = next(r for r in read_manifest(demo_root / "bundle") if r.eval_kind == "held_out_speaker")
    audio, rate = sf.read(str(demo_root / "bundle" / held.ref_audio), dtype="float32")
    wavs, out_rate = wrapper.generate_voice_clone(
        text="God morgon, hur mår du?", language="swedish", ref_audio=(audio, rate), x_vector_only_mode=True,
        max_new_tokens=12, non_streaming_mode=True,
    )
    assert out_rate == 24000 and wavs[0].size > 0 and np.isfinite(wavs[0]).all()


def _forward(model: torch.nn.Module, demo_root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The talker's logits and the three losses on a real batch of held-out rows (the language tag in it)."""
    from qwen_train.modeldir import load_base_model
    from qwen_train.train.data.batches import BundleData
    from qwen_train.train.data.layout import SpecialIds
    from qwen_train.train.objective import Objective, embed_inputs, speaker_embeddings

    processor = load_base_model(str(demo_root / "model"), "swedish")[1]
    lang = int(model.config.talker_config.codec_language_id["swedish"])
    data = BundleData(demo_root / "bundle", processor, SpecialIds.from_config(model.config), lang, "eval")
    batch, mels, _rows = data.batch([0, 1])
    assert (batch["codec_ids"] == lang).any()
    model.eval()
    with torch.no_grad():
        spk = speaker_embeddings(model, mels)
        logits = model.talker(inputs_embeds=embed_inputs(model, batch, spk), attention_mask=batch["attention_mask"],
                              use_cache=False).logits
        return logits, Objective(model, 0.3)(batch, mels)


def test_the_merged_export_equals_the_base_with_the_adapter_applied(demo_root: Path,
                                                                     exports: tuple[Path, Path]) -> None:
    from qwen_tts import Qwen3TTSModel

    from qwen_train.modeldir import load_base_model

    merged_dir, adapter_dir = exports
    assert json.loads((adapter_dir / "export.json").read_text())["contents"] == "lora-adapter"
    assert (adapter_dir / "adapter_config.json").is_file() and (adapter_dir / "adapter_model.safetensors").is_file()
    merged = Qwen3TTSModel.from_pretrained(str(merged_dir), dtype=torch.float32).model
    base = load_base_model(str(demo_root / "model"), "swedish")[0]
    base_logits, _ = _forward(base, demo_root)
    adapted = load_adapter_dir(base, adapter_dir)  # peft's PeftModel.from_pretrained, unmerged, plus the row
    assert any(".lora_A." in name for name, _ in adapted.named_parameters())
    want_logits, want_losses = _forward(adapted, demo_root)
    got_logits, got_losses = _forward(merged, demo_root)
    torch.testing.assert_close(got_logits, want_logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got_losses, want_losses, rtol=1e-5, atol=1e-5)
    assert (want_logits - base_logits).abs().max() > 1e-2  # the adapter changed what the model computes


def test_an_adapter_alone_is_refused_for_a_full_run(reference: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "full"
    shutil.copytree(reference, run_dir, ignore=shutil.ignore_patterns("run.lock"))
    ckpt = list_checkpoints(run_dir)[-1]
    meta = json.loads((ckpt / "meta.json").read_text())
    spec = json.loads(meta["spec"])
    spec["train"]["adapter"] = None
    meta["spec"] = json.dumps(spec)
    (ckpt / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ExportError, match="a full fine-tune has no adapter to write alone"):
        export_run(run_dir, out=tmp_path / "x", adapter_only=True)


def test_the_gate_judges_a_lora_run_like_any_run(reference: Path, tmp_path: Path) -> None:
    """The gate exports the newest checkpoint (merged) and measures every criterion on it."""
    from qwen_train.gate.verdict import CRITERIA, read_verdict, verdict_path
    from tests.gate_asr import build_tiny_asr
    from tests.gate_fixtures import LOOSE, resource_summary, write_json

    run_dir = tmp_path / "run"
    shutil.copytree(reference, run_dir, ignore=shutil.ignore_patterns("run.lock", "export"))
    write_json(run_dir / "resources.json", resource_summary())
    asr = build_tiny_asr(tmp_path / "asr")
    cmd = [sys.executable, "-m", "qwen_train", "gate", str(run_dir), "--asr", str(asr),
           "--thresholds", str(write_json(tmp_path / "loose.json", LOOSE)), "--max-rows", "2"]
    proc = subprocess.run(cmd, env=python_env(), capture_output=True, text=True, timeout=600)
    verdict = read_verdict(verdict_path(run_dir))
    assert tuple(c.name for c in verdict.criteria) == CRITERIA
    assert verdict.passed and proc.returncode == 0, proc.stdout + proc.stderr
    beats = next(c for c in verdict.criteria if c.name == "eval_beats_base")
    assert beats.measured is not None and beats.threshold is not None and beats.measured < beats.threshold
    export = run_dir / "export" / f"step-{STEPS:08d}"
    assert verdict.model == str(export) and json.loads((export / "export.json").read_text())["contents"] == \
        "lora-merged"
