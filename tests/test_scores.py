"""Listening scores on the real tiny model: a trained run's kept checkpoints and the base model scored through
`qwen-train score`, the real clone path, the tiny Whisper judge, resemblyzer, DNSMOS and Silero VAD.

The tiny models are random, so the numbers mean nothing; what is tested is that every checkpoint kept gets a
record, the base row exists and is cached, TensorBoard holds the clones and the scalars at the checkpoints'
steps, retention keeps the best-scored checkpoint and those waiting for scores, a kill loses nothing, and a
verifier that separates nothing makes similarity "not measurable". One trained run serves the module.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import numpy as np
import pytest

from qwen_train import exitcodes
from qwen_train.checkpoint_files import list_checkpoints
from qwen_train.gate.verdict import Judge
from qwen_train.scores.record import BASE_FILE, SCORES_DIR, Scores, read_scores, scored_steps, step_file
from qwen_train.spec import Posture, RunSpec, ScoresSpec, TrainConfig, encode_spec
from tests.conftest import MakeDir, python_env
from tests.trainer_harness import run

LISTEN = ScoresSpec(enabled=True, rows=2, max_new_tokens=16)


def scored_spec(demo_root: Path, where: Path, max_steps: int, keep_last: int = 1) -> Path:
    spec = RunSpec(name="listen", lane="language-expansion", model=str(demo_root / "model"),
                   bundle=str(demo_root / "bundle"), language="swedish",
                   posture=Posture(checkpoint_every=2, eval_every=100, keep_last=keep_last),
                   train=TrainConfig(batch_size=2, lr=1e-3, max_steps=max_steps, eval_max_rows=4, deterministic=True),
                   scores=LISTEN)
    path = where / f"listen-{max_steps}.json"
    path.write_bytes(encode_spec(spec))
    return path


def score(run_dir: Path, *argv: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "qwen_train", "score", str(run_dir), *(str(a) for a in argv)]
    return subprocess.run(cmd, env={**python_env(), **(env or {})}, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def trained(demo_root: Path, module_dir: MakeDir) -> Path:
    """A 4-step run, checkpoints at 2 and 4, keep_last 1: step 2 is kept only because it waits for its scores."""
    where = module_dir("listen")
    code, out = run(scored_spec(demo_root, where, 4), where / "run")
    assert code == exitcodes.COMPLETED, out[-2000:]
    assert [c.name for c in list_checkpoints(where / "run")] == ["step-00000002", "step-00000004"]
    return where / "run"


@pytest.fixture(scope="module")
def scored(trained: Path, demo_root: Path) -> Path:
    proc = score(trained, "--asr", demo_root / "asr")
    assert proc.returncode == exitcodes.COMPLETED, proc.stderr[-3000:]
    return trained


def test_every_kept_checkpoint_and_the_base_get_scores(scored: Path, demo_root: Path) -> None:
    steps = scored_steps(scored)
    assert sorted(steps) == [2, 4]
    base = read_scores(scored / SCORES_DIR / BASE_FILE)
    assert base.step is None and base.checkpoint == "base" and base.language == "auto"  # zero-shot, no tag
    records = [read_scores(steps[s]) for s in (2, 4)]
    for record in [base, *records]:
        assert record.rows == 2 and len(record.per_row) == 2
        assert record.listening_set == base.listening_set  # one set for every model
        assert record.asr == str((demo_root / "asr").resolve()) and record.verifier.startswith("resemblyzer")
        assert record.cer is not None and record.wer is not None and record.swedish_share is not None
        assert record.similarity is not None and record.dnsmos_ovrl is not None
        assert record.calibration is not None and record.calibration.same_pairs >= 10
        assert 0.0 <= record.limit_share <= 1.0 and 0.0 <= record.silent_share <= 1.0
        for row in record.per_row:
            assert (scored / row.audio).is_file() and row.transcript is not None and row.max_new_tokens <= 16
    assert [r.step for r in records] == [2, 4] and all(r.language == "swedish" for r in records)
    assert records[0].model_digest != records[1].model_digest != base.model_digest
    assert not (scored / SCORES_DIR / "work").exists()  # the row work goes once the record is written


def test_a_second_call_scores_nothing_again(scored: Path, demo_root: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in (scored / SCORES_DIR).glob("*.json")}
    proc = score(scored, "--asr", demo_root / "asr")
    assert proc.returncode == exitcodes.COMPLETED, proc.stderr[-2000:]
    assert "scored already" in proc.stderr and "loading" not in proc.stderr
    assert {p: p.stat().st_mtime_ns for p in (scored / SCORES_DIR).glob("*.json")} == before


def test_tensorboard_holds_the_clones_and_the_scores_at_each_step(scored: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    board = EventAccumulator(str(scored / "tensorboard"), size_guidance={"audio": 0, "scalars": 0})
    board.Reload()
    tags = board.Tags()
    assert {"listening/cer", "listening/similarity", "listening/dnsmos_ovrl", "listening_base/cer"} <= set(
        tags["scalars"])
    assert sorted(e.step for e in board.Scalars("listening/cer")) == [2, 4]
    base = read_scores(scored / SCORES_DIR / BASE_FILE)
    assert [e.value for e in board.Scalars("listening_base/cer")] == pytest.approx([base.cer, base.cer])
    assert sorted(tags["audio"]) == ["listening_audio/000", "listening_audio/001"]
    clips = board.Audio("listening_audio/000")
    assert sorted(c.step for c in clips) == [2, 4] and all(c.encoded_audio_string[:4] == b"RIFF" for c in clips)


def _make_best(run_dir: Path, step: int) -> None:
    """Give `step`'s record the lowest CER (a stand-in for a checkpoint that really spoke better)."""
    path = run_dir / SCORES_DIR / step_file(step)
    record = read_scores(path)
    rows = [msgspec.structs.replace(r, hit_limit=False, silent=False) for r in record.per_row]
    path.write_bytes(msgspec.json.encode(msgspec.structs.replace(record, cer=0.0, limit_share=0.0, silent_share=0.0,
                                                                  per_row=rows)))


def test_retention_keeps_the_best_and_the_waiting_until_scored(scored: Path, demo_root: Path,
                                                               tmp_path: Path) -> None:
    from qwen_train.scores.best import best_step

    copy = tmp_path / "run"
    shutil.copytree(scored, copy)
    _make_best(copy, 2)
    assert best_step(copy) == 2
    code, out = run(scored_spec(demo_root, tmp_path, 8), copy, "--resume")
    assert code == exitcodes.COMPLETED, out[-2000:]
    # 2: the best-scored; 4: scored and not best, gone; 6: waiting for its scores; 8: the newest (keep_last 1)
    assert [c.name for c in list_checkpoints(copy)] == ["step-00000002", "step-00000006", "step-00000008"]


def test_killed_mid_way_loses_nothing_and_the_next_call_goes_on(trained: Path, tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(trained, copy, ignore=shutil.ignore_patterns(SCORES_DIR, "tensorboard"))
    cmd = [sys.executable, "-m", "qwen_train", "score", str(copy), "--checkpoint", "4"]
    env = {**python_env(), "QWEN_TEST_PAUSE": "score-row@0:120"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    deadline = time.monotonic() + 300
    for line in proc.stderr:  # the first clone is written, the second not begun
        if "test pause at score-row" in line or time.monotonic() > deadline:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    first = copy / SCORES_DIR / "audio" / "step-00000004" / "000.wav"
    kept = first.read_bytes()
    assert not (copy / SCORES_DIR / step_file(4)).exists()
    again = score(copy, "--checkpoint", "4")
    assert again.returncode == exitcodes.COMPLETED, again.stderr[-2000:]
    assert "1 of 2 clones to make" in again.stderr  # the first clone was kept, not made again
    record = read_scores(copy / SCORES_DIR / step_file(4))
    assert first.read_bytes() == kept and record.per_row[0].audio.endswith("000.wav")
    assert record.cer is None and "no ASR judge given" in record.notes["cer"]  # no --asr: said, not zero
    assert not (copy / SCORES_DIR / BASE_FILE).exists()  # --checkpoint alone leaves the base alone


class _Constant:
    """A verifier that hears the same voice in everything: it separates nothing."""

    judge = Judge(role="speaker_verifier", kind="constant", model="constant stand-in")

    def embed(self, wave: np.ndarray, rate: int) -> np.ndarray:
        return np.ones(8, np.float32) / np.sqrt(8)


def test_a_verifier_that_separates_nothing_makes_similarity_not_measurable(
        demo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from qwen_train.scores import engine
    from qwen_train.scores.judges import JudgeDirs
    from qwen_train.scores.listening import listening_set
    from qwen_train.scores.models import base_subject
    from qwen_train.spec import load_spec

    monkeypatch.setattr(engine, "load_verifier", lambda *_: _Constant())
    spec = msgspec.structs.replace(load_spec(scored_spec(demo_root, tmp_path, 2)),
                                   scores=ScoresSpec(enabled=True, rows=1, max_new_tokens=8))
    lset = listening_set(Path(spec.bundle), spec.scores)
    scorer = engine.Scorer(tmp_path, tmp_path / SCORES_DIR, spec, lset, JudgeDirs(), torch.device("cpu"))
    scores: Scores = scorer.score(base_subject(spec))
    calibration = scores.calibration
    assert calibration is not None and not calibration.measurable and calibration.eer == 0.5
    assert "EER of 50.0%" in calibration.reason and "--verifier" in calibration.reason
    assert calibration.same_scores == pytest.approx([1.0] * calibration.same_pairs)
    assert calibration.different_scores == pytest.approx([1.0] * calibration.different_pairs)
    assert scores.similarity_share is None and "not measurable" in scores.notes["similarity_share"]


def test_usage_errors_and_a_held_scores_lock(trained: Path, tmp_path: Path) -> None:
    from qwen_train.run_lock import acquire

    proc = score(tmp_path / "nowhere")
    assert proc.returncode == exitcodes.USAGE and "is not a directory" in proc.stderr
    proc = score(trained, "--checkpoint", "3")
    assert proc.returncode == exitcodes.USAGE and "kept steps: 2, 4" in proc.stderr
    proc = score(trained, "--asr", tmp_path)
    assert proc.returncode == exitcodes.USAGE and "not a model directory" in proc.stderr
    with acquire(trained / SCORES_DIR, None, "another scorer"):
        proc = score(trained, "--checkpoint", "2")
    assert proc.returncode == exitcodes.RUN_LOCKED and "another scorer" in proc.stderr
    plan = score(trained, "--plan")
    assert plan.returncode == exitcodes.COMPLETED and msgspec.json.decode(plan.stdout)["peak_bytes"] > 0
