"""Which recipe a spec trains with: `auto` by device and memory, explicit choices kept, mismatched resumes named."""

from __future__ import annotations

import json

import pytest
import torch

from qwen_train.spec import RunSpec, SpecError, TrainConfig, decode_spec, encode_spec
from qwen_train.train.recipes import recipe as recipe_module
from qwen_train.train.recipes.recipe import (
    GIB,
    Recipe,
    apply_recipe,
    fp32_weights,
    pin_recipe,
    recipe_mismatch,
    resolve_recipe,
)
from qwen_train.train.session import make_accelerator, resolve_precision


@pytest.fixture(autouse=True)
def _fresh_accelerate_state() -> None:
    """accelerate keeps one process-wide state; each test here builds its own Accelerator."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()


def _train(**fields: object) -> TrainConfig:
    return TrainConfig(**fields)  # type: ignore[arg-type]


def _spec(**train: object) -> RunSpec:
    return RunSpec(name="r", lane="benchmark", model="m", bundle="b", train=_train(**train))


CUDA = torch.device("cuda", 0)  # only a device name here: device_memory is replaced where it would be read


def test_auto_is_fp32_master_on_cpu_and_lean_only_on_a_small_bf16_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _train().recipe == "auto"
    assert resolve_recipe(_train(), torch.device("cpu"), "no").name == "fp32-master"
    monkeypatch.setattr(recipe_module, "device_memory", lambda device: int(31.9 * GIB))
    small = resolve_recipe(_train(), CUDA, "bf16")
    assert small.name == "lean" and "31.9 GiB" in small.why and "under 40 GiB" in small.why
    assert resolve_recipe(_train(), CUDA, "no").name == "fp32-master"  # no bf16 autocast: lean cannot run
    monkeypatch.setattr(recipe_module, "device_memory", lambda device: int(139.8 * GIB))
    big = resolve_recipe(_train(), CUDA, "bf16")
    assert big.name == "fp32-master" and "139.8 GiB" in big.why


def test_auto_gives_an_adapter_run_lean_on_any_bf16_gpu_and_the_plan_agrees(monkeypatch: pytest.MonkeyPatch) -> None:
    """An adapter's own weights are fp32 either way: fp32-master would only add an fp32 copy of the frozen base."""
    from qwen_train.plan.for_spec import resolve_recipe as plan_recipe
    from qwen_train.spec import Adapter

    monkeypatch.setattr(recipe_module, "device_memory", lambda device: int(139.8 * GIB))
    adapter = _train(adapter=Adapter())
    big = resolve_recipe(adapter, CUDA, "bf16")
    assert big.name == "lean" and "adapter run" in big.why
    assert resolve_recipe(adapter, CUDA, "no").name == "fp32-master"  # no bf16 autocast: still fp32 master
    assert resolve_recipe(adapter, torch.device("cpu"), "no").name == "fp32-master"
    spec = _spec(adapter=Adapter())
    assert plan_recipe(spec, int(139.8 * GIB)) == "lean" and plan_recipe(spec, None) == "fp32-master"
    assert plan_recipe(_spec(adapter=Adapter(), precision="fp32"), int(139.8 * GIB)) == "fp32-master"
    assert plan_recipe(_spec(), int(139.8 * GIB)) == "fp32-master"  # a full run on a big card keeps fp32 master
    assert plan_recipe(_spec(), 32 * GIB) == "lean"


def test_explicit_recipes_are_kept_and_lean_computes_in_bf16_even_on_cpu() -> None:
    assert resolve_recipe(_train(recipe="fp32-master"), CUDA, "bf16") == Recipe("fp32-master", "asked in the spec")
    lean = _spec(recipe="lean", device="cpu")
    assert resolve_precision(lean, cpu=True) == "bf16"
    accelerator = make_accelerator(lean)
    assert accelerator.mixed_precision == "bf16"
    assert resolve_recipe(lean.train, accelerator.device, "bf16").name == "lean"
    with pytest.raises(ValueError, match="bf16 autocast"):
        resolve_recipe(_train(recipe="lean", precision="bf16"), torch.device("cpu"), "no")


def test_a_lean_spec_that_forbids_bf16_is_refused_and_old_specs_decode_as_auto() -> None:
    bad = encode_spec(_spec(recipe="lean", precision="fp32"))
    with pytest.raises(SpecError, match="lean"):
        decode_spec(bad, source="spec.json")
    old = json.loads(encode_spec(_spec()))
    del old["train"]["recipe"], old["train"]["freeze_text_embedding"]
    assert decode_spec(json.dumps(old), source="old").train.recipe == "auto"
    old["train"]["recipe"] = "bf16-everything"
    with pytest.raises(SpecError, match="recipe"):
        decode_spec(json.dumps(old), source="spec.json")


def test_pinned_spec_records_the_resolved_recipe_and_a_mismatch_names_the_fix() -> None:
    pinned = pin_recipe(_spec(), Recipe("lean", "auto: 31.9 GiB"))
    assert pinned.train.recipe == "lean"
    recorded = encode_spec(pinned).decode()
    assert recipe_mismatch("step-00000004", recorded, pinned) is None
    message = recipe_mismatch("step-00000004", recorded, pin_recipe(_spec(), Recipe("fp32-master", "auto")))
    assert message is not None and "step-00000004 was trained with recipe 'lean'" in message
    assert "set train.recipe to 'lean'" in message
    # A checkpoint from before recipes recorded "auto" (or nothing), and those runs were all fp32 master.
    before = json.loads(recorded)
    del before["train"]["recipe"]
    assert recipe_mismatch("step-1", json.dumps(before), pin_recipe(_spec(), Recipe("fp32-master", "x"))) is None


def _model() -> torch.nn.Module:
    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.talker = torch.nn.Module()
            self.talker.model = torch.nn.Module()
            self.talker.model.text_embedding = torch.nn.Embedding(10, 4)
            self.head = torch.nn.Linear(4, 3)
            self.register_buffer("inv_freq", torch.arange(4, dtype=torch.float32) / 7)

    return Tiny()


def test_lean_makes_parameters_bf16_keeps_buffers_and_freezing_is_its_own_switch() -> None:
    model = _model()
    apply_recipe(model, Recipe("lean", "test"), freeze_text_embedding=True)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert model.get_buffer("inv_freq").dtype == torch.float32  # rotary frequencies lose positions in bf16
    assert not model.talker.model.text_embedding.weight.requires_grad and model.head.weight.requires_grad
    master = _model()
    apply_recipe(master, Recipe("fp32-master", "test"), freeze_text_embedding=False)
    assert {p.dtype for p in master.parameters()} == {torch.float32}
    assert all(p.requires_grad for p in master.parameters())


def test_fp32_weights_is_exact_both_ways() -> None:
    model = _model()
    apply_recipe(model, Recipe("lean", "test"), freeze_text_embedding=False)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with fp32_weights(model):
        assert {p.dtype for p in model.parameters()} == {torch.float32}
        for name, param in model.named_parameters():
            assert torch.equal(param.detach(), before[name].float())
    for name, param in model.named_parameters():
        assert param.dtype == torch.bfloat16 and torch.equal(param.detach().view(torch.int16),
                                                             before[name].view(torch.int16))
