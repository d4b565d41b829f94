"""What the API shows of a run: registry facts joined with the trusted status.

The one place where status numbers reach a RunView, and they get there only
through the guard: a live verdict for an active launch, or the launch's own
final status for an ended one. Everything else is `stale` (with the reason)
or `waiting` (launched, no heartbeat yet), with the numbers left empty.

A diagnose or gate job is the exception: it writes no heartbeat (it must not
touch its run's status.json), so no status is ever trusted for it and its
health is its process's: `live` while the runner sees it, `waiting` before.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import msgspec

from qwen_daemon.protocol import Health, ResourceSummary, RunDetail, RunView, kind_info
from qwen_daemon.runs.record import RunRecord
from qwen_daemon.runs.registry import Registry
from qwen_daemon.runs.trust import Trust, check_final, check_live
from qwen_train.spec import SpecError, TrainMode, decode_spec, mode_description
from qwen_train.status import Event, Status


def _active_health(verdict: Trust, age: float, stale_after_s: float) -> tuple[Health, str | None]:
    """A launch gets `stale_after_s` to write its first heartbeat before it counts as stale."""
    if verdict.live:
        return "live", None
    if verdict.missing:
        if age <= stale_after_s:
            return "waiting", None
        return "stale", f"no status.json {age:.0f} s after launch (stale after {stale_after_s:g} s)"
    if verdict.previous:
        if age <= stale_after_s:
            return "waiting", "status.json is the previous launch's: waiting for this launch's first heartbeat"
        return "stale", (f"no heartbeat of this launch {age:.0f} s after launch (stale after {stale_after_s:g} s); "
                         "status.json is still the previous launch's")
    return "stale", verdict.reason


Members = Callable[[RunRecord], "list[int] | None"]


def judge(
    record: RunRecord, now: float, stale_after_s: float, members: Members | None = None
) -> tuple[Health, Trust, str | None]:
    """Health, the guard's verdict and the stale reason for one run.

    `members` gives a container launch's host pids (the guard checks the status pid against them).
    """
    run_dir = Path(record.run_dir)
    if record.state == "queued":  # not launched yet: nothing to trust, nothing stale
        return "waiting", Trust(live=False, reason="queued for the GPU"), None
    if kind_info(record.kind).child:
        no_status = Trust(live=False, reason=f"a {record.kind} job writes no status.json")
        if not record.active:
            return "ended", no_status, None
        alive = members is not None and bool(members(record))
        return ("live" if alive else "waiting"), no_status, None
    if record.active and record.nonce is not None:
        pids = members(record) if members is not None and record.container else None
        verdict = check_live(
            run_dir, record.name, record.nonce, record.pid, now, stale_after_s, record.container, pids,
            launched_at=record.launched_at,
        )
        health, reason = _active_health(verdict, now - record.launched_at, stale_after_s)
        return health, verdict, reason
    final = check_final(run_dir, record.name, record.nonce)
    # An ended run's stale reasons are not news (its last status may be an older launch's), but a status.json
    # that is no regular file is: something other than a trainer put it in the run dir.
    return "ended", final, final.reason if final.refused else None


def run_view(
    record: RunRecord, now: float, stale_after_s: float, members: Members | None = None
) -> tuple[RunView, Status | None]:
    """The RunView, and the status it was built from (None unless trusted)."""
    health, verdict, reason = judge(record, now, stale_after_s, members)
    status = verdict.status
    view = RunView(
        name=record.name,
        lane=record.lane,
        surface=record.surface,
        runner=record.runner,
        state=record.state,
        health=health,
        run_dir=record.run_dir,
        created_at=record.created_at,
        nonce=record.nonce,
        pid=record.pid,
        container=record.container,
        ended_at=record.ended_at,
        exit_code=record.exit_code,
        stale_reason=reason,
        message=record.message or (status.message if status is not None else None),
        kind=record.kind,
        parent=record.parent,
    )
    mode, detail, scored = train_mode(record)
    view = msgspec.structs.replace(view, mode=mode, mode_detail=detail, scored=scored)
    if status is None:
        return view, None
    return _with_numbers(view, status), status


def train_mode(record: RunRecord) -> tuple[TrainMode, str | None, bool]:
    """A training run's mode, its words and whether its spec turns listening scores on, from the spec it was
    launched with; no words for a job, or for a record whose spec no longer decodes (the view still shows it)."""
    if kind_info(record.kind).child:
        return "full", None, False
    try:
        spec = decode_spec(record.spec_json, source=f"run {record.name}")
    except SpecError:
        return "full", None, False
    return spec.train.mode, mode_description(spec.train), spec.scores.enabled


def _with_numbers(view: RunView, status: Status) -> RunView:
    return msgspec.structs.replace(
        view,
        step=status.step,
        max_steps=status.max_steps,
        loss=status.losses.total if status.losses is not None else None,
        eval_loss=status.last_eval.losses.total if status.last_eval is not None else None,
        steps_per_s=status.throughput.steps_per_s if status.throughput is not None else None,
    )


def run_detail(
    registry: Registry, record: RunRecord, now: float, stale_after_s: float, summary: ResourceSummary,
    members: Members | None = None,
) -> RunDetail:
    """The run's view, trusted status, resource summary and events (daemon's and trainer's)."""
    view, status = run_view(record, now, stale_after_s, members)
    events: list[Event] = registry.events(record.name)
    if status is not None:
        events = sorted([*events, *status.events], key=lambda e: e.time)
    return RunDetail(run=view, status=status, summary=summary, events=events)
