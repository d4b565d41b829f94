"""The gate's listening criteria read the scores records, and the gate judges the best-scored checkpoint by default.

The criteria are decided on hand-made records (no model: every number is chosen), each in both directions, so
the thresholds' directions are pinned; the choice of checkpoint is checked on a real run dir's checkpoints.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import msgspec
import numpy as np
import pytest

from qwen_train import exitcodes
from qwen_train.bundle.manifest import Row
from qwen_train.checkpoint_files import list_checkpoints
from qwen_train.gate.clones import Clone
from qwen_train.gate.listening import end_of_speech, intelligibility, quality, speaker_similarity, speaking_rate
from qwen_train.gate.target import GateOptions, resolve
from qwen_train.gate.thresholds import Thresholds, listening_spec, thresholds_record
from qwen_train.gate.verdict import Judge
from qwen_train.scores.best import RULE, best_of, best_step
from qwen_train.scores.calibration import EER_LIMIT, equal_error_rate
from qwen_train.scores.identity import checkpoint_digest
from qwen_train.scores.record import SCORES_DIR, Calibration, RowScore, Scores, step_file
from qwen_train.spec import Posture, ScoresSpec
from tests.conftest import MakeDir
from tests.trainer_harness import run, write_spec

T = Thresholds()
ASR = Judge("asr", "whisper", "/models/kb-whisper-large")
VERIFIER = Judge("speaker_verifier", "resemblyzer", "resemblyzer 0.1.4")


def calibration(eer: float = 0.05, threshold: float = 0.7, median: float = 0.85) -> Calibration:
    return Calibration(verifier="resemblyzer", same_pairs=20, different_pairs=20, same_scores=[median] * 20,
                       different_scores=[0.6] * 20, eer=eer, threshold=threshold, same_median=median,
                       measurable=eer <= EER_LIMIT)


def scores(step: int | None = 4, **fields: object) -> Scores:
    rows = [RowScore(row_id=f"r{i}", speaker_id="s", text="Hej då", transcript="hej då", cer=0.0, audio=f"{i}.wav",
                     rate_ratio=1.0) for i in range(10)]
    base = Scores(step=step, checkpoint="base" if step is None else f"step-{step:08d}", model_digest="m",
                  listening_set="l", rows=10, cer=0.05, wer=0.1, similarity=0.8, similarity_share=0.94,
                  dnsmos_ovrl=3.0, dnsmos_sig=3.3, dnsmos_bak=3.9, rate_ratio=1.0, calibration=calibration(),
                  per_row=rows)
    return msgspec.structs.replace(base, **fields)


def clones(similarity: float, base_encoder: float = 0.9) -> list[Clone]:
    one = Row(id="r", speaker_id="s", text="Hej", audio="a.wav", codes="c.npy", frames=12, duration_s=1.0,
              ref_audio="ref.wav", source="t", role="t", split="eval", eval_kind="held_out_speaker")
    return [Clone(one, Path("/ref.wav"), np.full(4800, 0.1, np.float32), 24000, similarity=similarity,
                  base_similarity=base_encoder)]


def test_similarity_is_not_measurable_where_the_verifier_separates_nothing() -> None:
    judged = scores(calibration=calibration(eer=0.5, threshold=0.6))
    verdict = speaker_similarity(judged, scores(None), clones(0.8), T, "swedish", VERIFIER)
    assert not verdict.passed and verdict.detail.startswith("not measurable: ")
    assert "EER of 50.0%" in verdict.detail and "--verifier" in verdict.detail and verdict.measured == 0.8


def test_similarity_needs_the_calibrated_level_and_the_base_within_its_margin() -> None:
    base = scores(None, similarity=0.80)
    ok = speaker_similarity(scores(similarity=0.79), base, clones(0.79), T, "swedish", VERIFIER)
    assert ok.passed and ok.threshold == 0.7 and "calibrated level" in ok.detail
    names = [f.name for f in ok.figures]
    assert names == ["base_encoder_cosine", "base_similarity", "similarity_share"]
    assert ok.figures[1].threshold == pytest.approx(0.80 - 0.05 * 0.85)
    lost = speaker_similarity(scores(similarity=0.74), base, clones(0.74), T, "swedish", VERIFIER)
    assert not lost.passed and "NOT within 5%" in lost.detail  # above the level, but lost the base's voice
    below = speaker_similarity(scores(similarity=0.65), scores(None, similarity=0.66), clones(0.65), T, "swedish",
                               VERIFIER)
    assert not below.passed and below.figures[1].passed  # as good as the base, but below the calibrated level
    floor = speaker_similarity(scores(similarity=0.65), scores(None, similarity=0.66), clones(0.65),
                               Thresholds(min_speaker_similarity=0.6), "swedish", VERIFIER)
    assert floor.passed and floor.threshold == 0.6 and "thresholds' floor" in floor.detail
    no_base = speaker_similarity(scores(), None, clones(0.8), T, "swedish", VERIFIER)
    assert not no_base.passed and "base's similarity is not measured" in no_base.detail


def test_intelligibility_must_beat_the_base_under_the_ceiling() -> None:
    verdict = intelligibility(scores(cer=0.05), scores(None, cer=0.20), T, ASR, True)
    assert verdict.passed and verdict.threshold == 0.25 and "base CER 0.200: better" in verdict.detail
    assert [f.name for f in verdict.figures] == ["wer", "base_cer"]
    assert not intelligibility(scores(cer=0.05), scores(None, cer=0.05), T, ASR, True).passed  # equal is no gain
    assert not intelligibility(scores(cer=0.30), scores(None, cer=0.90), T, ASR, True).passed  # over the ceiling
    assert not intelligibility(scores(cer=0.05), None, T, ASR, True).passed
    no_asr = intelligibility(scores(cer=None, notes={"cer": "no ASR judge given"}), None, T, None, False)
    assert not no_asr.passed and no_asr.detail.startswith("not measured: no ASR model given")


def test_speaking_rate_end_of_speech_and_quality() -> None:
    assert speaking_rate(scores(rate_ratio=1.1), T).passed
    fast = speaking_rate(scores(rate_ratio=0.7), T)
    assert not fast.passed and fast.threshold == 0.8 and "faster" in fast.detail and "OUTSIDE" in fast.detail
    none = [msgspec.structs.replace(r, rate_ratio=None) for r in scores().per_row]
    unmeasured = speaking_rate(scores(rate_ratio=None, per_row=none), T)
    assert not unmeasured.passed and "0 of 10 rows" in unmeasured.detail
    assert speaking_rate(scores(rate_ratio=None, per_row=none), Thresholds(min_rate_rows=0.0)).passed

    def failing(limit: set[int], silent: set[int]) -> Scores:
        rows = [msgspec.structs.replace(r, hit_limit=i in limit, silent=i in silent)
                for i, r in enumerate(scores().per_row)]
        return scores(per_row=rows, limit_share=len(limit) / 10, silent_share=len(silent) / 10)

    assert end_of_speech(failing({0}, set()), scores(None), T).passed  # one in ten forgiven
    assert end_of_speech(failing({0}, {0}), scores(None), T).passed  # one clone that did both counts once
    ended = end_of_speech(failing({0}, {1}), scores(None), T)
    assert not ended.passed and ended.measured == pytest.approx(0.2) and ended.threshold == 0.1

    assert quality(scores(dnsmos_ovrl=2.85), scores(None, dnsmos_ovrl=3.0), T).passed
    worse = quality(scores(dnsmos_ovrl=2.7), scores(None, dnsmos_ovrl=3.0), T)
    assert not worse.passed and worse.threshold == pytest.approx(2.8)
    assert quality(scores(), None, T).detail.startswith("not measured:")


def test_the_thresholds_bound_the_listening_set_and_the_verdict_records_what_was_used() -> None:
    run = ScoresSpec(rows=12, max_new_tokens=360, seed=7)
    assert listening_spec(Thresholds(), run) == run
    bounded = listening_spec(Thresholds(clone_max_rows=3, max_new_tokens=24), run)
    assert bounded == ScoresSpec(rows=3, max_new_tokens=24, seed=7)
    record = thresholds_record(Thresholds(), run)
    assert record["clone_max_rows"] == 12 and record["max_new_tokens"] == 360 and "min_speaker_similarity" not in record
    assert record["max_verifier_eer"] == 0.15 and record["max_ovrl_drop"] == 0.2


def test_eer_and_the_best_rule() -> None:
    assert equal_error_rate([0.9, 0.8, 0.85], [0.2, 0.3, 0.1]) == (0.0, 0.8)
    assert equal_error_rate([0.5] * 4, [0.5] * 4)[0] == 0.5
    stuck = [msgspec.structs.replace(r, hit_limit=i < 3) for i, r in enumerate(scores().per_row)]
    good, better = scores(2, cer=0.1), scores(4, cer=0.05)
    broken = scores(6, cer=0.01, limit_share=0.3, per_row=stuck)  # 3 of 10 clones never ended
    assert best_of([good, better, broken, scores(None, cer=0.0)]) is better  # the base and a broken one never win
    assert best_of([broken]) is broken  # all broken: the best of them all the same
    tie = scores(8, cer=0.05, similarity=0.9)
    assert best_of([better, tie]) is tie and "lowest CER" in RULE


@pytest.fixture(scope="module")
def two_checkpoints(demo_root: Path, module_dir: MakeDir) -> Path:
    where = module_dir("choice")
    spec = write_spec(demo_root, where, "choice", 4, Posture(checkpoint_every=2, eval_every=100, keep_last=3))
    code, out = run(spec, where / "run")
    assert code == exitcodes.COMPLETED, out[-2000:]
    return where / "run"


def _scored(run_dir: Path, step: int, cer: float, digest: str | None = None) -> None:
    ckpt = run_dir / "checkpoints" / f"step-{step:08d}"
    record = scores(step, cer=cer, model_digest=digest or checkpoint_digest(ckpt))
    (run_dir / SCORES_DIR).mkdir(exist_ok=True)
    (run_dir / SCORES_DIR / step_file(step)).write_bytes(msgspec.json.encode(record))


def test_the_gate_judges_the_best_scored_checkpoint_unless_one_is_named(two_checkpoints: Path,
                                                                        tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(two_checkpoints, run_dir)
    newest = resolve(GateOptions(run_dir))
    assert newest.step == 4 and "none has listening scores yet" in newest.chosen_by
    _scored(run_dir, 2, 0.05)
    _scored(run_dir, 4, 0.10)
    assert best_step(run_dir) == 2
    best = resolve(GateOptions(run_dir))
    assert best.step == 2 and best.checkpoint is not None and best.checkpoint.name == "step-00000002"
    assert best.chosen_by.startswith("the best-scored kept checkpoint (lowest CER")
    named = resolve(GateOptions(run_dir, checkpoint=4))
    assert named.step == 4 and named.chosen_by == "named with --checkpoint"
    _scored(run_dir, 2, 0.01, digest="another model")  # a record of what step 2 held before a rewrite counts not
    assert best_step(run_dir) == 4
    assert [c.name for c in list_checkpoints(run_dir)] == ["step-00000002", "step-00000004"]
