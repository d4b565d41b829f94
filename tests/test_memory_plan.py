"""The memory plan: exact parameter counts against the real modules, parts by recipe, the fit, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from qwen_train import exitcodes
from qwen_train.plan import MemoryPlan, count_params, parse_size, plan_memory, read_config
from qwen_train.plan.memory import GIB
from tests.conftest import python_env

REFERENCE = Path(__file__).resolve().parents[1] / "bench" / "train_model_config.json"  # the real model's config


def meta_counts(config: dict[str, object]) -> dict[str, int]:
    """Parameters per part of the real qwen-tts model, built on the meta device (no memory, no weights)."""
    import torch
    from qwen_tts.core.models.configuration_qwen3_tts import Qwen3TTSConfig
    from qwen_tts.core.models.modeling_qwen3_tts import Qwen3TTSForConditionalGeneration

    with torch.device("meta"):
        model = Qwen3TTSForConditionalGeneration(Qwen3TTSConfig(**config))
    parts: dict[str, int] = {}
    for name, param in model.named_parameters():
        if name.startswith("talker.model.layers."):
            part = "talker_layers"
        elif name.startswith("talker.model.text_embedding"):
            part = "text_embedding"
        elif name.startswith("talker.code_predictor."):
            part = "code_predictor"
        elif name.startswith("speaker_encoder."):
            part = "speaker_encoder"
        else:
            part = "talker_other"
        parts[part] = parts.get(part, 0) + param.numel()
    return parts


@pytest.mark.parametrize("which", ["tiny", "reference"])
def test_counts_equal_the_real_modules(which: str, demo_root: Path) -> None:
    config = read_config(demo_root / "model") if which == "tiny" else json.loads(REFERENCE.read_text())
    assert msgspec.structs.asdict(count_params(config)) == meta_counts(config)


def test_the_full_model_is_1_93_billion_parameters_with_a_311_million_text_embedding() -> None:
    counts = count_params(json.loads(REFERENCE.read_text()))
    assert round(counts.total / 1e9, 2) == 1.93 and round(counts.text_embedding / 1e6) == 311


def test_parts_follow_the_recipe_and_what_is_frozen() -> None:
    config = json.loads(REFERENCE.read_text())
    master = plan_memory(config, "fp32-master", frames=1000)
    lean = plan_memory(config, "lean", frames=1000)
    frozen = plan_memory(config, "lean", frames=1000, freeze_text_embedding=True)
    params = master.params
    assert master.parts["weights"] == (4 + 2) * params.total  # fp32, and autocast's bf16 copy for the step
    assert lean.parts["weights"] == 2 * params.total
    assert master.trainable_params == params.total - params.speaker_encoder  # the speaker encoder stays frozen
    assert master.parts["optimizer"] == 8 * master.trainable_params
    assert lean.parts["gradients"] - frozen.parts["gradients"] == 2 * params.text_embedding
    assert master.peak_bytes > lean.peak_bytes > frozen.peak_bytes
    parts = master.parts
    assert master.peak_bytes == (parts["weights"] + parts["optimizer"] + max(parts["gradients"], parts["activations"])
                                 + parts["workspace"] + parts["context"])  # backward frees activations as it goes
    assert master.allocated_bytes == master.peak_bytes - parts["context"]
    # fp32 weights, gradients and two moments alone are 16 bytes a parameter: 28.7 GiB, DESIGN's figure
    fp32_state = 4 * params.total + master.parts["gradients"] + master.parts["optimizer"]
    assert round(fp32_state / GIB, 1) == 28.6
    accumulating = plan_memory(config, "lean", frames=1000, grad_accum=4)  # earlier micro-batches' gradients stay
    assert accumulating.peak_bytes - lean.peak_bytes == min(lean.parts["gradients"], lean.parts["activations"])


def test_the_largest_budget_that_fits_fits_and_one_more_frame_does_not() -> None:
    config = json.loads(REFERENCE.read_text())
    plan = plan_memory(config, "lean", frames=100, gpu_bytes=32 * GIB)
    assert plan.fits and plan.max_frames is not None and plan.max_frames > 100
    assert plan_memory(config, "lean", frames=plan.max_frames, gpu_bytes=32 * GIB).fits
    assert not plan_memory(config, "lean", frames=plan.max_frames + 1, gpu_bytes=32 * GIB).fits
    none = plan_memory(config, "fp32-master", frames=100, gpu_bytes=24 * GIB)
    assert none.max_frames == 0 and none.fits is False  # fp32 master cannot train on a 24 GiB card at all


def test_bad_recipe_frames_and_sizes_are_named() -> None:
    config = json.loads(REFERENCE.read_text())
    with pytest.raises(ValueError, match="unknown recipe 'fp16'"):
        plan_memory(config, "fp16", frames=10)
    with pytest.raises(ValueError, match="at least 1"):
        plan_memory(config, "lean", frames=0)
    assert parse_size("32GiB") == parse_size("32 GB") == parse_size("32g") == 32 * GIB
    assert parse_size("1500MiB") == 1500 * 2**20 and parse_size("4096") == 4096
    for bad in ("", "lots", "-3GiB", "3 parsecs"):
        with pytest.raises(ValueError, match="size"):
            parse_size(bad)


def plan_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "qwen_train", "plan", *args], capture_output=True, text=True,
                          env=python_env(), timeout=120)


def test_the_cli_prints_every_part_and_the_json_the_daemon_reads(demo_root: Path) -> None:
    spec = str(demo_root / "spec.json")
    text = plan_cli(spec, "--gpu-memory", "32GiB")
    assert text.returncode == 0, text.stderr
    for part in ("weights", "gradients", "optimizer", "activations", "workspace", "peak", "fits"):
        assert part in text.stdout
    plan = msgspec.json.decode(plan_cli(spec, "--gpu-memory", "32GiB", "--json").stdout, type=MemoryPlan)
    assert plan.fits and plan.gpu_bytes == 32 * GIB and plan.frames > 0
    tight = plan_cli(spec, "--gpu-memory", "1GiB")
    assert tight.returncode == exitcodes.FAILED and "does NOT fit" in tight.stdout
    bad = plan_cli(spec, "--gpu-memory", "much")
    assert bad.returncode == exitcodes.USAGE and "size 'much'" in bad.stderr


def test_a_config_that_is_a_fifo_or_huge_is_refused_at_once(tmp_path: Path) -> None:
    """The daemon plans at admission from a path a socket user named: it must not block or read without bound."""
    fifo, huge = tmp_path / "fifo", tmp_path / "huge"
    fifo.mkdir()
    os.mkfifo(fifo / "config.json")
    with pytest.raises(ValueError, match="not a regular file"):
        read_config(fifo)
    huge.mkdir()
    (huge / "config.json").write_bytes(b" " * (2 << 20))
    with pytest.raises(ValueError, match="over the .*bound"):
        read_config(huge)
