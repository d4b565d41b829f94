"""Formatting of curves, cursor verdicts, diagnoses, the surfaces board, the host and action reports.

Records are built here; no daemon, no UI loop. Also the poller's split of
route failures, and the history's rules (the daemon's record replaces what was
watched, a rollback cuts the curve back).
"""

from __future__ import annotations

import io

import pytest
from rich.console import Console, RenderableType
from textual.binding import Binding, BindingType

from qwen_daemon.protocol import (
    AuditEntry,
    AuditList,
    BindRootStatus,
    BindRootsView,
    EvalPoint,
    GpuSample,
    LossPoint,
    ProbeResult,
    ProbeView,
    ResourceSample,
    ResourceSummary,
    RunDetail,
    RunHistory,
    Surface,
    SurfaceList,
)
from qwen_daemon.protocol.client import DaemonError
from qwen_daemon.protocol.display import metric_label
from qwen_train.status import Diagnosis, Event, ModuleFinding, Status
from qwen_tui.actions import VERBS, Outcome, question, refusal, report
from qwen_tui.app import HemmaApp
from qwen_tui.curves import curve_label, mean
from qwen_tui.format import cursor_verdict_text
from qwen_tui.history import HostHistory, LossHistory, Series
from qwen_tui.poller import Wants, fetch_snapshot, wants_diagnosis
from qwen_tui.screens.detail import RunDetailScreen
from qwen_tui.screens.gate import GateScreen
from qwen_tui.screens.host import HostScreen
from qwen_tui.screens.runs import RunsScreen
from qwen_tui.widgets.diagnosis_view import diagnosis_renderable, non_finite_renderable
from qwen_tui.widgets.host_view import bind_roots_renderable, metric_rows, probe_renderable, run_usage_renderable
from qwen_tui.widgets.runs_table import run_cells
from qwen_tui.widgets.surfaces_view import audit_renderable, lanes_table, launch_verdict, surfaces_renderable
from tests.test_tui_harness import ScriptedDaemon, run_view

NOW = 1_700_000_000.0
GIB = 1024**3


def plain(renderable: RenderableType, width: int = 160) -> str:
    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    console.print(renderable)
    return console.export_text()


# -- curves ----------------------------------------------------------------------------


def series(*points: tuple[int, float]) -> Series:
    made = Series()
    made.replace(points)
    return made


def test_curve_label_scale_source_and_parts() -> None:
    loss = series((0, 5.0), (1, 2.5), (2, 1.25))
    text = curve_label("train loss", loss, "daemon", last_loss=LossPoint(2, 1.25, 1.0, 0.25)).plain
    assert "train loss: 3 points, steps 0–2 (the run's record, from the daemon)" in text
    assert "last 1.2500   min 1.2500   max 5.0000" in text
    assert "talker 1.0000, code predictor 0.2500" in text
    evals = curve_label("eval loss", series((100, 3.0)), "daemon", last_eval=EvalPoint(100, 3.0, {"b": 3.2, "a": 2.9}))
    assert "per split: a 2.9000, b 3.2000" in evals.plain


def test_curve_label_names_non_finite_points_and_the_watch_fallback() -> None:
    loss = series(*[(s, float("nan") if s in (3, 4, 5, 6, 7, 8) else 1.0) for s in range(10)])
    text = curve_label("train loss", loss, "watch", "no such route: GET /runs/a/history").plain
    assert "seen while watching; the daemon gave no history: no such route: GET /runs/a/history" in text
    assert "6 non-finite points not drawn: step 3, 4, 5, 6, 7 and 1 more" in text
    assert "max 1.0000" in text  # NaN is neither min nor max
    empty = curve_label("eval loss", Series(), "watch").plain
    assert "no points yet (only live runs are recorded)" in empty
    assert "no points yet (the run's record" in curve_label("eval loss", Series(), "daemon").plain
    assert mean([1.0, 2.0, 6.0]) == 3.0 and mean([]) == 0.0


def test_daemon_history_replaces_the_watched_curve_and_rollback_cuts_back() -> None:
    history = LossHistory()
    history.record([run_view("a", step=10, loss=9.0), run_view("a-stale", step=1, loss=1.0, health="stale")])
    assert history.source("a") == "watch" and history.loss("a").values() == [9.0]
    assert len(history.loss("a-stale")) == 0
    history.record_history(RunHistory("a", [LossPoint(s, 10.0 - s, 0, 0) for s in range(8)], [EvalPoint(5, 4.0)]))
    assert history.source("a") == "daemon"
    assert history.loss("a").steps() == list(range(8)) and history.eval_loss("a").values() == [4.0]
    history.record([run_view("a", step=9, loss=1.5)])  # between fetches, live points extend it
    assert history.loss("a").steps()[-2:] == [7, 9]
    history.record_history(RunHistory("a", [LossPoint(s, 10.0 - s, 0, 0) for s in range(4)]))  # resumed earlier
    assert history.loss("a").steps() == [0, 1, 2, 3] and len(history.eval_loss("a")) == 0
    assert history.last_eval("a") is None and history.last_loss("a") == LossPoint(3, 7.0, 0, 0)


# -- cursor verdict and diagnosis ------------------------------------------------------


@pytest.mark.parametrize(
    ("verdict", "style"),
    [
        ("ok: ckpt-500 at epoch 1 batch 40/80, bundle fingerprint matches", "green"),
        ("reset: epoch 2 from batch 0 (asked with --reset-cursor)", "bold yellow"),
        ("rejected: bundle fingerprint differs from the checkpoint's", "bold red"),
        ("checked by hand", ""),
    ],
)
def test_cursor_verdicts_are_coloured_by_prefix(verdict: str, style: str) -> None:
    text = cursor_verdict_text(verdict)
    assert text.plain == verdict and str(text.style) == style


def test_no_cursor_verdict_is_a_dash() -> None:
    assert cursor_verdict_text(None).plain == "—"


def diagnosis(**changes: object) -> Diagnosis:
    base: dict[str, object] = dict(
        step=812, epoch=1, position=40, loss_parts={"talker": "nan", "code_predictor": "2.1"}, grad_norm="nan",
        broken_parts=["talker"], forward=ModuleFinding("talker.model.layers.15", "bfloat16", "3.1e+04", "inf"),
        backward=ModuleFinding("talker.codec_head", "bfloat16", "1.0", "nan"), backward_note="",
        precision="bf16", fp32_reproduces=True, summary="step 812: loss NaN", created_at=NOW,
    )  # fmt: skip
    base.update(changes)
    return Diagnosis(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("reproduces", "words"),
    [
        (True, "reproduces in fp32: not a precision problem"),
        (False, "finite in fp32: the fault appears only in bf16 (a precision problem)"),
        (None, "not judged: no loss part was non-finite in the replay"),
    ],
)
def test_diagnosis_states_the_fp32_verdict(reproduces: bool | None, words: str) -> None:
    text = plain(diagnosis_renderable(diagnosis(fp32_reproduces=reproduces), now=NOW))
    assert words in text
    assert "talker.model.layers.15  (bfloat16; input absmax 3.1e+04 → output absmax inf)" in text
    assert "talker.codec_head" in text and "step 812, epoch 1, batch 40" in text
    assert "code_predictor 2.1, talker nan" in text


def test_diagnosis_without_findings() -> None:
    text = plain(diagnosis_renderable(diagnosis(forward=None, backward=None, broken_parts=[],
                                                backward_note="anomaly detection: backward stayed finite")))
    assert "every module output stayed finite" in text and "no non-finite gradient located" in text
    assert "anomaly detection: backward stayed finite" in text and "broken loss parts  none" in text


def status(**changes: object) -> Status:
    base: dict[str, object] = dict(run_id="a", nonce="n", host="h", pid=1, state="training", heartbeat=NOW,
                                   started_at=NOW)
    base.update(changes)
    return Status(**base)  # type: ignore[arg-type]


def test_non_finite_panel_prefers_the_status_then_the_daemon_and_hints_d() -> None:
    event = Event(NOW, "non_finite", "loss NaN", 812)
    from_status = plain(non_finite_renderable(status(non_finite_events=[event], retries=1, diagnosis=diagnosis()),
                                              diagnosis(summary="other")))
    assert "1 non-finite event, 1 retry" in from_status and "step 812: loss NaN" in from_status
    assert "other" not in from_status
    assert "other" in plain(non_finite_renderable(status(non_finite_events=[event]), diagnosis(summary="other")))
    hint = plain(non_finite_renderable(status(non_finite_events=[event]), None, "run 'a' has no diagnosis"))
    assert "press d" in hint and "the daemon has none: run 'a' has no diagnosis" in hint
    assert "no non-finite events" in plain(non_finite_renderable(status(), None))
    assert "no diagnosis: gone" in plain(non_finite_renderable(None, None, "gone"))


def test_diagnosis_is_asked_for_only_where_one_can_exist() -> None:
    summary = ResourceSummary(0, None, None)
    healthy = RunDetail(run_view("a"), status(), summary)
    troubled = RunDetail(run_view("a"), status(non_finite_events=[Event(NOW, "non_finite", "x")]), summary)
    known = RunDetail(run_view("a"), status(non_finite_events=[Event(NOW, "non_finite", "x")], diagnosis=diagnosis()),
                      summary)
    failed = RunDetail(run_view("a", state="failed_non_finite", health="ended"), None, summary)
    job = RunDetail(run_view("a-diag", kind="diagnose", parent="a"), status(), summary)
    assert [wants_diagnosis(d) for d in (healthy, troubled, known, failed, job)] == [False, True, False, True, True]


# -- runs table, metrics ---------------------------------------------------------------


def test_row_has_class_and_kind() -> None:
    cells = run_cells(run_view("a-diag", kind="diagnose", parent="a", surface_class="recovery"))
    assert cells["class"].plain == "recovery" and cells["kind"].plain == "diagnose of a"
    assert run_cells(run_view("p", kind="preprocess"))["kind"].plain == "preprocess"
    assert run_cells(run_view("x", surface_class=None))["class"].plain == "—"


def test_per_run_metric_labels() -> None:
    names = ("run_cpu_percent", "run_rss_bytes", "run_gpu_memory_bytes")
    assert [metric_label(n) for n in names] == ["run CPU", "run RSS, summed", "run GPU memory"]


# -- surfaces board --------------------------------------------------------------------


def test_surfaces_board_rules_and_verdicts() -> None:
    surfaces = SurfaceList([Surface("lab", "mechanism"), Surface("legacy", "legacy-readonly", "old notes"),
                            Surface("fresh", "recovery")], "/s.json")
    runs = [run_view("a", surface="lab"), run_view("b", surface="lab", state="stopped", health="ended")]
    text = plain(surfaces_renderable(surfaces, runs))
    assert "lab" in text and "2 (1 active)" in text and "old notes" in text
    assert "deprecated  not for new work: never launched" in text
    assert text.count("none") >= 2  # provenance and deprecated have no surfaces, their rules still shown
    assert launch_verdict(Surface("x", "provenance")).plain == "never launched"
    assert launch_verdict(Surface("x", "recovery", unblocked_by="/g.json")).plain == "unblocked by gate /g.json"
    assert launch_verdict(Surface("x", "mechanism")).plain == "launches"
    lanes = plain(lanes_table(runs))
    assert "benchmark" in lanes and "evaluate, no training" in lanes and "2 (1 active)" in lanes


def test_audit_log_newest_first_with_gate() -> None:
    entries = [AuditEntry(NOW - 60, "s1", None, "mechanism", "new lab", "uid 1000"),
               AuditEntry(NOW, "s2", "recovery", "recovery", "gate passed", "uid 0", "/g.json")]
    text = plain(audit_renderable(AuditList(entries), now=NOW))
    assert text.index("s2") < text.index("s1")
    assert "new → mechanism" in text and "/g.json" in text and "uid 0" in text
    assert "no class changes" in plain(audit_renderable(AuditList([])))


# -- host ------------------------------------------------------------------------------


def test_host_history_keeps_each_sample_once() -> None:
    history = HostHistory(max_samples=2)
    for t in (1.0, 1.0, 2.0, 3.0):
        history.record(ResourceSample(t, t, 1, 2))
    history.record(None)
    assert [s.time for s in history.samples()] == [2.0, 3.0]


def test_metric_rows_follow_gpus_and_skip_samples_without_them() -> None:
    gpu = GpuSample(1, "H200", 50.0, 10 * GIB, 141 * GIB)
    samples = [ResourceSample(0, 5.0, GIB, 4 * GIB), ResourceSample(5, 7.0, 2 * GIB, 4 * GIB, [gpu])]
    rows = {row.key: row for row in metric_rows(samples)}
    assert list(rows) == ["cpu", "ram", "gpu1-busy", "gpu1-vram"]
    assert rows["gpu1-busy"].values == [50.0] and rows["cpu"].values == [5.0, 7.0]
    assert rows["ram"].now == "2.0 GiB of 4.0 GiB" and rows["gpu1-vram"].now == "10.0 GiB of 141.0 GiB"
    assert metric_rows([]) == []


def test_bind_roots_usage_and_probe_words() -> None:
    roots = BindRootsView([BindRootStatus("/srv/scratch", "", True),
                           BindRootStatus("/srv/storage", "/home/s", False, ["not a mount point: mount --bind"])])
    text = plain(bind_roots_renderable(roots))
    assert "ok      /srv/scratch  (Docker sees it directly)" in text
    assert "PROBLEM /srv/storage  from /home/s" in text and "not a mount point: mount --bind" in text
    assert "no bind roots configured" in plain(bind_roots_renderable(BindRootsView([])))
    assert "no run's processes" in plain(run_usage_renderable(ResourceSample(0, 1, 1, 2)))
    assert "not probed yet" in plain(probe_renderable(None, None))
    done = Outcome("probe", "the bind roots", probe=ProbeView([ProbeResult("/srv/scratch", True, "read back")]))
    assert "ok    /srv/scratch  read back" in plain(probe_renderable(done, NOW - 5, now=NOW))


# -- actions ---------------------------------------------------------------------------


def test_refusals_and_questions() -> None:
    ended = run_view("a", state="completed", health="ended")
    assert refusal("stop", "a", ended) == "a is completed: there is nothing to stop"
    assert refusal("resume", "a", run_view("a")) is not None
    assert refusal("resume", "a", run_view("a", state="failed", health="ended")) is None
    assert refusal("diagnose", "a", run_view("a")) is not None and refusal("stop", "a", None) is None
    assert refusal("diagnose", "a", run_view("a", state="failed_non_finite", health="ended")) is None
    for verb in ("stop", "resume", "diagnose", "start", "probe"):
        asked = question(verb, "/x/spec.json" if verb == "start" else "a")  # type: ignore[arg-type]
        assert asked.yes != asked.no and asked.text.endswith(".")


def test_reports_say_what_happened() -> None:
    job = run_view("a-diag", kind="diagnose", parent="a", state="launching", health="waiting")
    assert report(Outcome("diagnose", "a", view=job)) == (
        "diagnose job a-diag started for a: the daemon reports it launching; its detail shows the diagnosis once "
        "written",
        "information",
    )
    text, severity = report(Outcome("start", "/s.json", view=run_view("n", state="launching")))
    assert text == "launched n from /s.json: launching on surface lab, class mechanism, lane single-speaker"
    assert report(Outcome("resume", "a", error="run 'a' is running"))[1] == "error"
    assert report(Outcome("probe", "", probe=ProbeView([])))[1] == "warning"
    ok = report(Outcome("probe", "", probe=ProbeView([ProbeResult("/a", True, "")])))
    assert ok == ("bind-root probe: all 1 roots are seen by a container", "information")



def test_each_verb_is_one_entry_bound_where_it_is_offered() -> None:
    places: dict[str, list[BindingType]] = {"app": HemmaApp.BINDINGS, "runs": RunsScreen.BINDINGS,
                                            "detail": RunDetailScreen.BINDINGS, "gate": GateScreen.BINDINGS,
                                            "host": HostScreen.BINDINGS}
    for place, bindings in places.items():
        bound = {binding.key: binding.action for binding in bindings if isinstance(binding, Binding)}
        assert len(bound) == len(bindings), f"two bindings share a key on {place}"
        for verb in VERBS.values():
            assert (bound.get(verb.key) == f"verb('{verb.name}')") == (place in verb.offered), (place, verb.name)
    assert [name for name, verb in VERBS.items() if verb.refuse is not None] == ["stop", "resume", "diagnose", "gate"]

# -- the poller splits failures by route ----------------------------------------------


def test_a_failing_route_blanks_only_its_part() -> None:
    daemon = ScriptedDaemon(run_view("a"))
    daemon.fail["history"] = DaemonError(404, "no such route: GET /runs/a/history")
    daemon.fail["surfaces"] = DaemonError(500, "boom")
    daemon.fail["bind_roots"] = DaemonError(500, "mountinfo")
    snap = fetch_snapshot(daemon, Wants(detail="a", surfaces=True, bind_roots=True))
    assert snap.detail is not None and snap.history is None
    assert snap.history_error == "no such route: GET /runs/a/history"
    assert snap.surfaces is None and snap.surfaces_error == "boom" and snap.audit is not None
    assert snap.bind_roots_error == "mountinfo"
    assert fetch_snapshot(daemon).detail_name is None and fetch_snapshot(daemon).surfaces is None
    daemon.up = False
    with pytest.raises(DaemonError):
        fetch_snapshot(daemon, Wants(detail="a"))
