"""What each action asks, does and reports: stop, resume, diagnose, gate, start, probe.

Every action that changes something goes through a confirmation that says
what will happen, then one blocking daemon call (in a worker thread, never on
the UI thread), then a notification that says what did happen: the daemon's
own account on success, its message as it gave it on failure. Keeping the
words here, apart from the app's wiring, keeps them consistent and testable.
An action that cannot apply (stopping a run that has ended) is refused before
asking, with the reason.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

import msgspec

from qwen_daemon.protocol import ACTIVE_STATES, JobKind, ProbeView, RunView
from qwen_daemon.protocol.client import DaemonClient, DaemonError

RunVerb = Literal["stop", "resume", "diagnose", "gate"]
Verb = Literal["stop", "resume", "diagnose", "gate", "start", "probe"]
Severity = Literal["information", "warning", "error"]


@dataclass(frozen=True)
class Question:
    text: str
    yes: str
    no: str


@dataclass(frozen=True)
class Outcome:
    """One action's result: the daemon's answer, or the error to show."""

    verb: Verb
    target: str
    view: RunView | None = None
    probe: ProbeView | None = None
    error: str | None = None
    finished_at: float = field(default_factory=time.time)


def refusal(verb: RunVerb, name: str, view: RunView | None) -> str | None:
    """Why the action cannot apply to the run as last seen, or None to go ahead and ask."""
    if view is None:
        return None
    if verb == "stop" and view.state not in ACTIVE_STATES:
        return f"{name} is {view.state}: there is nothing to stop"
    if verb == "gate" and view.kind != "train":
        return f"{name} is a {view.kind} job: the promotion gate judges training runs only"
    if verb in ("resume", "diagnose", "gate") and view.state in ACTIVE_STATES:
        why = {"resume": "", "diagnose": ", as its replay writes into the run's dir",
               "gate": ", as it judges the run's final checkpoint"}[verb]
        return f"{name} is {view.state}: a run is {verb}d only once it has ended{why} (stop it first)"
    return None


def question(verb: Verb, target: str, kind: JobKind = "train") -> Question:
    if verb == "stop":
        return Question(
            f"Stop run {target}?\n\nThe trainer finishes its current step, writes a durable "
            "checkpoint and exits; the daemon forces it only after its stop timeout.",
            "Stop",
            "Keep running",
        )
    if verb == "resume":
        return Question(
            f"Resume run {target}?\n\nThe daemon launches it again, with a fresh nonce and the spec it "
            "ran with, from its newest durable checkpoint; the trainer checks the data cursor first "
            "and refuses to start if it cannot be right.",
            "Resume",
            "Cancel",
        )
    if verb == "diagnose":
        return Question(
            f"Diagnose run {target}?\n\nThe daemon starts a diagnose job that replays {target} to its "
            "last non-finite event and records which loss part and which module broke first, "
            "and whether fp32 reproduces it. The run itself is not changed.",
            "Diagnose",
            "Cancel",
        )
    if verb == "gate":
        return Question(
            f"Run the promotion gate on {target}?\n\nThe daemon writes the run's resource summary into its run "
            f"dir and starts the job {target}.gate: it exports the newest durable checkpoint, compares held-out "
            "eval loss with the base model, measures speaker similarity and intelligibility, checks resource "
            "evidence and provenance, and writes a verdict criterion by criterion. The run itself is not changed.",
            "Run gate",
            "Cancel",
        )
    if verb == "start" and kind == "preprocess":
        return Question(
            f"Start the preprocess job described by {target}?\n\nThe daemon reads the PrepareSpec on its own "
            "host and checks the surface rules before starting anything.",
            "Launch",
            "Cancel",
        )
    if verb == "start":
        return Question(
            f"Launch the training run described by {target}?\n\nThe daemon reads the spec on its own host "
            "and checks its surface class and lane before starting anything.",
            "Launch",
            "Cancel",
        )
    return Question(
        "Probe the bind roots?\n\nFor each root the daemon starts a short-lived container that writes "
        "a token through the path Docker is given; the daemon reads it back at the canonical path.",
        "Probe",
        "Cancel",
    )


def perform(client: DaemonClient, verb: Verb, target: str, kind: JobKind = "train") -> Outcome:
    """Blocking: the one daemon call for the action; errors become the Outcome's text."""
    try:
        if verb == "stop":
            return Outcome(verb, target, view=client.stop(target))
        if verb == "resume":
            return Outcome(verb, target, view=client.resume(target))
        if verb == "diagnose":
            return Outcome(verb, target, view=client.diagnose(target, step=None))
        if verb == "gate":
            return Outcome(verb, target, view=client.gate(target))
        if verb == "start":
            return Outcome(verb, target, view=client.launch(spec_path=target, kind=kind))
        return Outcome(verb, target, probe=client.probe())
    except DaemonError as exc:
        return Outcome(verb, target, error=str(exc))
    except msgspec.MsgspecError as exc:
        return Outcome(verb, target, error=f"unreadable reply from the daemon: {exc}")


_FAILED: dict[Verb, str] = {
    "stop": "could not stop {target}",
    "resume": "could not resume {target}",
    "diagnose": "could not diagnose {target}",
    "gate": "could not start the gate on {target}",
    "start": "could not launch {target}",
    "probe": "could not probe the bind roots",
}


def _probe_report(probe: ProbeView) -> tuple[str, Severity]:
    if not probe.results:
        return "bind-root probe: no bind roots are configured", "warning"
    failed = [result for result in probe.results if not result.ok]
    if not failed:
        return f"bind-root probe: all {len(probe.results)} roots are seen by a container", "information"
    lines = [f"bind-root probe: {len(failed)} of {len(probe.results)} roots failed"]
    lines.extend(f"{result.path}: {result.detail}" for result in failed)
    return "\n".join(lines), "error"


def report(outcome: Outcome) -> tuple[str, Severity]:
    """The notification for an outcome: what the daemon now says, or why it refused."""
    if outcome.error is not None:
        return f"{_FAILED[outcome.verb].format(target=outcome.target)}: {outcome.error}", "error"
    if outcome.probe is not None:
        return _probe_report(outcome.probe)
    view = outcome.view
    if view is None:
        return f"{outcome.verb} {outcome.target}: the daemon gave no account", "warning"
    if outcome.verb == "stop":
        return f"stop requested for {view.name}: the daemon reports it {view.state}", "information"
    if outcome.verb == "resume":
        return f"{view.name} resumed: the daemon reports it {view.state} (launch nonce {view.nonce})", "information"
    if outcome.verb == "diagnose":
        return (
            f"diagnose job {view.name} started for {view.parent or outcome.target}: the daemon reports it "
            f"{view.state}; its detail shows the diagnosis once written",
            "information",
        )
    if outcome.verb == "gate":
        return (
            f"gate job {view.name} started for {view.parent or outcome.target}: the daemon reports it "
            f"{view.state}; the gate screen shows the verdict once written",
            "information",
        )
    klass = f", class {view.surface_class}" if view.surface_class else ""
    what = "" if view.kind == "train" else f"{view.kind} job "
    return (
        f"launched {what}{view.name} from {outcome.target}: {view.state} on surface {view.surface}{klass}, "
        f"lane {view.lane}",
        "information",
    )
