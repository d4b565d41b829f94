"""Which mode a run trains, where the operator looks: the daemon's run view, `qwen-daemon show`/`list`, the
dashboard's run detail; and a view recorded before the mode existed still decodes (as a full run)."""

from __future__ import annotations

import io

import msgspec
from rich.console import Console

from qwen_daemon.cli import render
from qwen_daemon.protocol import ResourceSummary, RunDetail, RunView
from qwen_daemon.runs.record import RunRecord
from qwen_daemon.runs.run_view import run_view
from qwen_train.spec import Adapter, RunSpec, TrainConfig, encode_spec
from qwen_tui.widgets.run_facts import run_facts

NOW = 1_700_000_000.0
LORA = "LoRA rank 8, alpha 16, dropout 0.05 on talker + code predictor q_proj/v_proj"


def _record(train: TrainConfig, kind: str = "train") -> RunRecord:
    spec = RunSpec(name="sv", lane="single-speaker", model="/m", bundle="/b", train=train)
    return RunRecord(name="sv", lane="single-speaker", surface="lab", runner="process", state="completed",
                     nonce="n1", pid=None, run_dir="/nonexistent/runs/sv", created_at=NOW, launched_at=NOW,
                     ended_at=NOW + 5, exit_code=0, spec_json=encode_spec(spec).decode(), message=None, kind=kind)


def _lora() -> TrainConfig:
    return TrainConfig(adapter=Adapter(rank=8, alpha=16, dropout=0.05, target_modules=("q_proj", "v_proj"),
                                       code_predictor=True))


def _plain(renderable: object) -> str:
    console = Console(width=160, record=True, file=io.StringIO(), color_system=None)
    console.print(renderable)
    return console.export_text()


def test_the_run_view_carries_the_mode_from_the_launched_spec() -> None:
    lora, _ = run_view(_record(_lora()), NOW + 10, 30.0)
    full, _ = run_view(_record(TrainConfig()), NOW + 10, 30.0)
    assert (lora.mode, lora.mode_detail) == ("lora", LORA)
    assert (full.mode, full.mode_detail) == ("full", "full fine-tune")
    job, _ = run_view(_record(_lora(), kind="gate"), NOW + 10, 30.0)
    assert job.mode_detail is None  # a gate job trains nothing
    broken = msgspec.structs.replace(_record(_lora()), spec_json="{}")
    assert run_view(broken, NOW + 10, 30.0)[0].mode_detail is None  # shown all the same


def test_a_view_from_before_the_mode_decodes_as_a_full_run() -> None:
    lora, _ = run_view(_record(_lora()), NOW + 10, 30.0)
    old = msgspec.to_builtins(lora)
    del old["mode"], old["mode_detail"]
    decoded = msgspec.json.decode(msgspec.json.encode(old), type=RunView)
    assert decoded.mode == "full" and decoded.mode_detail is None


def test_qwen_daemon_show_and_list_say_the_mode() -> None:
    lora, _ = run_view(_record(_lora()), NOW + 10, 30.0)
    detail = RunDetail(lora, None, ResourceSummary(samples=0, first=None, last=None))
    assert f"mode:           {LORA}" in render.detail_text(detail).splitlines()
    table = render.runs_table([lora]).splitlines()
    assert table[0].split()[:3] == ["NAME", "KIND", "MODE"] and table[1].split()[:3] == ["sv", "train", "lora"]


def test_the_dashboards_run_detail_says_the_mode() -> None:
    lora, _ = run_view(_record(_lora()), NOW + 10, 30.0)
    full, _ = run_view(_record(TrainConfig(freeze_text_embedding=True)), NOW + 10, 30.0)
    assert any(line.split() == ["mode", *LORA.split()] for line in _plain(run_facts(lora, now=NOW)).splitlines())
    want = ["mode", "full", "fine-tune,", "text", "embedding", "frozen"]
    assert any(line.split() == want for line in _plain(run_facts(full, now=NOW)).splitlines())
