"""The gate's criteria that read records only: how the run ended, resource evidence, provenance.

No torch and no model here: these are facts about files in the run dir, the
export and the bundle, decided the same way on any machine.

The resource summary is written by the daemon (qwen_daemon.resources.
ResourceSummary). qwen_train does not import qwen_daemon: imports flow
qwen_tui -> qwen_daemon -> qwen_train (DESIGN.md §2), and the daemon imports
this package, so importing it back would make a cycle and pull the daemon
into the training image. `_Summary` mirrors the fields the gate reads; msgspec
ignores the others, so the daemon may add fields freely, and a test decodes a
file written from the daemon's own Struct (and holds PRESENT_BUT_UNREAD equal
to the daemon's).
"""

from __future__ import annotations

import re
from pathlib import Path

import msgspec

from qwen_train.bundle.fingerprint import verify_bundle
from qwen_train.bundle.manifest import BundleError
from qwen_train.export import ExportProvenance
from qwen_train.gate.verdict import Criterion, CriterionName
from qwen_train.spec import RunSpec, SpecError, decode_spec
from qwen_train.status import Event, Status, StatusError, read_status
from qwen_train.train.heartbeat import MAX_EVENTS

CLEAN_END_STATES = frozenset({"completed", "stopped"})
NO_RESOURCES = "no resource summary: run the job through qwen-daemon, which writes RUN_DIR/resources.json"
PRESENT_BUT_UNREAD = "GPU present but unread"  # how the daemon's sampler begins that note (a test holds them equal)
_REVISION = re.compile(r"^(?:[0-9a-f]{7,40}(?:-dirty)?|.*\d+\.\d+.*)$")


def not_measured(name: CriterionName, why: str, threshold: float | None = None) -> Criterion:
    """A criterion that could not be measured fails: the gate never passes on missing evidence."""
    return Criterion(name=name, passed=False, detail=f"not measured: {why}", threshold=threshold)


# -- ended_cleanly -------------------------------------------------------------------------------


def open_non_finite(status: Status) -> list[Event]:
    """Non-finite events the run did not recover from.

    The trainer answers every non-finite step either with a rollback (a
    `retry` event after it, retry.py) or by ending `failed_non_finite`. An
    event with no later retry was never recovered from. The event list keeps
    only the newest MAX_EVENTS entries, so an event older than everything kept
    in a full list is one whose retry has scrolled out; the run went on past
    it, which is what recovery means.
    """
    events = status.non_finite_events or [e for e in status.events if e.kind == "non_finite"]
    retries = [e.time for e in status.events if e.kind == "retry"]
    scrolled = status.events[0].time if len(status.events) >= MAX_EVENTS else None
    return [e for e in events
            if not any(t >= e.time for t in retries) and not (scrolled is not None and e.time < scrolled)]


def ended_cleanly(run_dir: Path) -> Criterion:
    try:
        status = read_status(run_dir / "status.json")
    except StatusError as exc:
        return not_measured("ended_cleanly", f"{exc} (the trainer writes it; was this a training run?)")
    where = f"state {status.state} at step {status.step}" + (f" ({status.message})" if status.message else "")
    unresolved = open_non_finite(status)
    if status.state not in CLEAN_END_STATES:
        return Criterion(name="ended_cleanly", passed=False,
                         detail=f"{where}; a candidate must have ended completed or stopped")
    if unresolved:
        last = unresolved[-1]
        return Criterion(name="ended_cleanly", passed=False,
                         detail=f"{where}, but {len(unresolved)} non-finite event(s) left open, last at step "
                                f"{last.step}: {last.message}")
    seen = len(status.non_finite_events)
    history = f"; {seen} non-finite event(s), each followed by a rollback" if seen else "; no non-finite events"
    return Criterion(name="ended_cleanly", passed=True, detail=where + history)


# -- resource_evidence ---------------------------------------------------------------------------


class _Stats(msgspec.Struct, frozen=True):
    count: int


class _Gap(msgspec.Struct, frozen=True):
    start: float
    end: float


class _Summary(msgspec.Struct, frozen=True):
    """The fields of qwen_daemon.resources.ResourceSummary the gate reads (see the module docstring)."""

    samples: int
    first: float | None
    last: float | None
    metrics: dict[str, _Stats] = {}
    gaps: list[_Gap] = []
    gpu_note: str | None = None
    span_s: float | None = None  # the launches' covered time (None: written before the daemon recorded it)
    gpu_backend: str | None = None  # the sampler's GPU reader: nvml, amdsmi, sysfs or none
    gpu_present: bool | None = None  # whether the host had a GPU device, read or not (None: not recorded)


def observed_span(summary: _Summary) -> tuple[float, bool]:
    """(seconds the gaps are a share of, whether that is the launches' own recorded time).

    The daemon records the time its launches covered (`span_s`), which leaves
    out the time between a stop and a later resume. An older summary has no
    `span_s`; then the span runs from the earliest of the first sample and any
    gap's start to the latest of the last sample and any gap's end (a gap
    before the first sample, the sampler coming up late, is part of the run's
    life too), which counts any idle time between launches.
    """
    assert summary.first is not None and summary.last is not None
    if summary.span_s is not None:
        return summary.span_s, True
    start = min([summary.first, *(g.start for g in summary.gaps)])
    end = max([summary.last, *(g.end for g in summary.gaps)])
    return max(0.0, end - start), False


def gap_fraction(summary: _Summary) -> float:
    """Share of the observed span (observed_span) that is gaps."""
    span, _ = observed_span(summary)
    total = sum(max(0.0, g.end - g.start) for g in summary.gaps)
    if span <= 0:
        return 0.0 if total <= 0 else 1.0
    return min(1.0, total / span)


def _gpu_problem(summary: _Summary, has_metrics: bool) -> str | None:
    """Why the GPU evidence fails, or None.

    A GPU the sampler could not read fails however much else was sampled:
    the run's GPU evidence is missing, not absent. "No GPU metrics" passes
    only where the summary shows there was no GPU (gpu_present False); a
    summary from before presence was recorded passes on a note saying why, as
    it always did, and the detail says presence was not recorded.
    """
    note = (summary.gpu_note or "").strip()
    if PRESENT_BUT_UNREAD in note:
        return f"the host has a GPU the sampler could not read, so its busy and VRAM evidence is missing: {note}"
    if has_metrics:
        return None
    if summary.gpu_present:
        reader = summary.gpu_backend or "an unnamed reader"
        return (f"the host had a GPU but no GPU busy or VRAM metrics were sampled (reader: {reader}"
                + (f"; {note})" if note else ")"))
    if summary.gpu_present is None and not note:
        return "no GPU metrics and no gpu_note saying why"
    return None


def _gpu_text(summary: _Summary, metrics: int) -> str:
    reader = f" via {summary.gpu_backend}" if summary.gpu_backend else ""
    if metrics:
        return f"{metrics} GPU metrics{reader}"
    note = (summary.gpu_note or "").strip()
    if summary.gpu_present is False:
        return f"no GPU on the host ({note or 'no GPU device seen'})"
    if summary.gpu_present is None:
        return f"no GPU metrics ({note}; whether the host had a GPU is not recorded)" if note else "no GPU metrics"
    return f"no GPU metrics ({note or 'no note'})"


def resource_evidence(path: Path, max_gap_fraction: float) -> Criterion:
    name: CriterionName = "resource_evidence"
    try:
        summary = msgspec.json.decode(path.read_bytes(), type=_Summary)
    except FileNotFoundError:
        return not_measured(name, f"{NO_RESOURCES} ({path} is missing)", max_gap_fraction)
    except OSError as exc:
        return not_measured(name, f"cannot read {path}: {exc.strerror}", max_gap_fraction)
    except msgspec.MsgspecError as exc:
        return not_measured(name, f"{path} is not a resource summary: {exc}", max_gap_fraction)
    if summary.samples <= 0 or summary.first is None or summary.last is None:
        return not_measured(name, f"{path} holds no samples (the daemon's sampler never ran for this run)",
                            max_gap_fraction)
    fraction = gap_fraction(summary)
    gpu = [m for m in summary.metrics if "gpu" in m]  # host gpuN_* and the run's own run_gpu*_memory_bytes
    problems = []
    if fraction >= max_gap_fraction:
        problems.append(f"gaps cover {fraction:.1%} of the run, not under {max_gap_fraction:.0%}")
    gpu_problem = _gpu_problem(summary, bool(gpu))
    if gpu_problem:
        problems.append(gpu_problem)
    gpu_text = _gpu_text(summary, len(gpu))
    span, recorded = observed_span(summary)
    over = (f"over {span:.0f} s of launches" if recorded else
            f"over {span:.0f} s from first to last sample (the summary records no launch span, so time "
            "between launches counts)")
    detail = f"{summary.samples} samples {over}, {len(summary.gaps)} gap(s) = {fraction:.1%}; {gpu_text}"
    if problems:
        detail = "; ".join(problems) + f" ({detail})"
    return Criterion(name=name, passed=not problems, detail=detail, measured=fraction, threshold=max_gap_fraction)


# -- provenance ----------------------------------------------------------------------------------


def read_provenance(export_dir: Path) -> ExportProvenance:
    """export.json of an export; ValueError naming what is missing or malformed."""
    path = export_dir / "export.json"
    try:
        return msgspec.json.decode(path.read_bytes(), type=ExportProvenance)
    except FileNotFoundError:
        raise ValueError(f"{path} is missing: the judged model was not made by `qwen-train export`") from None
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    except msgspec.MsgspecError as exc:
        raise ValueError(f"{path} is incomplete or malformed: {exc}") from None


def _spec_problem(record: ExportProvenance) -> str | None:
    if not record.spec.strip():
        return "no run spec recorded"
    try:
        decode_spec(record.spec, source="export.json spec")
    except SpecError as exc:
        return str(exc)
    return None


def _fingerprint_problem(record: ExportProvenance, bundle: Path) -> str | None:
    if not record.bundle_fingerprint.strip():
        return "no bundle fingerprint recorded"
    try:
        current = verify_bundle(bundle)
    except BundleError as exc:
        return str(exc)
    if current != record.bundle_fingerprint:
        return (f"the model was trained on bundle {record.bundle_fingerprint[:12]}, but {bundle} is now "
                f"{current[:12]}")
    return None


NO_TRAINING_REVISION = "the checkpoint records no code revision (written before revisions were recorded)"


def _revision_problem(record: ExportProvenance, export_dir: Path) -> str | None:
    """The training code's revision must be recorded; the exporter's (or the gate's) is no substitute."""
    if record.export_code_revision is None:
        return (f"{export_dir / 'export.json'} predates recorded training revisions: its code_revision is the "
                f"exporter's, not the training code's; remove {export_dir} and run the gate again to re-export")
    revision = record.code_revision.strip()
    if not revision:
        return NO_TRAINING_REVISION
    if not _REVISION.match(revision):
        return f"code revision {revision!r} is neither a git commit nor a version"
    return None


def provenance(export_dir: Path, run_dir: Path, spec: RunSpec) -> Criterion:
    """export.json names this run, a valid spec, the intact bundle the gate evaluated on, and the code
    revision the checkpoint was trained with."""
    try:
        record = read_provenance(export_dir)
    except ValueError as exc:
        return Criterion(name="provenance", passed=False, detail=str(exc))
    problems = [p for p in (_spec_problem(record), _fingerprint_problem(record, Path(spec.bundle)),
                            _revision_problem(record, export_dir)) if p]
    if Path(record.run_dir).resolve() != run_dir.resolve():
        problems.append(f"export.json says it was exported from {record.run_dir}, not {run_dir.resolve()}")
    if problems:
        return Criterion(name="provenance", passed=False, detail="; ".join(problems))
    return Criterion(name="provenance", passed=True,
                     detail=f"{record.checkpoint} of {Path(record.run_dir).name}, bundle "
                            f"{record.bundle_fingerprint[:12]} intact, trained with code {record.code_revision[:12]}")
