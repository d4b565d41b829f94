"""The dashboard's verbs, one `Verb` each in VERBS: its key, what it asks, does and reports.

Every verb changes something, so it goes through a confirmation that says
what will happen, then one blocking daemon call (in a worker thread, never on
the UI thread), then a notification that says what did happen: the daemon's
own account on success, its message as it gave it on failure. A verb that
cannot apply (stopping a run that has ended) is refused before asking, with
the reason. One entry holds all of that for one verb, so adding a verb is one
entry: the screens bind its key where it is offered (`bindings`), and the
app's confirm, call and report flow reads the rest (`question`, `perform`,
`report`). Keeping the words here, apart from the wiring, keeps them
consistent and testable.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import msgspec
from textual.binding import Binding

from qwen_daemon.protocol import ACTIVE_STATES, PENDING_STATES, JobKind, ProbeView, RunView, kind_info
from qwen_daemon.protocol.client import DaemonClient, DaemonError

VerbName = Literal["stop", "resume", "diagnose", "gate", "start", "probe"]
# Where a verb's key works, which also says what its target is: the run under the cursor ("runs"), the run
# on screen ("detail", "gate"), the bind roots ("host"), or a spec file asked for first (anywhere: "app").
Place = Literal["app", "runs", "detail", "gate", "host"]
Severity = Literal["information", "warning", "error"]
Report = tuple[str, Severity]


@dataclass(frozen=True)
class Question:
    text: str
    yes: str
    no: str


@dataclass(frozen=True)
class Outcome:
    """One action's result: the daemon's answer, or the error to show."""

    verb: VerbName
    target: str
    view: RunView | None = None
    probe: ProbeView | None = None
    error: str | None = None
    finished_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class Verb:
    """One thing the operator asks of the daemon from the dashboard.

    `ask` is the confirmation for a target (and, for a launch, the job kind);
    `call` the one daemon call; `said` the notification for its answer;
    `failed` the words before the daemon's message when it refused.
    `refuse` says why it cannot apply to the run as last seen (None: the
    target is no run, and the daemon alone decides).
    """

    name: VerbName
    key: str
    label: str
    offered: tuple[Place, ...]
    ask: Callable[[str, JobKind], Question]
    call: Callable[[DaemonClient, str, JobKind], RunView | ProbeView]
    said: Callable[[Outcome], Report]
    failed: str
    refuse: Callable[[str, RunView], str | None] | None = None


@dataclass(frozen=True)
class SpecFile:
    """A job the launch screen starts from a spec file: how it is offered there and how it is confirmed."""

    kind: JobKind
    choice: str
    question: str


SPEC_FILES: tuple[SpecFile, ...] = (
    SpecFile("train", "training run (a RunSpec file)",
             "Launch the training run described by {target}?\n\nThe daemon reads the spec on its own host "
             "and checks its surface class and lane before starting anything."),
    SpecFile("preprocess", "preprocess job (a PrepareSpec file)",
             "Start the preprocess job described by {target}?\n\nThe daemon reads the PrepareSpec on its own "
             "host and checks the surface rules before starting anything."),
)


# -- the pieces the entries are made of ---------------------------------------------------------


def _asks(text: str, yes: str, no: str = "Cancel") -> Callable[[str, JobKind], Question]:
    """A confirmation that names its target whatever the kind; `{target}` in the text is replaced."""
    return lambda target, kind: Question(text.format(target=target), yes, no)


def _ask_launch(target: str, kind: JobKind) -> Question:
    spec = {spec.kind: spec for spec in SPEC_FILES}.get(kind, SPEC_FILES[0])
    return Question(spec.question.format(target=target), "Launch", "Cancel")


def _running(name: str, view: RunView) -> str | None:
    pending = view.state in PENDING_STATES  # a stop takes a queued run off the queue
    return None if pending else f"{name} is {view.state}: there is nothing to stop"


def _ended(done: str, why: str = "") -> Callable[[str, RunView], str | None]:
    """Refuses a run that is still active: the verb acts on what the run has left behind."""

    def refuse(name: str, view: RunView) -> str | None:
        if view.state in ACTIVE_STATES:
            return f"{name} is {view.state}: a run is {done} only once it has ended{why} (stop it first)"
        return None

    return refuse


_GATE_ENDED = _ended("gated", ", as it judges the run's final checkpoint")


def _gate_refusal(name: str, view: RunView) -> str | None:
    if not kind_info(view.kind).trains:
        return f"{name} is a {view.kind} job: the promotion gate judges training runs only"
    return _GATE_ENDED(name, view)


def _of_run(words: Callable[[RunView, str], str]) -> Callable[[Outcome], Report]:
    """The report of a verb the daemon answers with a run: its words for that run, as the daemon now has it."""

    def said(outcome: Outcome) -> Report:
        if outcome.view is None:
            return f"{outcome.verb} {outcome.target}: the daemon gave no account", "warning"
        return words(outcome.view, outcome.target), "information"

    return said


def _launched(view: RunView, target: str) -> str:
    klass = f", class {view.surface_class}" if view.surface_class else ""
    what = "" if kind_info(view.kind).trains else f"{view.kind} job "
    return f"launched {what}{view.name} from {target}: {view.state} on surface {view.surface}{klass}, lane {view.lane}"


def _probed(outcome: Outcome) -> Report:
    probe = outcome.probe
    if probe is None:
        return f"{outcome.verb} {outcome.target}: the daemon gave no account", "warning"
    if not probe.results:
        return "bind-root probe: no bind roots are configured", "warning"
    failed = [result for result in probe.results if not result.ok]
    if not failed:
        return f"bind-root probe: all {len(probe.results)} roots are seen by a container", "information"
    lines = [f"bind-root probe: {len(failed)} of {len(probe.results)} roots failed"]
    lines.extend(f"{result.path}: {result.detail}" for result in failed)
    return "\n".join(lines), "error"


# -- the verbs ----------------------------------------------------------------------------------

_ON_A_RUN: tuple[Place, ...] = ("runs", "detail")

VERBS: dict[VerbName, Verb] = {verb.name: verb for verb in (
    Verb(
        "stop", "s", "Stop", _ON_A_RUN,
        ask=_asks("Stop run {target}?\n\nThe trainer finishes its current step, writes a durable checkpoint "
                  "and exits; the daemon forces it only after its stop timeout.", "Stop", "Keep running"),
        call=lambda client, target, kind: client.stop(target),
        said=_of_run(lambda view, target: f"stop requested for {view.name}: the daemon reports it {view.state}"),
        failed="could not stop {target}",
        refuse=_running,
    ),
    Verb(
        "resume", "R", "Resume", _ON_A_RUN,
        ask=_asks("Resume run {target}?\n\nThe daemon launches it again, with a fresh nonce and the spec it ran "
                  "with, from its newest durable checkpoint; the trainer checks the data cursor first and "
                  "refuses to start if it cannot be right.", "Resume"),
        call=lambda client, target, kind: client.resume(target),
        said=_of_run(lambda view, target: f"{view.name} resumed: the daemon reports it {view.state} "
                                          f"(launch nonce {view.nonce})"),
        failed="could not resume {target}",
        refuse=_ended("resumed"),
    ),
    Verb(
        "diagnose", "d", "Diagnose", _ON_A_RUN,
        ask=_asks("Diagnose run {target}?\n\nThe daemon starts a diagnose job that replays {target} to its last "
                  "non-finite event and records which loss part and which module broke first, and whether "
                  "fp32 reproduces it. The run itself is not changed.", "Diagnose"),
        call=lambda client, target, kind: client.diagnose(target, step=None),
        said=_of_run(lambda view, target: f"diagnose job {view.name} started for {view.parent or target}: the "
                                          f"daemon reports it {view.state}; its detail shows the diagnosis once "
                                          "written"),
        failed="could not diagnose {target}",
        refuse=_ended("diagnosed", ", as its replay writes into the run's dir"),
    ),
    Verb(
        "gate", "g", "Run gate", ("gate",),
        ask=_asks("Run the promotion gate on {target}?\n\nThe daemon writes the run's resource summary into its "
                  "run dir and starts the job {target}.gate: it exports the newest durable checkpoint, compares "
                  "held-out eval loss with the base model, measures speaker similarity and intelligibility, "
                  "checks resource evidence and provenance, and writes a verdict criterion by criterion. The run "
                  "itself is not changed.", "Run gate"),
        call=lambda client, target, kind: client.gate(target),
        said=_of_run(lambda view, target: f"gate job {view.name} started for {view.parent or target}: the daemon "
                                          f"reports it {view.state}; the gate screen shows the verdict once "
                                          "written"),
        failed="could not start the gate on {target}",
        refuse=_gate_refusal,
    ),
    Verb(
        "start", "n", "Start run", ("app",),
        ask=_ask_launch,
        call=lambda client, target, kind: client.launch(spec_path=target, kind=kind),
        said=_of_run(_launched),
        failed="could not launch {target}",
    ),
    Verb(
        "probe", "p", "Probe bind roots", ("host",),
        ask=_asks("Probe the bind roots?\n\nFor each root the daemon starts a short-lived container that writes a "
                  "token through the path Docker is given; the daemon reads it back at the canonical path.",
                  "Probe"),
        call=lambda client, target, kind: client.probe(),
        said=_probed,
        failed="could not probe the bind roots",
    ),
)}


# -- what the app and the screens use -----------------------------------------------------------


def bindings(place: Place) -> list[Binding]:
    """The keys of the verbs offered at `place`; each calls that node's `action_verb(name)`."""
    return [Binding(verb.key, f"verb('{verb.name}')", verb.label) for verb in VERBS.values() if place in verb.offered]


def refusal(verb: VerbName, name: str, view: RunView | None) -> str | None:
    """Why the verb cannot apply to the run as last seen, or None to go ahead and ask."""
    refuse = VERBS[verb].refuse
    return None if view is None or refuse is None else refuse(name, view)


def question(verb: VerbName, target: str, kind: JobKind = "train") -> Question:
    return VERBS[verb].ask(target, kind)


def perform(client: DaemonClient, verb: VerbName, target: str, kind: JobKind = "train") -> Outcome:
    """Blocking: the one daemon call for the verb; errors become the Outcome's text."""
    try:
        answer = VERBS[verb].call(client, target, kind)
    except DaemonError as exc:
        return Outcome(verb, target, error=str(exc))
    except msgspec.MsgspecError as exc:
        return Outcome(verb, target, error=f"unreadable reply from the daemon: {exc}")
    if isinstance(answer, ProbeView):
        return Outcome(verb, target, probe=answer)
    return Outcome(verb, target, view=answer)


def report(outcome: Outcome) -> Report:
    """The notification for an outcome: what the daemon now says, or why it refused."""
    verb = VERBS[outcome.verb]
    if outcome.error is not None:
        return f"{verb.failed.format(target=outcome.target)}: {outcome.error}", "error"
    return verb.said(outcome)
