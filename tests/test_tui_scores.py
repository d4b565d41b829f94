"""The run detail's listening scores, driven by Pilot against the scripted daemon.

The panel shows every score over the run's checkpoints against the base
model's row, with each score's judge, marks the best checkpoint (★, the
daemon's choice by the shared rule), colours each figure and trend glyph by
whether it beats the base, says why a score was not measured, and ends with
the scoring job's line: none yet, queued for the GPU and why, or scoring now.
"""

from __future__ import annotations

import pytest
from rich.table import Table
from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import Static

from qwen_daemon.protocol import RunHistory, ScorePoint
from qwen_daemon.protocol.scores import COLUMNS, score_point
from qwen_tui.app import HemmaApp
from qwen_tui.screens.detail import RunDetailScreen
from qwen_tui.widgets.scores_view import scores_table, trend
from tests.scores_fake import make_scores
from tests.test_tui_harness import SIZE, ScriptedDaemon, make_app, plain, run_view, until


def history(name: str, steps: tuple[int, ...] = (500, 1000, 1500), base: bool = True) -> RunHistory:
    points = [score_point(make_scores(step)) for step in steps]
    return RunHistory(name, scores=points, base_scores=score_point(make_scores(None)) if base else None,
                      best_score_step=1000 if 1000 in steps else None)


def scores_text(app: HemmaApp) -> str:
    return plain(app.screen.query_one("#scores", Static).content)


async def on_detail(pilot: Pilot[None], app: HemmaApp) -> None:
    await until(pilot, lambda: isinstance(app.screen, RunDetailScreen))
    await until(pilot, lambda: "loading" not in scores_text(app))


@pytest.fixture
def daemon() -> ScriptedDaemon:
    return ScriptedDaemon(run_view("done", state="completed", health="ended", step=1500))


@pytest.mark.asyncio
async def test_each_score_over_checkpoints_against_the_base_with_the_best_marked(daemon: ScriptedDaemon) -> None:
    daemon.histories["done"] = history("done")
    app = make_app(daemon, initial_run="done")
    async with app.run_test(size=SIZE) as pilot:
        await on_detail(pilot, app)
        text = scores_text(app)
        assert app.screen.query_one("#scores").border_title == "listening scores"
        assert "3 checkpoints scored; base model scored;  best ★ step 1000" in text
        assert "★ best by rule: lowest CER, then highest speaker similarity" in text
        lines = text.splitlines()
        header = next(line for line in lines if line.split()[:3] == ["score", "judge", "base"])
        assert header.split()[3:] == ["trend", "500", "★", "1000", "1500"]
        rows = {line.split()[0]: line for line in lines if line.split()}
        assert rows["CER"].split() == ["CER", "ASR", "/srv/models/kb-whisper-small", "0.450", "▃▁▃", "0.200",
                                       "0.100", "0.200"]
        assert "verifier resemblyzer" in rows["similarity"] and "DNSMOS P.835 (speechmos)" in rows["OVRL"]
        assert "Silero VAD (silero-vad)" in rows["rate"] and rows["hit"].split()[-4:] == ["▁▁█", "0.000", "0.000",
                                                                                           "0.500"]
        assert "no job yet" in text

        daemon.views["done.score"] = run_view("done.score", kind="score", parent="done", state="queued",
                                              health="waiting", step=None,
                                              message="GPU 0 (R9700) has 2.0 GiB free of 32.0 GiB; done.score "
                                                      "needs 4.1 GiB to load the model and its judges")
        await until(pilot, lambda: "queued" in scores_text(app))
        assert "scoring job done.score: queued  GPU 0 (R9700) has 2.0 GiB free" in scores_text(app)
        daemon.set("done.score", state="running", health="live", message=None)
        daemon.histories["done"] = history("done", steps=(500, 1000, 1500, 2000))
        await until(pilot, lambda: "4 checkpoints scored" in scores_text(app))
        assert "listening now" in scores_text(app)


@pytest.mark.asyncio
async def test_no_scores_yet_and_why_a_score_was_not_measured(daemon: ScriptedDaemon) -> None:
    app = make_app(daemon, initial_run="done")
    async with app.run_test(size=SIZE) as pilot:
        await on_detail(pilot, app)
        assert "no listening scores: this run's spec does not turn them on (scores.enabled)" in scores_text(app)
        daemon.set("done", scored=True)
        await until(pilot, lambda: "no listening scores yet: each durable checkpoint is scored as the run writes it"
                    in scores_text(app))
        note = "the verifier cannot tell this bundle's speakers apart (EER 0.50 over the limit 0.25)"
        points = [ScorePoint(step=500, cer=0.2, notes={"similarity": note}),
                  ScorePoint(step=1000, cer=0.1, notes={"similarity": note})]
        daemon.histories["done"] = RunHistory("done", scores=points, best_score_step=1000)
        await until(pilot, lambda: "not measured" in scores_text(app))
        text = scores_text(app)
        assert f"similarity (500, 1000): {note}" in text and "the base model not yet" in text
        row = next(line for line in text.splitlines() if line.split()[:1] == ["similarity"])
        assert row.count("—") >= 3  # no base, no figures: dashes, never zeros


@pytest.mark.asyncio
async def test_a_scoring_jobs_detail_shows_its_runs_scores(daemon: ScriptedDaemon) -> None:
    daemon.views["done.score"] = run_view("done.score", kind="score", parent="done", state="completed",
                                          health="ended", step=None, message="scored step 1500; best checkpoint: "
                                                                             "step 1000")
    daemon.histories["done.score"] = history("done")  # the daemon serves a child job its run's history
    app = make_app(daemon, initial_run="done.score")
    async with app.run_test(size=SIZE) as pilot:
        await on_detail(pilot, app)
        text = scores_text(app)
        assert "best ★ step 1000" in text
        assert "scoring job done.score: completed  scored step 1500; best checkpoint: step 1000" in text


def test_figures_and_trend_glyphs_are_coloured_against_the_base() -> None:
    points = [score_point(make_scores(step)) for step in (500, 1000, 1500)]
    base = score_point(make_scores(None))
    table: Table = scores_table(points, base, 1000)
    cer = [column._cells[0] for column in table.columns]  # row 0: CER; columns: score, judge, base, trend, steps
    assert isinstance(cer[4], Text) and cer[4].style == "green"  # 0.200 beats the base's 0.450
    assert isinstance(cer[5], Text) and cer[5].style == "green bold"  # the best column is bold
    similarity = [column._cells[3] for column in table.columns]
    assert isinstance(similarity[5], Text) and similarity[5].style == "red bold"  # 0.800 under the base's 0.880
    glyphs = trend(points, next(c for c in COLUMNS if c.key == "cer"), base.cer)
    assert glyphs.plain == "▃▁▃" and [span.style for span in glyphs.spans] == ["green", "green", "green"]
