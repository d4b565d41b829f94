"""Stochastic rounding to bf16 and the lean recipe's AdamW, checked against exact arithmetic and torch's AdamW."""

from __future__ import annotations

import copy

import pytest
import torch

from qwen_train.train.recipes import lean_adamw
from qwen_train.train.recipes.lean_adamw import ROUNDING_KEY, LeanAdamW
from qwen_train.train.recipes.sround import round_into_, stochastic_bf16

CPU = torch.device("cpu")


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _neighbours(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The bf16 values just toward and just away from zero of each fp32 value (equal when representable)."""
    bits = x.view(torch.int32)
    toward = (bits & -(1 << 16)).view(torch.float32)
    away = torch.where((bits & 0xFFFF) != 0, (bits & -(1 << 16)) + (1 << 16), bits & -(1 << 16)).view(torch.float32)
    return toward, away


def test_representable_values_are_exact_and_special_values_survive() -> None:
    exact = torch.tensor([0.0, -0.0, 1.0, -2.5, 3.140625, 1e-30, float("inf"), float("-inf")])
    exact = exact.to(torch.bfloat16).float()
    out = stochastic_bf16(exact, _gen())
    assert torch.equal(out.float(), exact)
    assert torch.isnan(stochastic_bf16(torch.tensor([float("nan")]), _gen())).all()


def test_every_result_is_one_of_the_two_bf16_neighbours_of_either_sign() -> None:
    x = torch.randn(100_000, generator=_gen(1)) * torch.logspace(-20, 20, 100_000)
    toward, away = _neighbours(x)
    out = stochastic_bf16(x, _gen(2)).float()
    assert bool(((out == toward) | (out == away)).all())
    assert bool((out == away).any()) and bool((out == toward).any())


def test_rounding_is_unbiased_where_round_to_nearest_loses_the_change() -> None:
    """1 + 2^-10 lies a quarter of the way from 1 to the next bf16 (1 + 2^-7): nearest rounding gives 1 always;
    stochastic rounding gives 1 + 2^-7 a quarter of the time, so the mean is the exact value. With 200,000
    draws the standard error of the mean is 2^-7 * sqrt(0.25 * 0.75 / 200000) = 7.6e-6; the bound is 5 of those."""
    value = 1 + 2.0**-10
    x = torch.full((200_000,), value)
    assert float(x.to(torch.bfloat16).float().mean()) == 1.0  # nearest: the change is gone
    mean = float(stochastic_bf16(x, _gen(3)).double().mean())
    assert abs(mean - value) < 5 * 7.6e-6


def test_the_same_generator_state_gives_the_same_bits_and_no_global_draw() -> None:
    x = torch.randn(4096, generator=_gen(4))
    before = torch.get_rng_state()
    a, b = stochastic_bf16(x, _gen(5)), stochastic_bf16(x, _gen(5))
    assert torch.equal(a.view(torch.int16), b.view(torch.int16))
    assert not torch.equal(a.view(torch.int16), stochastic_bf16(x, _gen(6)).view(torch.int16))
    assert torch.equal(torch.get_rng_state(), before)  # the global stream is untouched


def test_round_into_checks_dtypes() -> None:
    target = torch.zeros(3, dtype=torch.bfloat16)
    round_into_(target, torch.tensor([1.0, 2.0, 3.0]), _gen())
    assert target.tolist() == [1.0, 2.0, 3.0]
    with pytest.raises(TypeError, match="fp32"):
        stochastic_bf16(torch.zeros(2, dtype=torch.float64), _gen())
    with pytest.raises(TypeError, match="bf16"):
        round_into_(torch.zeros(2), torch.zeros(2), _gen())


def _pair(seed: int, shape: tuple[int, ...]) -> tuple[torch.nn.Parameter, torch.nn.Parameter]:
    """The same bf16 values as a bf16 parameter and as an fp32 parameter."""
    values = torch.randn(shape, generator=_gen(seed)).to(torch.bfloat16)
    return torch.nn.Parameter(values.clone()), torch.nn.Parameter(values.float())


def test_one_step_is_torch_adamw_rounded_to_a_neighbour(monkeypatch: pytest.MonkeyPatch) -> None:
    """From equal states, LeanAdamW's new weight and moments are bf16 neighbours of torch.optim.AdamW's fp32
    results: the same update rule, only the last rounding differs. A small CHUNK runs the chunked path too."""
    monkeypatch.setattr(lean_adamw, "CHUNK", 1000)
    lean_p, ref_p = _pair(7, (37, 101))
    grad = torch.randn(37, 101, generator=_gen(8)).to(torch.bfloat16)
    lean = LeanAdamW([lean_p], lr=1e-2, weight_decay=0.1, seed=1, device=CPU)
    ref = torch.optim.AdamW([ref_p], lr=1e-2, weight_decay=0.1, foreach=False)
    for _ in range(3):  # the moments go through steps 1..3 with their bias corrections
        lean_p.grad, ref_p.grad = grad.clone(), grad.float()
        lean.step()
        ref.step()
        # keep the comparison one-step: restart the reference from the lean state
        with torch.no_grad():
            for name in ("exp_avg", "exp_avg_sq"):
                toward, away = _neighbours(ref.state[ref_p][name].contiguous())
                got = lean.state[lean_p][name].float()
                assert bool(((got == toward) | (got == away)).all()), name
                ref.state[ref_p][name].copy_(got)
            toward, away = _neighbours(ref_p.detach().contiguous())
            got = lean_p.detach().float()
            assert bool(((got == toward) | (got == away)).all())
            ref_p.copy_(got)
    assert lean.state[lean_p]["step"] == 3


def test_parameters_must_be_bf16() -> None:
    with pytest.raises(TypeError, match="bf16"):
        LeanAdamW([torch.nn.Parameter(torch.zeros(3))], lr=1e-3, weight_decay=0.0, seed=0, device=CPU)


def _train(opt: LeanAdamW, param: torch.nn.Parameter, steps: int, seed: int) -> None:
    gen = _gen(seed)
    for _ in range(steps):
        param.grad = torch.randn(param.shape, generator=gen).to(torch.bfloat16)
        opt.step()


def test_state_dict_carries_the_rounding_stream_so_a_restore_continues_bit_for_bit() -> None:
    shape = (64, 64)
    p1 = torch.nn.Parameter(torch.randn(shape, generator=_gen(9)).to(torch.bfloat16))
    first = LeanAdamW([p1], lr=1e-3, weight_decay=0.01, seed=11, device=CPU)
    _train(first, p1, 5, seed=1)
    saved_weights, saved = p1.detach().clone(), copy.deepcopy(first.state_dict())  # as a checkpoint keeps it
    assert ROUNDING_KEY in saved and saved["state"][0]["exp_avg"].dtype == torch.bfloat16
    _train(first, p1, 5, seed=2)

    p2 = torch.nn.Parameter(saved_weights.clone())
    second = LeanAdamW([p2], lr=1e-3, weight_decay=0.01, seed=11, device=CPU)
    second.load_state_dict(saved)
    _train(second, p2, 5, seed=2)
    assert torch.equal(p1.detach().view(torch.int16), p2.detach().view(torch.int16))
    with pytest.raises(ValueError, match=ROUNDING_KEY):
        second.load_state_dict(torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))]).state_dict())


def test_a_cleared_state_restarts_the_rounding_stream_from_the_seed() -> None:
    """A rollback to the base weights clears the optimizer state: what follows must be step 1 again."""
    base = torch.randn(32, 32, generator=_gen(12)).to(torch.bfloat16)
    p = torch.nn.Parameter(base.clone())
    opt = LeanAdamW([p], lr=1e-3, weight_decay=0.0, seed=3, device=CPU)
    _train(opt, p, 2, seed=4)
    once = p.detach().clone()
    _train(opt, p, 3, seed=5)
    opt.state.clear()
    with torch.no_grad():
        p.copy_(base)
    _train(opt, p, 2, seed=4)
    assert torch.equal(p.detach().view(torch.int16), once.view(torch.int16))


def _stepped_pair(fused_math: bool, monkeypatch: pytest.MonkeyPatch) -> list[torch.nn.Parameter]:
    """Two parameters (one spanning several chunks) after four steps, with the fused form's arithmetic
    (run uncompiled here: on a CPU the optimizer stays eager) or the eager form's."""
    monkeypatch.setattr(lean_adamw, "CHUNK", 5000)
    params = [torch.nn.Parameter((torch.randn(97, 131, generator=_gen(3)) * 0.02).to(torch.bfloat16)),
              torch.nn.Parameter(torch.randn(777, generator=_gen(4)).to(torch.bfloat16))]
    if fused_math:
        monkeypatch.setattr(lean_adamw, "_fused_chunk", lambda: lean_adamw._chunk_math)
    optimizer = LeanAdamW(params, lr=1e-3, weight_decay=0.01, seed=5, device=CPU, fused=fused_math)
    for step in range(4):
        for i, p in enumerate(params):
            p.grad = torch.randn(p.shape, generator=_gen(100 + 10 * step + i)).to(torch.bfloat16)
        optimizer.step()
    return params


def test_the_fused_form_draws_the_same_bits_and_lands_on_the_same_values_but_for_rare_one_ulp_ties(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The GPU's fused kernel computes the same update from the same random bits: its fp32 arithmetic is
    written differently (no in-place chain), so a value whose exact update sits within one fp32 rounding
    of a bf16 rounding boundary may land one bf16 step away; anything more would be a different update."""
    eager = _stepped_pair(False, monkeypatch)
    fused = _stepped_pair(True, monkeypatch)
    for a, b in zip(eager, fused, strict=True):
        same = (a == b).float().mean().item()
        assert same > 0.995, same
        ulp = (a.float().abs().view(torch.int32) - b.float().abs().view(torch.int32)).abs().max().item()
        assert ulp <= 1 << 16, "more than one bf16 step apart"  # one bf16 step is 2**16 in fp32's bit pattern


@pytest.mark.gpu
def test_the_compiled_fused_kernel_on_the_gpu_matches_the_eager_form() -> None:
    cuda = torch.device("cuda")
    results = []
    for fused in (False, True):
        p = torch.nn.Parameter((torch.randn(3000, 1000, generator=_gen(1)) * 0.02).to(torch.bfloat16).to(cuda))
        optimizer = LeanAdamW([p], lr=1e-3, weight_decay=0.01, seed=5, device=cuda, fused=fused)
        for step in range(3):
            p.grad = torch.randn(p.shape, generator=_gen(200 + step)).to(torch.bfloat16).to(cuda)
            optimizer.step()
        results.append(p.detach().float().cpu())
    assert (results[0] == results[1]).float().mean().item() > 0.995


def test_a_fused_kernel_that_cannot_compile_turns_the_optimizer_eager_without_a_lost_or_doubled_step(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from torch._dynamo.exc import InternalTorchDynamoError

    def no_backend(*_: object) -> None:
        raise InternalTorchDynamoError("no Triton for this device")

    monkeypatch.setattr(lean_adamw, "_fused_chunk", lambda: no_backend)
    p = torch.nn.Parameter(torch.randn(64, 32, generator=_gen(2)).to(torch.bfloat16))
    before = p.detach().clone()
    optimizer = LeanAdamW([p], lr=1e-2, weight_decay=0.0, seed=3, device=CPU, fused=True)
    for _ in range(2):
        p.grad = torch.ones_like(p)
        optimizer.step()
    assert not optimizer.fused and "updates eagerly from now on" in capsys.readouterr().err
    assert optimizer.state[p]["step"] == 2
    assert bool((p.detach() < before).float().mean() > 0.95)  # two steps against a positive gradient, applied
    monkeypatch.setattr(lean_adamw, "_fused_chunk", lambda: (_ for _ in ()).throw(ValueError("not a compiler")))
    other = LeanAdamW([p], lr=1e-2, weight_decay=0.0, seed=3, device=CPU, fused=True)
    with pytest.raises(ValueError, match="not a compiler"):  # any other error is not swallowed
        other.step()
