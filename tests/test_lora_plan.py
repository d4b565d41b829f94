"""The adapter mode's spec, parameter counts and memory plan, and the daemon's admission reading that plan.

Counts are checked against the real modules: peft's LoRA layers attached to the real qwen-tts model (the
tiny one with its weights, the full reference config on the meta device), so a change in peft or qwen-tts
shows up as a failing test rather than a wrong plan.
"""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from qwen_daemon.protocol.resources import GpuSample
from qwen_daemon.sharing.admission import RULE_ROOM, why_not
from qwen_train.plan import plan_for_spec, plan_memory, read_config
from qwen_train.plan.memory import GIB
from qwen_train.plan.params import adapter_params
from qwen_train.plan.render import plan_text
from qwen_train.spec import Adapter, RunSpec, SpecError, TrainConfig, decode_spec, encode_spec, mode_description

REFERENCE = Path(__file__).resolve().parents[1] / "bench" / "train_model_config.json"  # the real model's config


def _trainable(model: object, adapter: Adapter, language_id: int | None) -> int:
    import torch

    from qwen_train.train.recipes.adapter import attach_adapter

    assert isinstance(model, torch.nn.Module)
    attach_adapter(model, adapter, language_id)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("adapter", [Adapter(), Adapter(rank=8, target_modules=("q_proj", "v_proj"),
                                                        code_predictor=True)])
def test_adapter_counts_equal_peft_on_the_tiny_model(demo_root: Path, adapter: Adapter) -> None:
    from qwen_train.modeldir import load_base_model

    model = load_base_model(str(demo_root / "model"), "swedish")[0]
    row = int(model.config.talker_config.codec_language_id["swedish"])
    config = read_config(demo_root / "model")
    expected = adapter_params(config, adapter.rank, adapter.target_modules, adapter.code_predictor, True)
    assert _trainable(model, adapter, row) == expected


def test_adapter_counts_equal_peft_at_full_size() -> None:
    import torch
    from qwen_tts.core.models.configuration_qwen3_tts import Qwen3TTSConfig
    from qwen_tts.core.models.modeling_qwen3_tts import Qwen3TTSForConditionalGeneration

    config = json.loads(REFERENCE.read_text())
    with torch.device("meta"):
        model = Qwen3TTSForConditionalGeneration(Qwen3TTSConfig(**config))
        trained = _trainable(model, Adapter(), None)
    assert trained == adapter_params(config, 16, Adapter().target_modules, False, False)
    assert round(trained / 1e6, 1) == 17.4  # rank 16 on the 28 talker layers' seven projections


def test_a_lora_plan_keeps_the_base_frozen_and_fits_where_the_full_run_does_not() -> None:
    config = json.loads(REFERENCE.read_text())
    full = plan_memory(config, "lean", 1500, gpu_bytes=16 * GIB)
    lora = plan_memory(config, "lean", 1500, gpu_bytes=16 * GIB, adapter=Adapter(), language_row=True)
    assert lora.mode == "lora" and full.mode == "full"
    assert lora.trainable_params == adapter_params(config, 16, Adapter().target_modules, False, True)
    assert lora.parts["weights"] == lora.params.total * 2 + lora.trainable_params * 6  # bf16 base, fp32 adapter
    assert lora.parts["optimizer"] == lora.trainable_params * 8  # fp32 AdamW moments, whatever the recipe
    assert lora.parts["activations"] > full.parts["activations"]  # the rank-wide intermediates
    assert full.peak_bytes - lora.peak_bytes > 0.9 * full.parts["optimizer"]  # the full run's AdamW state, gone
    assert lora.fits and not full.fits
    master = plan_memory(config, "fp32-master", 1500, adapter=Adapter())
    projections = master.params.total - master.params.text_embedding - master.params.speaker_encoder
    # fp32 base, and the bf16 copy autocast makes of each frozen projection, which autograd keeps for the backward
    assert master.parts["weights"] == master.params.total * 4 + projections * 2 + master.trainable_params * 6
    dropped = plan_memory(config, "lean", 1500, adapter=Adapter(dropout=0.1))
    assert dropped.parts["activations"] > lora.parts["activations"]  # a dropped copy of each adapted input
    text = plan_text(lora)
    assert "bf16 frozen base, fp32 LoRA adapters" in text
    assert f"a LoRA adapter of {lora.trainable_params / 1e6:.2f} M trained" in text
    with pytest.raises(ValueError, match="for an adapter run"):
        plan_memory(config, "upstream", 1500, adapter=Adapter())


def _spec(root: Path, name: str, adapter: Adapter | None) -> RunSpec:
    (root / "model").mkdir(exist_ok=True)
    (root / "model" / "config.json").write_text(REFERENCE.read_text())
    return RunSpec(name=name, lane="benchmark", model=str(root / "model"), bundle=str(root / "bundle"),
                   train=TrainConfig(frame_budget=3000, recipe="lean", adapter=adapter))


def test_admission_starts_a_lora_run_where_the_full_one_is_refused(tmp_path: Path) -> None:
    lora, full = _spec(tmp_path, "lora", Adapter()), _spec(tmp_path, "full", None)
    need_lora = plan_for_spec(lora, gpu_bytes=32 * GIB).peak_bytes
    need_full = plan_for_spec(full, gpu_bytes=32 * GIB).peak_bytes
    assert need_lora < need_full
    used = 32 * GIB - (need_lora + need_full) // 2  # another tenant leaves room for one of them
    card = [GpuSample(index=0, name="R9700", busy_percent=1.0, vram_used_bytes=used, vram_total_bytes=32 * GIB)]
    assert why_not(lora, card, None, []) is None
    refused = why_not(full, card, None, [])
    assert refused is not None and refused[0] == RULE_ROOM and "peak as a full fine-tune" in refused[1]
    tighter = [msgspec.structs.replace(card[0], vram_used_bytes=32 * GIB - need_lora // 2)]
    refused = why_not(lora, tighter, None, [])
    assert refused is not None and f"plans a {need_lora / GIB:.1f} GiB peak as a LoRA adapter run" in refused[1]


def test_the_spec_names_a_bad_adapter_field() -> None:
    base = {"name": "x", "lane": "benchmark", "model": "m", "bundle": "b"}
    for adapter, field in [({"rank": 0}, "rank"), ({"alpha": 0}, "alpha"), ({"dropout": 1.0}, "dropout"),
                           ({"target_modules": []}, "target_modules is empty"),
                           ({"target_modules": ["q_proj", "mlp.up"]}, "'mlp.up' is not a module name")]:
        with pytest.raises(SpecError, match=field):
            decode_spec(json.dumps({**base, "train": {"adapter": adapter}}))
    spec = decode_spec(json.dumps({**base, "train": {"adapter": {}}}))
    assert spec.train.mode == "lora" and spec.train.adapter == Adapter()
    assert decode_spec(encode_spec(spec)) == spec
    assert decode_spec(json.dumps(base)).train.mode == "full"  # a spec from before adapters: a full run
    assert mode_description(spec.train) == "LoRA rank 16, alpha 32, dropout 0 on talker attention + MLP"
    frozen = msgspec.structs.replace(spec.train, adapter=None, freeze_text_embedding=True)
    assert mode_description(frozen) == "full fine-tune, text embedding frozen"


def test_a_target_that_matches_no_projection_is_named(demo_root: Path) -> None:
    from qwen_train.modeldir import load_base_model
    from qwen_train.train.recipes.adapter import AdapterError, attach_adapter

    model = load_base_model(str(demo_root / "model"), None)[0]
    with pytest.raises(AdapterError, match="qkv_proj match no module of the talker's decoder layers"):
        attach_adapter(model, Adapter(target_modules=("q_proj", "qkv_proj")), None)
