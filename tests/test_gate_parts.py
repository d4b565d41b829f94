"""The promotion gate's parts on their own: each criterion's rule, CER, thresholds, clones, the verdict swap.

Split from test_gate.py, whose tests need its module-scoped real run and
export; none of these does, so they run without training anything (the
speaker test loads the tiny base model only).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import msgspec
import pytest
import soundfile as sf

from qwen_train import exitcodes
from qwen_train.bundle.manifest import Row, write_jsonl
from qwen_train.gate.cer import char_errors, corpus_cer, corpus_wer, normalize_text, word_errors
from qwen_train.gate.criteria import NO_RESOURCES, resource_evidence
from qwen_train.gate.thresholds import Thresholds, ThresholdsError, load_thresholds
from qwen_train.gate.verdict import Criterion
from qwen_train.status import EvalResult, Losses
from tests.gate_fixtures import resource_summary, write_json


def test_gate_failed_is_a_completed_job() -> None:
    assert exitcodes.GATE_FAILED == 6 and exitcodes.state_for_exit(exitcodes.GATE_FAILED) == "completed"


def test_resource_evidence_from_the_daemons_summary(tmp_path: Path) -> None:
    def judge(**kwargs: object) -> Criterion:
        return resource_evidence(write_json(tmp_path / "r.json", resource_summary(**kwargs)), 0.10)  # type: ignore[arg-type]

    ok = judge()
    assert ok.passed and ok.measured is not None and math.isclose(ok.measured, 10 / 600)
    assert judge(gpu=True, gpu_note=None).passed
    gappy = judge(gap=120.0)
    assert not gappy.passed and "gaps cover 20.0%" in gappy.detail and gappy.measured == pytest.approx(0.2)
    mute = judge(gpu_note=None)
    assert not mute.passed and "no GPU metrics and no gpu_note" in mute.detail
    empty = write_json(tmp_path / "e.json", {"samples": 0, "first": None, "last": None})
    assert not resource_evidence(empty, 0.1).passed and "no samples" in resource_evidence(empty, 0.1).detail
    (tmp_path / "bad.json").write_text("[1, 2")
    assert "not a resource summary" in resource_evidence(tmp_path / "bad.json", 0.1).detail
    missing = resource_evidence(tmp_path / "none.json", 0.1)
    assert not missing.passed and NO_RESOURCES in missing.detail


def test_resource_evidence_reads_what_the_daemons_summarize_writes(tmp_path: Path) -> None:
    from qwen_daemon.protocol import GpuSample, ResourceSample
    from qwen_daemon.resources.summary import Window, summarize

    start = time.time() - 100
    samples = [ResourceSample(time=start + t, cpu_percent=50.0, ram_used_bytes=1 << 30, ram_total_bytes=1 << 32,
                              gpus=[GpuSample(0, "H100", 90.0, 1 << 30, 80 << 30)]) for t in range(0, 100, 2)]
    steady = summarize([Window(start, start + 100, samples)], period_s=2.0)
    verdict = resource_evidence(write_json(tmp_path / "s.json", steady), 0.1)
    assert verdict.passed and "2 GPU metrics" in verdict.detail and verdict.measured == 0.0
    stalled = summarize([Window(start, start + 100, samples[:25])], period_s=2.0)  # the sampler died halfway
    verdict = resource_evidence(write_json(tmp_path / "t.json", stalled), 0.1)
    assert not verdict.passed and verdict.measured is not None and verdict.measured > 0.4


def test_resource_gaps_are_a_share_of_the_launches_not_of_the_time_between_them(tmp_path: Path) -> None:
    """A run stopped and resumed a day later: the idle day must not dilute the first launch's outage."""
    from qwen_daemon.protocol import ResourceSample
    from qwen_daemon.resources.summary import Window, summarize

    def sampled(start: float, until: float) -> list[ResourceSample]:
        return [ResourceSample(time=start + t, cpu_percent=50.0, ram_used_bytes=1 << 30, ram_total_bytes=1 << 32,
                               gpu_note="NVML: library not found") for t in range(0, int(until - start), 2)]

    first = time.time() - 100_000
    second = first + 86_400
    # the first launch's sampler stopped after 40 of 100 s (a 60 s gap); the resumed launch is fully sampled
    windows = [Window(first, first + 100, sampled(first, first + 40)), Window(second, second + 100,
                                                                             sampled(second, second + 100))]
    summary = summarize(windows, period_s=2.0)
    assert summary.span_s == 200.0
    verdict = resource_evidence(write_json(tmp_path / "resumed.json", summary), 0.10)
    assert verdict.measured is not None and verdict.measured == pytest.approx(60 / 200, abs=0.02)
    assert not verdict.passed and "over 200 s of launches" in verdict.detail
    # a summary from before span_s was recorded: measured first..last sample, and the detail says so
    old = msgspec.json.decode(msgspec.json.encode(summary))
    del old["span_s"]
    verdict = resource_evidence(write_json(tmp_path / "old.json", old), 0.10)
    assert verdict.passed and verdict.measured is not None and verdict.measured < 0.01
    assert "records no launch span" in verdict.detail


UNREAD = ("GPU present but unread: amdgpu card1 (0000:03:00.0): cannot read gpu_busy_percent: Permission denied "
          "(NVML library not found; amdsmi not importable: No module named 'amdsmi')")


def test_resource_evidence_fails_on_a_gpu_the_sampler_could_not_read(tmp_path: Path) -> None:
    """Hemma's case: an AMD card, an NVML-only sampler. 'no GPU' passes only where there was none."""
    from qwen_daemon.protocol.resources import PRESENT_BUT_UNREAD as DAEMONS_WORDS
    from qwen_train.gate.criteria import PRESENT_BUT_UNREAD

    assert PRESENT_BUT_UNREAD == DAEMONS_WORDS  # the gate recognises the note the daemon writes

    def judge(gpu: bool = False, **fields: object) -> Criterion:
        summary = msgspec.structs.replace(resource_summary(gpu=gpu, gpu_note=None), **fields)
        return resource_evidence(write_json(tmp_path / "r.json", summary), 0.10)

    unread = judge(gpu_note=UNREAD, gpu_present=True, gpu_backend="none")
    assert not unread.passed and "a GPU the sampler could not read" in unread.detail
    assert "amdgpu card1 (0000:03:00.0)" in unread.detail and "Permission denied" in unread.detail
    beside = judge(gpu=True, gpu_note=UNREAD, gpu_present=True, gpu_backend="nvml")  # metrics of another GPU
    assert not beside.passed and "could not read" in beside.detail
    quiet = judge(gpu_note="GPU 0 (card1 (0000:03:00.0)) not read: cannot read gpu_busy_percent",
                  gpu_present=True, gpu_backend="sysfs")
    assert not quiet.passed and "had a GPU but no GPU busy or VRAM metrics were sampled (reader: sysfs" in quiet.detail
    none = judge(gpu_note="no GPU: NVML library not found", gpu_present=False, gpu_backend="none")
    assert none.passed and "no GPU on the host (no GPU: NVML library not found)" in none.detail
    read = judge(gpu=True, gpu_present=True, gpu_backend="sysfs")
    assert read.passed and "2 GPU metrics via sysfs" in read.detail
    older = judge(gpu_note="NVML: library not found")  # written before presence was recorded
    assert older.passed and "whether the host had a GPU is not recorded" in older.detail


def test_the_gate_reads_presence_from_the_daemons_summary_of_its_samples(tmp_path: Path) -> None:
    from qwen_daemon.protocol import ResourceSample
    from qwen_daemon.resources.summary import Window, summarize

    start = time.time() - 100

    def sampled(note: str, present: bool | None, backend: str | None = "none") -> list[ResourceSample]:
        return [ResourceSample(time=start + t, cpu_percent=5.0, ram_used_bytes=1 << 30, ram_total_bytes=1 << 32,
                               gpu_note=note, gpu_backend=backend, gpu_present=present) for t in range(0, 100, 2)]

    def judge(samples: list[ResourceSample]) -> Criterion:
        summary = summarize([Window(start, start + 100, samples)], period_s=2.0)
        return resource_evidence(write_json(tmp_path / "s.json", summary), 0.1)

    assert not judge(sampled(UNREAD, True)).passed
    assert judge(sampled("no GPU: NVML library not found", False)).passed
    # a resumed run whose first launch predates presence: one launch alone cannot show there was no GPU
    mixed = sampled("no GPU: NVML library not found", None, None)[:25] + sampled(
        "no GPU: NVML library not found", False)[25:]
    summary = summarize([Window(start, start + 100, mixed)], period_s=2.0)
    assert summary.gpu_present is None and summary.gpu_backend == "none"
    assert "not recorded" in judge(mixed).detail


def test_eval_comparison_direction() -> None:
    from qwen_train.gate.heldout import eval_criterion

    def result(total: float) -> EvalResult:
        return EvalResult(step=0, losses=Losses(total=total, talker=total, code_predictor=total), rows=2,
                          per_split={"held_out_speaker": Losses(total=total, talker=total, code_predictor=total)})

    assert eval_criterion(result(1.0), result(2.0)).passed
    assert not eval_criterion(result(2.0), result(1.0)).passed
    assert not eval_criterion(result(1.0), result(1.0)).passed
    assert not eval_criterion(result(float("nan")), result(1.0)).passed
    missing = eval_criterion("OSError: gone", result(1.0))
    assert not missing.passed and missing.detail == "not measured: trained: OSError: gone"


def test_the_base_encoders_figure_tells_voices_apart_but_leniently(demo_root: Path) -> None:
    """The base encoder scores a clip against itself 1 and against another voice lower (on the random tiny
    model barely lower: why it is the second figure, not the judge)."""
    from qwen_train.gate.clones import Clone
    from qwen_train.gate.heldout import gate_device, load_tts
    from qwen_train.gate.speaker import score_base, similarity_criterion
    from qwen_train.gate.verdict import Judge

    base = load_tts(demo_root / "model", None, gate_device())
    anchors = sorted((demo_root / "bundle" / "anchors").glob("*.wav"))
    row = Row(id="r", speaker_id="demo:x", text="hej", audio="", codes="", frames=1, duration_s=1.0,
              ref_audio="", source="demo", role="train", split="eval")

    def clone(audio: Path) -> Clone:
        wave, rate = sf.read(str(audio), dtype="float32")
        return Clone(row=row, reference=anchors[0], wave=wave, rate=rate)

    same, other, failed = clone(anchors[0]), clone(anchors[1]), clone(anchors[1])
    failed.error = "RuntimeError: generation broke"
    score_base(base.model, [same, other, failed])
    assert same.base_similarity == pytest.approx(1.0, abs=1e-5)
    assert other.base_similarity is not None and other.base_similarity < 0.999
    assert failed.base_similarity is None
    for c in (same, other):
        c.similarity = 0.9  # as if the verifier agreed
    # the gate's default is the calibrated level (gate/listening.py); a fixed floor is given here to hold to
    verdict = similarity_criterion([same, other, failed], Thresholds(min_speaker_similarity=0.75), "swedish",
                                   Judge("speaker_verifier", "x", ""))
    (figure,) = verdict.figures
    assert figure.value == pytest.approx((1.0 + other.base_similarity) / 3)  # the failed clone scores 0
    assert verdict.measured == pytest.approx(0.6) and not verdict.passed  # 0.6 < 0.75: the failed clone costs
    assert "1 clone(s) unscored, counted 0" in verdict.detail


def test_clone_rows_cover_every_held_out_speaker(tmp_path: Path) -> None:
    from qwen_train.gate.clones import clone_rows

    def row(speaker: str, n: int, kind: str | None = "held_out_speaker") -> Row:
        return Row(id=f"{speaker}-{n}", speaker_id=speaker, text="t", audio="", codes="", frames=1, duration_s=1.0,
                   ref_audio="", source="demo", role="train", split="eval", eval_kind=kind)  # type: ignore[arg-type]

    write_jsonl(tmp_path / "manifest.jsonl", [row("a", 0), row("a", 1), row("a", 2), row("b", 0),
                                              row("c", 0, "held_out_utterance"), row("b", 1)])
    assert [r.id for r in clone_rows(tmp_path, 3)] == ["a-0", "b-0", "a-1"]
    assert [r.id for r in clone_rows(tmp_path, 10)] == ["a-0", "b-0", "a-1", "b-1", "a-2"]


def test_normalisation_keeps_swedish_letters_and_drops_punctuation() -> None:
    assert normalize_text("  Å, Ä och Ö!  Går   det?") == "å ä och ö går det"
    assert normalize_text("a\u030a") == "å"  # decomposed å is the same letter
    assert normalize_text("Hej—du... (ja)") == "hej du ja"


def test_cer_and_wer_count_edits_after_the_swedish_normalisation() -> None:
    assert char_errors("sjön", "sjön") == (0, 4)
    assert char_errors("sjön", "sjon") == (1, 4)  # substitution (ö is not o)
    assert char_errors("sjön", "sjöen") == (1, 4)  # insertion
    assert char_errors("sjön", "sön") == (1, 4)  # deletion
    assert char_errors("", "abc") == (3, 0) and char_errors("abc", "") == (3, 3)
    assert char_errors("kitten", "sitting") == (3, 6)
    assert char_errors("Sjo\u0308n", "SJÖN!") == (0, 4)  # NFC, case and punctuation normalised on both sides
    assert corpus_cer([("Hej, du!", "hej du")]) == 0.0
    assert corpus_cer([("abcd", "abxd"), ("ef", "")]) == pytest.approx(3 / 6)  # pooled, not averaged
    assert corpus_cer([("ab", "abab")]) == 1.0  # insertions count
    assert word_errors("Tåget är sent.", "tåget är sen") == (1, 3)
    assert corpus_wer([("Tåget är sent.", "tåget är sen"), ("Hej du", "")]) == pytest.approx(3 / 5)
    assert corpus_wer([("en två", "en två tre")]) == 0.5  # an inserted word
    with pytest.raises(ValueError):
        corpus_cer([("?!", "x")])
    with pytest.raises(ValueError):
        corpus_wer([("", "x")])


def test_thresholds_file(tmp_path: Path) -> None:
    assert load_thresholds(None) == Thresholds()
    assert load_thresholds(write_json(tmp_path / "t.json", {"max_cer": 0.1})).max_cer == 0.1
    with pytest.raises(ThresholdsError, match="max_wer.*known fields: min_speaker_similarity"):
        load_thresholds(write_json(tmp_path / "u.json", {"max_wer": 0.1}))
    both = load_thresholds(write_json(tmp_path / "b.json", {"min_speaker_similarity": 0.8,
                                                            "min_base_encoder_similarity": 0.6}))
    assert (both.min_speaker_similarity, both.min_base_encoder_similarity) == (0.8, 0.6)
    # no fixed verifier floor by default: the calibrated level (scores/calibration.py) is the footing now
    assert (Thresholds().min_speaker_similarity, Thresholds().min_base_encoder_similarity) == (None, 0.5)
    with pytest.raises(ThresholdsError, match="min_speaker_similarity 2.0 is not a cosine"):
        load_thresholds(write_json(tmp_path / "c.json", {"min_speaker_similarity": 2}))
    with pytest.raises(ThresholdsError, match="min_base_encoder_similarity -1.5 is not a cosine"):
        load_thresholds(write_json(tmp_path / "d.json", {"min_base_encoder_similarity": -1.5}))
    with pytest.raises(ThresholdsError, match="clone_max_rows must be positive"):
        load_thresholds(write_json(tmp_path / "r.json", {"clone_max_rows": 0}))
    (tmp_path / "j.json").write_text("{")
    with pytest.raises(ThresholdsError, match="not valid JSON"):
        load_thresholds(tmp_path / "j.json")


@pytest.mark.parametrize("exchange", [True, False])
def test_swap_in_replaces_the_whole_dir_with_or_without_an_atomic_exchange(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exchange: bool
) -> None:
    from qwen_train.gate import publish

    if not exchange:
        monkeypatch.setattr(publish, "_exchange", lambda a, b: False)
    final, staged = tmp_path / "gate", tmp_path / ".gate.new"
    (final / "samples").mkdir(parents=True)
    (final / "samples" / "004.wav").write_text("old")
    (final / "verdict.json").write_text("old")
    staged.mkdir()
    (staged / "verdict.json").write_text("new")
    publish.swap_in(staged, final)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gate"]
    assert [p.name for p in final.iterdir()] == ["verdict.json"] and (final / "verdict.json").read_text() == "new"


def test_the_demo_gives_its_gate_a_whisper_and_bounds_but_the_real_thresholds(demo_root: Path) -> None:
    """scripts/demo.sh serves the daemon with --gate-asr DIR/asr --gate-thresholds DIR/gate.json."""
    from qwen_train.gate.target import asr_family

    assert asr_family(demo_root / "asr") == "whisper"
    demo, real = load_thresholds(demo_root / "gate.json"), Thresholds()
    # the demo's listening set is its run spec's (scores: 6 rows of at most 96 frames), which the gate reads as the
    # daemon scored it; its gate file bounds only the eval rows
    assert demo.clone_max_rows is None and demo.eval_max_rows < real.eval_max_rows
    for name in ("min_speaker_similarity", "min_base_encoder_similarity", "max_cer", "min_clone_peak",
                 "max_resource_gap_fraction"):
        assert getattr(demo, name) == getattr(real, name), name  # bounds what is measured, not what passes
