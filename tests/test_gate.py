"""The promotion gate on the real tiny model: a real short run, a real export, real CTC and Whisper ASR paths,
the real default speaker verifier.

The tiny models are random, so their similarity and CER mean nothing; what is
tested is that every criterion is measured through the real code, decided
in the right direction, written in order, and that the exit code follows
the verdict. Thresholds are loosened only where a random model cannot meet
them, in a file, as an operator would.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest

from qwen_train import exitcodes
from qwen_train.checkpoint_files import read_meta
from qwen_train.cli import main
from qwen_train.export import export_run
from qwen_train.gate.criteria import (
    NO_RESOURCES,
    NO_TRAINING_REVISION,
    ended_cleanly,
    provenance,
)
from qwen_train.gate.tiny_whisper import build_tiny_whisper
from qwen_train.gate.verdict import CRITERIA, Criterion, GateVerdict, read_verdict, verdict_path
from qwen_train.spec import Posture, load_spec
from qwen_train.status import Event
from tests.conftest import MakeDir, python_env
from tests.gate_asr import build_tiny_asr
from tests.gate_fixtures import LOOSE, SHORT, resource_summary, variant_run, write_json
from tests.trainer_harness import run, write_spec


@pytest.fixture(scope="module")
def gate_run(demo_root: Path, module_dir: MakeDir) -> tuple[Path, Path]:
    """(run dir, spec file): a 4-step Swedish-tagged run with checkpoints at 2 and 4 and a resource summary."""
    where = module_dir("gate")
    spec = write_spec(demo_root, where, "gate", 4, Posture(checkpoint_every=2, eval_every=100, keep_last=3))
    spec.write_bytes(spec.read_bytes().replace(b'"language": null', b'"language": "swedish"'))
    code, out = run(spec, where / "run")
    assert code == exitcodes.COMPLETED, out[-2000:]
    write_json(where / "run" / "resources.json", resource_summary())
    return where / "run", spec


@pytest.fixture(scope="module")
def asr_dir(module_dir: MakeDir) -> Path:
    return build_tiny_asr(module_dir("asr") / "tiny-sv-ctc")


@pytest.fixture(scope="module")
def whisper_dir(module_dir: MakeDir) -> Path:
    return build_tiny_whisper(module_dir("asr") / "tiny-sv-whisper")


@pytest.fixture(scope="module")
def exported(gate_run: tuple[Path, Path], module_dir: MakeDir) -> Path:
    return export_run(gate_run[0], step=4, out=module_dir("exp") / "step-4")


@pytest.fixture(scope="module")
def thresholds_files(module_dir: MakeDir) -> dict[str, Path]:
    where = module_dir("thresholds")
    return {"loose": write_json(where / "loose.json", LOOSE), "short": write_json(where / "short.json", SHORT)}


REVISION = re.compile(r"[0-9a-f]{40}|qwen-hemma .+")  # qwen_train.revision.code_revision: a commit, else the version


def _by_name(verdict: GateVerdict) -> dict[str, Criterion]:
    return {c.name: c for c in verdict.criteria}


def _gate(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = main(["gate", *(str(a) for a in argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# -- the whole gate, end to end ------------------------------------------------------------------


def test_gate_passes_with_loosened_thresholds_and_writes_every_criterion(
        gate_run: tuple[Path, Path], asr_dir: Path, thresholds_files: dict[str, Path]) -> None:
    run_dir, _spec = gate_run
    cmd = [sys.executable, "-m", "qwen_train", "gate", str(run_dir), "--asr", str(asr_dir),
           "--thresholds", str(thresholds_files["loose"]), "--max-rows", "3"]
    proc = subprocess.run(cmd, env=python_env(), capture_output=True, text=True, timeout=600)
    verdict = read_verdict(verdict_path(run_dir))
    assert tuple(c.name for c in verdict.criteria) == CRITERIA
    assert proc.returncode == (0 if verdict.passed else exitcodes.GATE_FAILED), proc.stdout + proc.stderr
    assert verdict.passed, proc.stdout
    criteria = _by_name(verdict)
    trained, base = criteria["eval_beats_base"].measured, criteria["eval_beats_base"].threshold
    assert trained is not None and base is not None and trained < base  # 4 steps at lr 1e-3 beat the base
    assert criteria["speaker_similarity"].measured is not None and -1 <= criteria["speaker_similarity"].measured <= 1
    assert criteria["intelligibility"].measured is not None and criteria["intelligibility"].measured >= 0
    assert criteria["resource_evidence"].measured is not None and criteria["resource_evidence"].measured < 0.1
    assert verdict.checkpoint_step == 4 and verdict.model == str(run_dir / "export" / "step-00000004")
    assert (run_dir / "export" / "step-00000004" / "export.json").is_file()  # exported by the gate
    assert len(verdict.code_revision) >= 7 and verdict.thresholds["max_cer"] == 100.0
    assert verdict.thresholds["clone_max_rows"] == 3.0  # --max-rows bounds the clones
    for name in CRITERIA:
        assert name in proc.stdout
    samples = json.loads((run_dir / "gate" / "samples.json").read_text())
    assert len(samples) == 3 and all(s["transcript"] is not None and s["base_similarity"] is not None
                                     for s in samples)
    assert any(s["similarity"] is not None for s in samples)  # the verifier heard speech in some clone
    assert (run_dir / "gate" / samples[0]["audio"]).is_file()
    # the judges it used, and one row per held-out speaker with every judge's numbers
    assert [(j.role, j.kind) for j in verdict.judges] == [("asr", "ctc"), ("speaker_verifier", "resemblyzer"),
                                                          ("speaker_encoder", "base-encoder"), ("quality", "dnsmos"),
                                                          ("speech_detector", "silero-vad")]
    assert verdict.judges[0].model == str(asr_dir)
    assert "judges:" in proc.stdout and "per held-out speaker" in proc.stdout
    assert sum(r.clones for r in verdict.speakers) == 3 and {r.speaker for r in verdict.speakers} == {
        s["speaker"] for s in samples}
    assert all(r.similarity is not None and r.base_similarity is not None and r.cer is not None
               for r in verdict.speakers)
    base_figure = criteria["speaker_similarity"].figures[0]  # then the base model's clones' similarity, the share
    assert base_figure.name == "base_encoder_cosine" and base_figure.threshold == -1.0 and base_figure.passed
    # the newest checkpoint, as none has scores of the run's own listening set; the scores it read are named
    assert verdict.checkpoint == "step-00000004" and "none has listening scores yet" in verdict.chosen_by
    assert verdict.scores.startswith("scores/gate-") and verdict.scores.endswith("step-00000004.json")
    assert verdict.base_scores.endswith("base.json") and "judged step-00000004: the newest" in proc.stdout


def test_real_thresholds_fail_the_random_models_through_whisper_with_exit_6(
        gate_run: tuple[Path, Path], whisper_dir: Path, thresholds_files: dict[str, Path],
        capsys: pytest.CaptureFixture[str]) -> None:
    """The demo's judges (a random Whisper, the default verifier) measure everything and fail it honestly."""
    run_dir, _spec = gate_run
    code, out, _err = _gate(capsys, run_dir, "--asr", whisper_dir, "--thresholds", thresholds_files["short"],
                            "--max-rows", "2")
    assert code == exitcodes.GATE_FAILED
    verdict = read_verdict(verdict_path(run_dir))
    assert not verdict.passed
    intelligibility = _by_name(verdict)["intelligibility"]
    assert not intelligibility.passed and intelligibility.threshold == 0.25
    assert intelligibility.measured is not None and intelligibility.measured > 0.25
    assert f"CER {intelligibility.measured:.3f} > 0.250" in intelligibility.detail
    assert f"ASR: whisper {whisper_dir}" in intelligibility.detail and "intelligibility      FAIL" in out
    assert verdict.judges[0].kind == "whisper" and "forced language sv" in verdict.judges[0].detail
    # The tiny model's clones are audible (its decoder gain is calibrated): similarity is measured on sound,
    # and intelligibility fails on what the random ASR hears, not on silence.
    similarity = _by_name(verdict)["speaker_similarity"]
    assert similarity.measured is not None and 0.0 <= similarity.measured < 0.75 and not similarity.passed
    assert "over 2 clones" in similarity.detail and "silent" not in similarity.detail
    assert "silent" not in intelligibility.detail
    assert similarity.figures[0].value is not None and similarity.figures[0].value > 0.5  # the lenient encoder


def test_missing_evidence_fails_its_criteria_but_everything_else_is_still_measured(
        gate_run: tuple[Path, Path], exported: Path, thresholds_files: dict[str, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    run_dir, spec = gate_run
    variant = variant_run(run_dir, tmp_path / "nf", spec, state="failed_non_finite",
                          message="non-finite at step 3 after 3 retries")
    code, _out, _err = _gate(capsys, variant, "--export", exported, "--thresholds", thresholds_files["short"],
                             "--max-rows", "2")
    assert code == exitcodes.GATE_FAILED
    verdict = read_verdict(verdict_path(variant))
    assert tuple(c.name for c in verdict.criteria) == CRITERIA
    criteria = _by_name(verdict)
    assert not criteria["ended_cleanly"].passed and "failed_non_finite" in criteria["ended_cleanly"].detail
    assert not criteria["resource_evidence"].passed
    assert NO_RESOURCES in criteria["resource_evidence"].detail
    assert not criteria["intelligibility"].passed
    assert criteria["intelligibility"].detail.startswith("not measured: no ASR model given (--asr DIR")
    # Measured all the same: the eval comparison and the similarity are there.
    assert criteria["eval_beats_base"].measured is not None and criteria["speaker_similarity"].measured is not None
    assert not criteria["provenance"].passed and "not " + str(variant.resolve()) in criteria["provenance"].detail


def test_base_model_judged_as_itself_is_not_better(demo_root: Path, gate_run: tuple[Path, Path], tmp_path: Path,
                                                 thresholds_files: dict[str, Path],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    run_dir, spec = gate_run
    variant = variant_run(run_dir, tmp_path / "self", spec, resources=resource_summary())
    code, _out, _err = _gate(capsys, variant, "--export", demo_root / "model", "--thresholds",
                             thresholds_files["short"], "--max-rows", "2")
    assert code == exitcodes.GATE_FAILED
    verdict = read_verdict(verdict_path(variant))
    criteria = _by_name(verdict)
    comparison = criteria["eval_beats_base"]
    assert comparison.measured == comparison.threshold and not comparison.passed
    assert "not better than" in comparison.detail
    assert criteria["ended_cleanly"].passed and criteria["resource_evidence"].passed
    assert not criteria["provenance"].passed and "export.json is missing" in criteria["provenance"].detail
    assert verdict.checkpoint_step == -1 and verdict.code_revision == ""


# -- usage errors leave the run dir alone --------------------------------------------------------


def test_usage_errors_exit_2_and_keep_an_existing_verdict(gate_run: tuple[Path, Path], tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    run_dir, spec = gate_run
    variant = variant_run(run_dir, tmp_path / "v", spec)
    (variant / "gate").mkdir()
    verdict_path(variant).write_bytes(b'{"run": "trunc')
    bad = write_json(tmp_path / "bad.json", {"max_cer": 0.3, "max_wer": 0.2})
    code, _out, err = _gate(capsys, variant, "--thresholds", bad)
    assert code == exitcodes.USAGE
    assert str(bad) in err and "max_wer" in err
    for flag in ("--asr", "--verifier"):  # a judge's dir must be a model dir
        code, _out, err = _gate(capsys, run_dir, flag, tmp_path)
        assert code == exitcodes.USAGE and f"{flag} {tmp_path} is not a model directory" in err, err
    assert verdict_path(variant).read_bytes() == b'{"run": "trunc'
    code, _out, err = _gate(capsys, variant, "--thresholds", tmp_path / "absent.json")
    assert code == exitcodes.USAGE and "cannot read thresholds file" in err
    code, _out, err = _gate(capsys, variant)
    assert code == exitcodes.USAGE and "no durable checkpoint to judge" in err and "--export" in err
    code, _out, err = _gate(capsys, tmp_path / "nowhere")
    assert code == exitcodes.USAGE and "is not a directory" in err
    code, _out, err = _gate(capsys, run_dir, "--checkpoint", "3")
    assert code == exitcodes.USAGE and "no checkpoint at step 3; kept steps: 2, 4" in err
    code, _out, err = _gate(capsys, variant, "--export", tmp_path)
    assert code == exitcodes.USAGE and "not a model directory" in err
    assert verdict_path(variant).read_bytes() == b'{"run": "trunc'
    assert not (variant / "export").exists()


def test_the_verdict_and_its_samples_are_replaced_together(demo_root: Path, gate_run: tuple[Path, Path],
                                                          tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A gate that dies before its verdict leaves the previous verdict with its own samples; a gate that
    clones fewer rows than the last one leaves none of the last one's wavs behind."""
    import numpy as np

    from qwen_train.gate import run as gate_run_module
    from qwen_train.gate.clones import Clone, clone_rows

    run_dir, spec = gate_run
    variant = variant_run(run_dir, tmp_path / "v", spec, resources=resource_summary())
    row = clone_rows(Path(load_spec(spec).bundle), 1)[0]
    clones_made: list[int] = [5]

    def fake_clones(t: object, device: object, m: gate_run_module.Measured) -> None:  # no model: fixed audio
        m.clones = [Clone(row, Path("/ref.wav"), np.full(4800, 0.1 * (i + 1), np.float32), 24000)
                    for i in range(clones_made[0])]

    monkeypatch.setattr(gate_run_module, "_measure_trained", fake_clones)
    monkeypatch.setattr(gate_run_module, "_measure_base", lambda *_: None)
    argv = (variant, "--export", demo_root / "model")
    assert _gate(capsys, *argv)[0] == exitcodes.GATE_FAILED
    gate_dir = variant / "gate"

    def snapshot() -> dict[str, bytes]:
        return {str(p.relative_to(gate_dir)): p.read_bytes() for p in sorted(gate_dir.rglob("*")) if p.is_file()}

    before = snapshot()
    assert {f"samples/{i:03d}.wav" for i in range(5)} | {"samples.json", "verdict.json"} == set(before)

    clones_made[0] = 2
    encode = msgspec.json.encode

    def dies_at_the_verdict(value: object, *args: object, **kwargs: object) -> bytes:
        if isinstance(value, GateVerdict):
            raise OSError("disk gone")
        return encode(value, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(msgspec.json, "encode", dies_at_the_verdict)
    with pytest.raises(OSError, match="disk gone"):
        _gate(capsys, *argv)
    monkeypatch.setattr(msgspec.json, "encode", encode)
    assert snapshot() == before  # the old verdict and the samples it judged, untouched

    assert _gate(capsys, *argv)[0] == exitcodes.GATE_FAILED
    after = snapshot()
    assert set(after) == {"samples/000.wav", "samples/001.wav", "samples.json", "verdict.json"}
    assert len(json.loads(after["samples.json"])) == 2 and after["verdict.json"] != before["verdict.json"]
    assert sorted(p.name for p in variant.iterdir() if p.name.startswith(".gate")) == []


# -- criteria one by one -------------------------------------------------------------------------


def _event(kind: str, at: float, step: int) -> Event:
    return Event(time=at, kind=kind, message=f"{kind} at {step}", step=step)


def test_ended_cleanly_reads_state_and_open_non_finite_events(gate_run: tuple[Path, Path], tmp_path: Path) -> None:
    run_dir, spec = gate_run
    assert ended_cleanly(run_dir).passed
    now = time.time()
    bad, retry = _event("non_finite", now, 3), _event("retry", now + 1, 2)
    recovered = variant_run(run_dir, tmp_path / "rec", spec, non_finite_events=[bad], events=[bad, retry])
    verdict = ended_cleanly(recovered)
    assert verdict.passed and "each followed by a rollback" in verdict.detail
    earlier = _event("retry", now - 1, 2)  # a rollback before the event does not close it
    left_open = variant_run(run_dir, tmp_path / "open", spec, non_finite_events=[bad], events=[earlier, bad])
    verdict = ended_cleanly(left_open)
    assert not verdict.passed and "left open" in verdict.detail and "step 3" in verdict.detail
    stopped = variant_run(run_dir, tmp_path / "stop", spec, state="stopped")
    assert ended_cleanly(stopped).passed
    training = variant_run(run_dir, tmp_path / "live", spec, state="training")
    assert not ended_cleanly(training).passed and "state training" in ended_cleanly(training).detail
    missing = ended_cleanly(tmp_path)
    assert not missing.passed and missing.detail.startswith("not measured:")


def _provenance_variant(exported: Path, where: Path, **changes: object) -> Path:
    copy = where / "export"
    shutil.copytree(exported, copy)
    record = msgspec.json.decode((copy / "export.json").read_bytes())
    record.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del record[key]
    write_json(copy / "export.json", record)
    return copy


def test_provenance_names_what_is_missing(demo_root: Path, gate_run: tuple[Path, Path], exported: Path,
                                          tmp_path: Path) -> None:
    run_dir, spec_file = gate_run
    spec = load_spec(spec_file)
    assert provenance(exported, run_dir, spec).passed
    no_revision = _provenance_variant(exported, tmp_path / "a", code_revision=None)
    verdict = provenance(no_revision, run_dir, spec)
    assert not verdict.passed and "code_revision" in verdict.detail
    blank = _provenance_variant(exported, tmp_path / "b", code_revision=" ")
    assert NO_TRAINING_REVISION in provenance(blank, run_dir, spec).detail
    # an export.json from before the exporter's revision was kept apart holds the exporter's, not the trainer's
    older = _provenance_variant(exported, tmp_path / "e", export_code_revision=None)
    verdict = provenance(older, run_dir, spec)
    assert not verdict.passed and "predates recorded training revisions" in verdict.detail
    other = _provenance_variant(exported, tmp_path / "c", bundle_fingerprint="0" * 64)
    assert "trained on bundle 000000000000" in provenance(other, run_dir, spec).detail
    no_spec = _provenance_variant(exported, tmp_path / "d", spec="")
    assert "no run spec recorded" in provenance(no_spec, run_dir, spec).detail
    bundle = tmp_path / "bundle"
    shutil.copytree(demo_root / "bundle", bundle)
    with (bundle / "stats.json").open("a") as handle:
        handle.write(" ")
    tampered = provenance(exported, run_dir, msgspec.structs.replace(spec, bundle=str(bundle)))
    assert not tampered.passed and "changed file stats.json" in tampered.detail


def test_provenance_carries_the_training_code_revision_not_the_exporters(gate_run: tuple[Path, Path],
                                                                        tmp_path: Path) -> None:
    run_dir, spec_file = gate_run
    spec = load_spec(spec_file)
    trained = read_meta(run_dir / "checkpoints" / "step-00000004").code_revision
    assert REVISION.fullmatch(trained), trained  # the trainer recorded the code it ran
    # the same checkpoint, as if trained at another commit and exported (and gated) by this one
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("export", "gate"))
    meta_path = copy / "checkpoints" / "step-00000004" / "meta.json"
    meta = msgspec.json.decode(meta_path.read_bytes())
    meta["code_revision"] = "0123abc"
    write_json(meta_path, meta)
    record = msgspec.json.decode((export_run(copy, step=4) / "export.json").read_bytes())
    assert record["code_revision"] == "0123abc" and REVISION.fullmatch(record["export_code_revision"])
    verdict = provenance(copy / "export" / "step-00000004", copy, spec)
    assert verdict.passed and "trained with code 0123abc" in verdict.detail
    # a checkpoint written before revisions were recorded
    del meta["code_revision"]
    write_json(meta_path, meta)
    export = export_run(copy, step=4, out=tmp_path / "old-ckpt")
    assert msgspec.json.decode((export / "export.json").read_bytes())["code_revision"] == ""
    verdict = provenance(export, copy, spec)
    assert not verdict.passed and NO_TRAINING_REVISION in verdict.detail


# -- a run dir the gate cannot read --------------------------------------------------------------


def test_an_unlistable_checkpoints_path_is_a_usage_error_naming_it(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "checkpoints").write_text("not a directory")
    code, _out, err = _gate(capsys, run_dir)
    assert code == exitcodes.USAGE, err
    assert f"cannot list the checkpoints in {run_dir.resolve() / 'checkpoints'}" in err and "Traceback" not in err
    assert not (run_dir / "gate").exists() and not (run_dir / "export").exists()


