"""The precision policy: `auto` (the default) is bf16 autocast over fp32 weights on a bf16 GPU, fp32 on CPU."""

from __future__ import annotations

import pytest
import torch

from qwen_train.spec import RunSpec, SpecError, TrainConfig, decode_spec, encode_spec
from qwen_train.train.session import make_accelerator, resolve_precision


@pytest.fixture(autouse=True)
def _fresh_accelerate_state() -> None:
    """accelerate keeps one process-wide state; each test here builds its own Accelerator."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()


def _spec(**train: object) -> RunSpec:
    return RunSpec(name="p", lane="benchmark", model="m", bundle="b", train=TrainConfig(**train))  # type: ignore[arg-type]


def test_default_is_auto_and_resolves_to_fp32_on_cpu() -> None:
    spec = _spec(device="cpu")
    assert spec.train.precision == "auto"
    assert resolve_precision(spec, cpu=True) == "fp32"
    assert make_accelerator(spec).mixed_precision == "no"


def test_explicit_choices_are_kept() -> None:
    assert resolve_precision(_spec(precision="bf16"), cpu=True) == "bf16"
    assert resolve_precision(_spec(precision="fp32"), cpu=False) == "fp32"
    assert make_accelerator(_spec(precision="bf16", device="cpu")).mixed_precision == "bf16"


@pytest.mark.gpu  # run with -m gpu on the accelerator machine; deselected elsewhere, never skipped as passing
def test_auto_is_bf16_on_a_bf16_gpu() -> None:
    assert torch.cuda.is_available(), "a -m gpu test needs a CUDA device"
    assert resolve_precision(_spec(), cpu=False) == ("bf16" if torch.cuda.is_bf16_supported() else "fp32")


def test_an_old_spec_keeps_its_recorded_precision_and_a_bad_one_is_refused() -> None:
    old = encode_spec(_spec(precision="fp32"))
    assert decode_spec(old, source="old").train.precision == "fp32"
    with pytest.raises(SpecError, match="precision"):
        decode_spec(old.replace(b'"fp32"', b'"fp16"'), source="spec.json")
