"""The `score` job kind and a run's score records, without a daemon: command line, mounts, the files, the best.

test_daemon_scores_api.py runs scoring jobs through a real daemon; these pin
the pieces it is built from: the command-line contract with `qwen-train score`,
what a container sees, how real score files in a real run dir are read (and
refused: malformed, a link, a FIFO, a record on the wrong step), which
checkpoint is the best and why, how a scoring job's end reads, what goes to
journald, and what scoring needs on a shared card beside a training run.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import msgspec
import pytest

from qwen_daemon.jobs import job as jobs
from qwen_daemon.jobs.job import Job, RunnerRefusal, ScoreTarget, job_argv
from qwen_daemon.jobs.kinds import SCORE, decode_job, resolve_launch
from qwen_daemon.protocol import LaunchRequest, ScorePoint, best_step, kind_info, score_name
from qwen_daemon.protocol.errors import RequestError
from qwen_daemon.protocol.gpu import GpuHolder
from qwen_daemon.protocol.resources import GpuSample
from qwen_daemon.protocol.scores import COLUMNS, compare, judge_name, notes_by_reason, score_point
from qwen_daemon.runs.record import RunRecord
from qwen_daemon.runs.score_news import journal_fields, score_line
from qwen_daemon.runs.scores import ScoresReader, unscored
from qwen_daemon.sharing.admission import GIB, RULE_RESERVED, RULE_ROOM
from qwen_daemon.sharing.beside import scoring_peak, still_to_grow, why_not_beside
from qwen_train.checkpoint_files import CKPT_DIR, checkpoint_name
from qwen_train.scores.record import SCORES_DIR, step_file
from qwen_train.spec import RunSpec, SpecError, encode_spec
from tests.scores_fake import make_scores, write_scores

REFERENCE = Path(__file__).resolve().parents[1] / "bench" / "train_model_config.json"  # the real model's config


def score_job(run_dir: Path, **options: object) -> Job:
    target = ScoreTarget(run="r1", run_dir=str(run_dir), **options)  # type: ignore[arg-type]
    return Job(SCORE, score_name("r1"), "benchmark", "lab", "process", target, parent="r1")


def test_the_command_line_is_the_score_cli_contract(tmp_path: Path) -> None:
    run_dir = tmp_path / "r1"
    job = score_job(run_dir, checkpoint=500, base=True, asr="/srv/asr", verifier="/srv/xvector", device="cpu")
    argv = job_argv("/py", tmp_path / "r1.score", job, "n1", resume=True)
    assert argv == ["/py", "-m", "qwen_train", "score", str(run_dir), "--checkpoint", "500", "--base",
                    "--asr", "/srv/asr", "--verifier", "/srv/xvector", "--device", "cpu"]
    after_end = job_argv("/py", tmp_path / "r1.score", score_job(run_dir, all_unscored=True), "n1", resume=False)
    assert after_end == ["/py", "-m", "qwen_train", "score", str(run_dir), "--all-unscored"]


def test_a_scoring_job_is_a_child_that_runs_beside_its_run(tmp_path: Path) -> None:
    assert score_name("r1") == "r1.score" and score_name("x" * 64).endswith(".score")
    info = kind_info("score")
    assert info.child and info.beside and not info.trains and info.parent_role == "scores run"
    job = score_job(tmp_path / "r1", checkpoint=7)
    assert job.type.works_in(job, tmp_path / "r1.score") == tmp_path / "r1.score"  # never the run's lock
    back = decode_job("score", job.name, job.lane, job.surface, job.runner, job.spec_bytes().decode(), "r1")
    assert back == job
    with pytest.raises(SpecError, match="invalid score target"):
        decode_job("score", job.name, job.lane, job.surface, job.runner, '{"run": "r1"}', "r1")
    with pytest.raises(RequestError, match="started by the daemon"):
        resolve_launch(LaunchRequest(kind="score"))


def test_a_container_sees_the_run_dir_writable_and_model_bundle_asr_read_only(tmp_path: Path) -> None:
    run_dir = tmp_path / "r1"
    run_dir.mkdir()
    spec = RunSpec(name="r1", lane="benchmark", model="/srv/models/base", bundle="/srv/bundles/b")
    (run_dir / jobs.SPEC_FILE).write_bytes(encode_spec(spec))
    job = score_job(run_dir, checkpoint=3, asr="/srv/asr", verifier="/srv/xvector")
    assert job.paths() == [(run_dir, False, "run r1's dir"), (Path("/srv/models/base"), True, "spec.model"),
                           (Path("/srv/bundles/b"), True, "spec.bundle"), (Path("/srv/asr"), True, "gate.asr"),
                           (Path("/srv/xvector"), True, "gate.verifier")]
    load = job.type.beside(job)
    assert load is not None and load.spec == spec and load.asr == "/srv/asr"  # what GPU admission plans by
    with pytest.raises(RunnerRefusal, match="cannot tell what scoring reads"):
        score_job(tmp_path / "gone").paths()


def kept(run_dir: Path, *steps: int) -> None:
    for step in steps:
        (run_dir / CKPT_DIR / checkpoint_name(step)).mkdir(parents=True)


def test_real_score_files_are_read_with_the_best_marked_and_the_unscored_named(tmp_path: Path) -> None:
    run_dir = tmp_path / "r1"
    kept(run_dir, 500, 1000, 1500, 2000)
    for step in (None, 500, 1000, 1500):
        write_scores(run_dir, make_scores(step))
    scores = ScoresReader().run_scores("r1", run_dir)
    assert scores.base is not None and scores.base.step is None and scores.problems == []
    assert [s.step for s in scores.checkpoints] == [500, 1000, 1500] and scores.kept == [500, 1000, 1500, 2000]
    assert scores.best == 1000 and unscored(scores) == [2000]
    assert scores.checkpoints[1].per_row[0].heard_language == "sv"  # served whole, row by row


def test_a_scores_file_that_cannot_be_used_is_named_and_left_out(tmp_path: Path) -> None:
    run_dir = tmp_path / "r1"
    kept(run_dir, 100, 200, 300, 400, 500)
    folder = run_dir / SCORES_DIR
    write_scores(run_dir, make_scores(100))
    folder.joinpath(step_file(200)).write_bytes(b'{"step": 200, "cer": ')
    folder.joinpath(step_file(300)).write_bytes(msgspec.json.encode(make_scores(301)))
    os.mkfifo(folder / step_file(400))  # a FIFO must never hang the daemon
    (folder / step_file(500)).symlink_to(folder / step_file(100))
    reader = ScoresReader()
    scores = reader.run_scores("r1", run_dir)
    assert [s.step for s in scores.checkpoints] == [100]
    problems = {Path(p.path).name: p.error for p in scores.problems}
    assert set(problems) == {step_file(s) for s in (200, 300, 400, 500)}
    assert "malformed scores" in problems[step_file(200)]
    assert "holds the scores of step 301, not of its file's step 300" in problems[step_file(300)]
    assert "not a regular file" in problems[step_file(400)] and "symlink" in problems[step_file(500)]
    assert unscored(scores) == [200, 300, 400, 500]  # a broken record is scored again
    write_scores(run_dir, make_scores(200))  # rewritten: read again, not served from the cache
    assert [s.step for s in reader.run_scores("r1", run_dir).checkpoints] == [100, 200]


def point(step: int | None, **values: float | None) -> ScorePoint:
    return ScorePoint(step=step, **values)  # type: ignore[arg-type]


def test_the_best_checkpoint_rule() -> None:
    assert best_step([]) is None and best_step([point(None, cer=0.01)]) is None  # the base is no candidate
    assert best_step([point(1, cer=0.3), point(2, cer=0.2), point(3, cer=0.25)]) == 2
    assert best_step([point(1, cer=0.2, similarity=0.7), point(2, cer=0.2, similarity=0.8)]) == 2
    assert best_step([point(1, cer=0.2, similarity=0.8), point(2, cer=0.2, similarity=0.8)]) == 2  # the newer
    assert best_step([point(1, cer=None, similarity=0.9), point(2, cer=0.5)]) == 2  # measured beats unmeasured
    assert best_step([point(1, similarity=0.6), point(2, similarity=0.7)]) == 2  # no ASR judge: by similarity
    failing = [point(1, cer=0.05, limit_share=0.2), point(2, cer=0.3, silent_share=0.05)]
    assert best_step(failing) == 2  # clones that never stop flatter the CER
    assert best_step([point(1, cer=0.05, limit_share=0.2), point(2, cer=0.3, limit_share=0.5)]) == 1


def test_which_way_each_score_is_better_than_the_base() -> None:
    by_key = {c.key: c for c in COLUMNS}
    assert compare(by_key["cer"], 0.1, 0.4) == 1 and compare(by_key["cer"], 0.5, 0.4) == -1
    assert compare(by_key["similarity"], 0.9, 0.8) == 1 and compare(by_key["dnsmos_ovrl"], 3.0, 3.0) == 0
    assert compare(by_key["rate_ratio"], 1.05, 0.8) == 1 and compare(by_key["rate_ratio"], 1.3, 0.9) == -1
    assert compare(by_key["limit_share"], None, 0.0) is None


def score_record(run_dir: Path, launched_at: float, target: ScoreTarget | None = None) -> RunRecord:
    target = target or ScoreTarget(run="r1", run_dir=str(run_dir), all_unscored=True)
    return RunRecord(name="r1.score", lane="benchmark", surface="lab", runner="process", state="running",
                     nonce="n1", pid=1, run_dir=str(run_dir.parent / "r1.score"), created_at=launched_at,
                     launched_at=launched_at, ended_at=None, exit_code=None,
                     spec_json=msgspec.json.encode(target).decode(), message=None, kind="score", parent="r1")


def test_a_scoring_jobs_end_says_what_this_launch_scored(tmp_path: Path) -> None:
    run_dir = tmp_path / "r1"
    now = time.time()
    write_scores(run_dir, make_scores(500, measured_at=now - 60))  # an earlier launch's
    write_scores(run_dir, make_scores(None, measured_at=now + 1))
    write_scores(run_dir, make_scores(1000, measured_at=now + 2))
    record = score_record(run_dir, now)
    assert SCORE.outcome(record, 0, "completed", "x") == (
        "completed", "scored step 1000 and the base model; best checkpoint: step 1000")
    log = run_dir.parent / "r1.score" / jobs.LOG_FILE
    log.parent.mkdir()
    log.write_text("=== t launch n1: score\nscore: no ASR judge could be loaded\n")
    state, message = SCORE.outcome(record, 1, "failed", "trainer exited with code 1 (failed)")
    assert state == "failed" and message == ("score: no ASR judge could be loaded (trainer exited with code 1); "
                                             "2 records written before it ended are kept")
    later = score_record(run_dir, now + 10)
    assert SCORE.outcome(later, 0, "completed", "x")[1] == "wrote no new scores: what it was given was scored already"


def test_journald_fields_and_the_event_line_carry_every_measured_score_and_its_judges() -> None:
    scores = make_scores(1000, notes={"swedish_share": "the ASR judge was forced to Swedish"})
    fields = journal_fields("r1", scores, best=1000)
    assert fields["QWEN_RUN_ID"] == "r1" and fields["QWEN_SCORE_STEP"] == 1000 and fields["QWEN_SCORE_BEST"] == 1
    assert fields["QWEN_SCORE_CER"] == "0.1" and fields["QWEN_SCORE_ASR"] == "/srv/models/kb-whisper-small"
    assert fields["QWEN_SCORE_VERIFIER"] == "resemblyzer" and fields["QWEN_SCORE_VERIFIER_EER"] == "0.04"
    assert {f"QWEN_SCORE_{c.key.upper()}" for c in COLUMNS} <= set(fields)
    base = journal_fields("r1", make_scores(None), best=1000)
    assert base["QWEN_SCORE_STEP"] == "base" and base["QWEN_SCORE_BEST"] == 0
    line = score_line("r1", score_point(scores), best=1000)
    assert line.startswith("run r1: step 1000 scored (best checkpoint so far): CER 0.1000, WER 0.2500")


def card(used: int) -> list[GpuSample]:
    return [GpuSample(index=0, name="AMD Radeon AI PRO R9700", busy_percent=3.0, vram_used_bytes=used,
                      vram_total_bytes=32 * GIB)]


def test_scoring_needs_the_model_in_bf16_and_its_asr_judge(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_bytes(REFERENCE.read_bytes())
    spec = RunSpec(name="r1", lane="benchmark", model=str(tmp_path / "model"), bundle=str(tmp_path / "b"))
    bare = scoring_peak(spec, None)
    assert 5 * GIB < bare < 7 * GIB  # 1.9 B parameters in bf16, the judges, generation, the context
    (tmp_path / "asr").mkdir()
    with open(tmp_path / "asr" / "model.safetensors", "wb") as weights:
        weights.truncate(GIB)
    assert scoring_peak(spec, str(tmp_path / "asr")) == bare + GIB
    with pytest.raises(ValueError, match="config"):
        scoring_peak(RunSpec(name="r1", lane="benchmark", model=str(tmp_path / "none"), bundle="/b"), None)


def test_beside_a_run_scoring_leaves_room_for_the_runs_memory_plan() -> None:
    run = GpuHolder(gpu=0, pid=2101, vram_bytes=10 * GIB, run="sv-1")
    llama = GpuHolder(gpu=0, pid=3300, vram_bytes=4 * GIB, command="llama-server -m q4.gguf")
    assert still_to_grow({"sv-1": 16 * GIB}, [run, llama], 0) == 6 * GIB  # planned 16, holds 10 so far
    assert still_to_grow({"sv-1": 8 * GIB}, [run], 0) == 0  # past its plan: it holds what it needs
    plans = {"sv-1": 16 * GIB}
    # 18 GiB free: 5 for scoring fits alone, not with the 6 the run may still take
    rule, reason = why_not_beside("sv-1.score", 13 * GIB, card(used=14 * GIB), None, [run, llama],
                                  lambda _: plans) or ("", "")
    assert rule == RULE_ROOM and "18.0 GiB free of 32.0 GiB" in reason and "needs 13.0 GiB" in reason
    assert "6.0 GiB must stay free for run sv-1 to reach its memory plan" in reason and "llama-server" in reason
    assert why_not_beside("sv-1.score", 12 * GIB, card(used=14 * GIB), None, [run, llama], lambda _: plans) is None
    assert why_not_beside("x.score", GIB, [], None, [], lambda _: {}) is None  # no GPU: nothing to judge
    from qwen_daemon.protocol.gpu import GpuReservation
    reserved = GpuReservation(reason="sidecar", actor="ops", since=time.time())
    assert (why_not_beside("x.score", GIB, card(0), reserved, [], lambda _: {}) or ("",))[0] == RULE_RESERVED


def test_each_score_names_the_judge_its_records_name_and_each_reason_it_was_not_measured_once() -> None:
    named = [score_point(make_scores(step, dnsmos="speechmos 0.0.1.1 DNSMOS P.835", vad="silero-vad 6.2.3 (ONNX)",
                                     notes={"rate_ratio": "no row has speech in both its clone and its real "
                                                          "recording"}))
             for step in (None, 3, 6)]
    by_key = {c.key: c for c in COLUMNS}
    assert judge_name(by_key["dnsmos_ovrl"], named) == "speechmos 0.0.1.1 DNSMOS P.835"
    assert judge_name(by_key["silent_share"], named) == "silero-vad 6.2.3 (ONNX)"
    assert judge_name(by_key["cer"], named) == "ASR /srv/models/kb-whisper-small"
    assert judge_name(by_key["dnsmos_ovrl"], [ScorePoint(step=1)]) == "DNSMOS P.835 (speechmos)"  # an older record
    assert judge_name(by_key["similarity"], [ScorePoint(step=1)]) == "verifier (not named)"
    assert notes_by_reason(named) == {("rate", "no row has speech in both its clone and its real recording"):
                                      ["base", "3", "6"]}


def test_only_a_kept_checkpoint_is_the_best(tmp_path: Path) -> None:
    run_dir = tmp_path / "r1"
    kept(run_dir, 500, 1500)  # 1000, the best by its scores, was pruned: it cannot be promoted
    for step in (500, 1000, 1500):
        write_scores(run_dir, make_scores(step))
    scores = ScoresReader().run_scores("r1", run_dir)
    assert [s.step for s in scores.checkpoints] == [500, 1000, 1500] and scores.best == 500
