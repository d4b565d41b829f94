"""`train.frame_budget: "auto"`, the startup account, and bf16 weights loaded as bf16.

The sizing is the memory plan's for the memory a run may use on a card shared with other tenants; this machine has
no GPU, so torch.cuda's four readings are given here the values a 32 GiB card would report (the accelerator
machine's run of bench/startup.py sizes it on a real card). The choice is made once: a second launch reads it back,
whatever the card then reports. On the CPU the real trainer records its choice and its startup phases.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from qwen_train import exitcodes
from qwen_train.plan.for_spec import frames_budget, plan_for_spec
from qwen_train.plan.memory import GIB
from qwen_train.spec import Posture, RunSpec, TrainConfig
from qwen_train.status import read_status
from qwen_train.train.data.budget import BudgetError
from qwen_train.train.device import auto_budget
from tests.conftest import MakeDir
from tests.trainer_harness import run, write_spec

REFERENCE = Path(__file__).resolve().parents[1] / "bench" / "train_model_config.json"  # the real 1.7 B config
CARD = "AMD Radeon AI PRO R9700"
ROWS = [600] * 400 + [900]  # talker positions: Riksdag-length rows


@pytest.fixture
def card(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """A 32 GiB card whose free memory the test sets; no CUDA call reaches the driver."""
    state = {"total": 32 * GIB, "free": 32 * GIB}
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda index=None: (state["free"], state["total"]))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda index=None: 0)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: state.get("name", CARD))
    monkeypatch.setattr(auto_budget, "device_memory", lambda device: state["total"])
    return state


def _spec(tmp: Path) -> RunSpec:
    (tmp / "model").mkdir(exist_ok=True)
    shutil.copyfile(REFERENCE, tmp / "model" / "config.json")
    return RunSpec(name="auto", lane="language-expansion", model=str(tmp / "model"), bundle=str(tmp / "bundle"),
                   train=TrainConfig(frame_budget="auto", recipe="lean"))


def _resolve(spec: RunSpec, run_dir: Path) -> auto_budget.BudgetChoice:
    choice = auto_budget.resolve_budget(spec, run_dir, torch.device("cuda", 0), ROWS, 8, 1)
    assert choice is not None
    return choice


def test_auto_takes_the_plans_largest_budget_for_what_the_other_tenants_leave(tmp_path: Path,
                                                                              card: dict[str, int]) -> None:
    spec = _spec(tmp_path)
    card["free"] = 26 * GIB  # llama.cpp and a sidecar hold 6 GiB
    choice = _resolve(spec, tmp_path)
    headroom = auto_budget.AUTO_HEADROOM + 6 / 32
    expected = frames_budget(plan_for_spec(spec, gpu_bytes=32 * GIB, headroom=headroom, frames=1).max_frames or 0)
    assert choice.frame_budget == expected - expected % 8 and choice.frame_budget > 900
    card["free"] = 32 * GIB  # the card to itself
    alone = _resolve(spec, tmp_path / "alone")
    assert alone.frame_budget is not None and alone.frame_budget > choice.frame_budget
    assert CARD in choice.why and "6.0 GiB held by others" in choice.why and not choice.kept


def test_the_first_launchs_choice_is_kept_on_a_card_that_now_has_more_room(tmp_path: Path,
                                                                          card: dict[str, int]) -> None:
    spec = _spec(tmp_path)
    card["free"] = 26 * GIB
    first = _resolve(spec, tmp_path)
    auto_budget.record_choice(tmp_path, first)
    card.update(free=32 * GIB, name="NVIDIA A100-SXM4-40GB", total=40 * GIB)
    again = _resolve(spec, tmp_path)
    assert again.kept and again.frame_budget == first.frame_budget
    assert "this launch is on NVIDIA A100" in auto_budget.batching_text(again)
    pinned = auto_budget.pin_budget(spec, again)
    assert pinned.train.frame_budget == first.frame_budget  # what the session and its checkpoints record
    (tmp_path / auto_budget.BUDGET_FILE).write_text("{not json")
    with pytest.raises(BudgetError, match="frame_budget.json"):
        _resolve(spec, tmp_path)


def test_a_card_too_full_for_the_longest_row_is_refused_naming_it(tmp_path: Path, card: dict[str, int]) -> None:
    card["free"] = 13 * GIB
    with pytest.raises(BudgetError, match=f"{CARD} has .* GiB for this run \\(19.0 GiB held by others"):
        _resolve(_spec(tmp_path), tmp_path)


def test_a_small_bundle_keeps_a_few_batches_an_epoch(tmp_path: Path, card: dict[str, int]) -> None:
    choice = auto_budget.resolve_budget(_spec(tmp_path), tmp_path, torch.device("cuda", 0), [600] * 20, 8, 1)
    assert choice is not None and choice.frame_budget == 600 * 20 // auto_budget.MIN_BATCHES
    assert "capped" in choice.why


def test_the_cpu_trainer_records_auto_and_says_where_its_startup_went(demo_root: Path, module_dir: MakeDir) -> None:
    where = module_dir("auto-cpu")
    spec = write_spec(demo_root, where, "auto", 3, Posture(checkpoint_every=2, eval_every=2, keep_last=2),
                      frame_budget="auto")
    code, out = run(spec, where / "run")
    assert code == exitcodes.COMPLETED, out[-2000:]
    recorded = json.loads((where / "run" / auto_budget.BUDGET_FILE).read_text())
    assert recorded["frame_budget"] is None and recorded["device"] == "cpu"
    status = read_status(where / "run" / "status.json")
    assert status.batching is not None and status.batching.startswith("auto: no GPU") and "2 rows" in status.batching
    assert status.startup is not None and "to the first step" in status.startup
    for phase in ("verifying the bundle", "loading weights", "reading rows", "building the optimizer", "first step"):
        assert phase in status.startup, phase
    assert status.message is None or not status.message.startswith("starting: ")
    assert [e.kind for e in status.events].count("startup") == 1


def test_bf16_stored_weights_load_as_bf16_equal_to_fp32_and_a_cast(demo_root: Path, tmp_path: Path) -> None:
    """The lean recipe's load (modeldir.load_base_model, bf16=True) gives exactly the weights and buffers of the
    fp32 load cast by the recipe, language tag row included; weights stored in fp32 load as fp32 whatever is asked."""
    from qwen_train.modeldir import load_base_model, save_model_dir, stored_dtypes
    from qwen_train.train.recipes.recipe import Recipe, apply_recipe

    source = demo_root / "model"
    fp32_model, _ = load_base_model(str(source), "swedish", bf16=True)
    assert stored_dtypes(source) == {"F32"} and fp32_model.talker.codec_head.weight.dtype == torch.float32
    saved = tmp_path / "bf16"
    save_model_dir(fp32_model.to(torch.bfloat16), saved)
    for part in source.iterdir():  # tokenizers and the speech tokenizer, as a released model dir has them
        if not (saved / part.name).exists():
            (shutil.copytree if part.is_dir() else shutil.copyfile)(part, saved / part.name)
    assert stored_dtypes(saved) == {"BF16"}
    direct, _ = load_base_model(str(saved), "swedish", bf16=True)
    cast, _ = load_base_model(str(saved), "swedish", bf16=False)
    apply_recipe(cast, Recipe("lean", "test"), freeze_text_embedding=False)
    for mine, theirs in ((dict(direct.named_parameters()), dict(cast.named_parameters())),
                         (dict(direct.named_buffers()), dict(cast.named_buffers()))):
        assert mine.keys() == theirs.keys()
        for name in mine:
            assert mine[name].dtype == theirs[name].dtype and torch.equal(mine[name], theirs[name]), name
