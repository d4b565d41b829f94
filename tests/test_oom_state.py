"""`failed_oom` through the daemon and the dashboard: its own state, the trainer's own words, plainly shown."""

from __future__ import annotations

import io
import time
import typing

from rich.console import Console, RenderableType

from qwen_daemon.jobs.job import Exit
from qwen_daemon.protocol import RunState, RunView
from qwen_daemon.runs.monitor import outcome
from qwen_daemon.runs.record import RunRecord
from qwen_train import exitcodes
from qwen_train.status import TERMINAL_STATES, Status, TrainerState
from qwen_tui.format import STATE_STYLE, state_text
from qwen_tui.widgets.status_view import status_renderable

NOW = time.time()
SAID = ("GPU out of memory in step 5, micro-batch 1/2 (8 rows, 1912 codec frames, padded to 8 x 412 = 3296 "
        "positions), on cuda:0 (peak 30.9 GiB allocated of 32.0 GiB): CUDA out of memory. Step 5 was not applied "
        "and nothing was written after it; the newest durable checkpoint, step-00000004, is kept. Lower "
        "train.batch_size (now 8) or set train.frame_budget in the spec and continue with --resume")


def plain(renderable: RenderableType) -> str:
    console = Console(width=400, record=True, file=io.StringIO(), color_system=None)
    console.print(renderable)
    return console.export_text()


def _record() -> RunRecord:
    return RunRecord(name="sv", lane="language-expansion", surface="lab", runner="process", state="running",
                     nonce="n1", pid=1, run_dir="/srv/scratch/runs/sv", created_at=NOW, launched_at=NOW,
                     ended_at=None, exit_code=None, spec_json="{}", message=None)


def _status(**changes: object) -> Status:
    base: dict[str, object] = dict(run_id="sv", nonce="n1", host="h", pid=1, state="failed_oom", heartbeat=NOW,
                                   started_at=NOW, step=4, max_steps=10, message=SAID,
                                   recipe="recipe lean: bf16 weights and gradients, ... (auto: 31.9 GiB)")
    base.update(changes)
    return Status(**base)  # type: ignore[arg-type]


def test_the_state_exists_wherever_run_states_are_listed() -> None:
    assert exitcodes.STATE_BY_CODE[exitcodes.FAILED_OOM] == "failed_oom"
    assert "failed_oom" in typing.get_args(TrainerState) and "failed_oom" in TERMINAL_STATES
    assert "failed_oom" in typing.get_args(RunState)
    assert STATE_STYLE["failed_oom"] == "bold red" and state_text("failed_oom").style == "bold red"


def test_the_daemon_ends_the_run_failed_oom_in_the_trainers_words_and_says_how_to_continue() -> None:
    state, message = outcome(_record(), Exit(code=exitcodes.FAILED_OOM), _status(), False, False, 30.0)
    assert state == "failed_oom"
    assert message.startswith(SAID)
    assert "newest durable checkpoint is intact" in message and "--resume --run-dir /srv/scratch/runs/sv" in message
    assert "/srv/scratch/runs/sv/trainer.log" in message
    # Without the trainer's final status (it could not write one), the state still says what happened.
    state, message = outcome(_record(), Exit(code=exitcodes.FAILED_OOM), None, False, False, 30.0)
    assert state == "failed_oom" and message.startswith("the GPU ran out of memory in a step")


def test_the_dashboard_shows_the_message_loudly_and_names_the_recipe() -> None:
    view = RunView(name="sv", lane="language-expansion", surface="lab", runner="process", state="failed_oom",
                   health="ended", run_dir="/srv/scratch/runs/sv", created_at=NOW)
    text = plain(status_renderable(_status(), view, now=NOW))
    assert "failed_oom" in text and "micro-batch 1/2 (8 rows" in text
    assert "recipe lean: bf16 weights" in text
