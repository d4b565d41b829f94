"""Retention under a kill between "new checkpoint durable" and "old one deleted"; export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from qwen_train import exitcodes
from qwen_train.bundle.manifest import read_manifest
from qwen_train.export import ExportError, export_run
from qwen_train.spec import Posture
from qwen_train.train.checkpointing.checkpoint import list_checkpoints
from tests.conftest import MakeDir
from tests.trainer_harness import kill, run, start, wait_until, write_spec


def _names(run_dir: Path) -> list[str]:
    return [c.name for c in list_checkpoints(run_dir)]


def test_kill_between_durable_and_prune_loses_nothing(demo_root: Path, tmp_path: Path) -> None:
    posture = Posture(checkpoint_every=2, eval_every=100, keep_last=1)
    spec = write_spec(demo_root, tmp_path, "ret", 8, posture)
    run_dir = tmp_path / "run"
    proc = start(spec, run_dir, env={"QWEN_TEST_PAUSE": "checkpoint-before-prune@4:60"})
    wait_until(lambda: _names(run_dir) == ["step-00000002", "step-00000004"], 120, "step 4 durable, step 2 kept")
    kill(proc)
    assert _names(run_dir) == ["step-00000002", "step-00000004"]  # nothing deleted before the kill
    proc = start(spec, run_dir, "--resume", env={"QWEN_TEST_PAUSE": "checkpoint-before-prune@6:60"})
    # Resumed from step 4: until step 6 is durable, both old checkpoints stay.
    wait_until(lambda: "step-00000006" in _names(run_dir), 120, "step 6 durable")
    assert _names(run_dir) == ["step-00000002", "step-00000004", "step-00000006"]
    kill(proc)
    code, out = run(spec, run_dir, "--resume")
    assert code == exitcodes.COMPLETED, out[-2000:]
    assert _names(run_dir) == ["step-00000008"]


@pytest.fixture(scope="module")
def swedish_run(demo_root: Path, module_dir: MakeDir) -> Path:
    where = module_dir("sv")
    spec = write_spec(demo_root, where, "sv", 4, Posture(checkpoint_every=2, eval_every=100, keep_last=3))
    spec.write_bytes(spec.read_bytes().replace(b'"language": null', b'"language": "swedish"'))
    code, out = run(spec, where / "run")
    assert code == exitcodes.COMPLETED, out[-2000:]
    return where / "run"


def test_export_loads_keeps_speaker_encoder_and_clones_a_held_out_voice(demo_root: Path, swedish_run: Path,
                                                                       tmp_path: Path) -> None:
    from qwen_tts import Qwen3TTSModel

    out = export_run(swedish_run, step=2, out=tmp_path / "exported")
    wrapper = Qwen3TTSModel.from_pretrained(str(out), dtype=torch.float32)
    model = wrapper.model
    assert model.tts_model_type == "base" and model.speaker_encoder is not None
    assert "swedish" in model.config.talker_config.codec_language_id
    trained = torch.load(list_checkpoints(swedish_run)[0] / "state.pt", weights_only=False)["model"]
    for name in ("speaker_encoder.fc.weight", "talker.codec_head.weight"):
        torch.testing.assert_close(model.state_dict()[name], trained[name])
    held = next(r for r in read_manifest(demo_root / "bundle") if r.eval_kind == "held_out_speaker")
    audio, rate = sf.read(str(demo_root / "bundle" / held.ref_audio), dtype="float32")
    wavs, out_rate = wrapper.generate_voice_clone(
        text="God morgon, hur mår du?", language="swedish", ref_audio=(audio, rate), x_vector_only_mode=True,
        max_new_tokens=12, non_streaming_mode=True,
    )
    assert out_rate == 24000 and wavs[0].size > 0 and np.isfinite(wavs[0]).all()


def test_export_refuses_unknown_step_and_existing_out(swedish_run: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="no checkpoint at step 3"):
        export_run(swedish_run, step=3, out=tmp_path / "x")
    (tmp_path / "exists").mkdir()
    with pytest.raises(ExportError, match="already exists"):
        export_run(swedish_run, out=tmp_path / "exists")
