"""`qwen-train gate RUN_DIR`: judge a run's checkpoint, write the verdict, say it criterion by criterion.

Order of work: check every input (usage errors, exit 2, before anything is
written); export the checkpoint unless an export is given or already there;
then measure everything that can be measured, one model in memory at a time
(the judged model: eval loss and the clones; the base model: eval loss and
its speaker encoder's similarities; the independent speaker verifier: the
similarities the criterion is decided on; the ASR model: transcripts). The
verdict names each judge that measured (report.py prints them, and the
per-speaker rows, under the table). A measurement that
raises is recorded as the reason its criterion was not measured, and the
other criteria are still measured: the verdict always lists all of them, in
CRITERIA order. Once the verdict is complete it and the samples it judged
(samples.json, samples/*.wav) are written into a fresh RUN_DIR/.gate.new and
swapped in for RUN_DIR/gate in one rename (publish.py), so until then the
older verdict and its own samples stay readable, together.

Exit 0 when every criterion passed, GATE_FAILED (6) when any failed.
"""

from __future__ import annotations

import gc
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from qwen_train import exitcodes
from qwen_train.export import ExportDiskFull, ExportError, export_run
from qwen_train.gate.asr import load_asr
from qwen_train.gate.clones import Clone, clone_language, clone_rows, generate_clones
from qwen_train.gate.criteria import ended_cleanly, not_measured, provenance, read_provenance, resource_evidence
from qwen_train.gate.heldout import eval_criterion, eval_loss, gate_device, load_tts
from qwen_train.gate.intelligibility import NO_ASR, intelligibility_criterion, transcribe_clones
from qwen_train.gate.publish import publish
from qwen_train.gate.report import render
from qwen_train.gate.speaker import ENCODER_RATE, score_base, score_verified, similarity_criterion
from qwen_train.gate.speakers import speaker_rows
from qwen_train.gate.target import GateOptions, GateUsageError, Target, resolve
from qwen_train.gate.thresholds import thresholds_record
from qwen_train.gate.verdict import CRITERIA, Criterion, GateVerdict, Judge, JudgeRole
from qwen_train.gate.verifier import load_verifier
from qwen_train.revision import code_revision
from qwen_train.status import EvalResult


@dataclass
class Measured:
    """What the models said; a string is why that measurement could not be made."""

    trained_eval: EvalResult | str = "not run"
    base_eval: EvalResult | str = "not run"
    clones: list[Clone] = field(default_factory=list)
    clone_error: str = ""
    base_error: str = ""  # the base encoder's similarities
    verifier_error: str = ""
    asr_error: str = ""
    language: str = "auto"
    judges: dict[JudgeRole, Judge] = field(default_factory=dict)  # those that measured

    def ran(self, role: JudgeRole) -> bool:
        return role in self.judges


def _why(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"


def _say(message: str) -> None:
    print(f"gate: {message}", file=sys.stderr, flush=True)


def _free() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _measure_trained(t: Target, device: torch.device, m: Measured) -> None:
    _say(f"judged model {t.export}: held-out eval and clones")
    try:
        wrapper = load_tts(t.export, t.spec.language, device)
    except Exception as exc:
        m.trained_eval = m.clone_error = f"cannot load {t.export}: {_why(exc)}"
        return
    try:
        m.trained_eval = eval_loss(wrapper, t.spec, t.thresholds.eval_max_rows, device)
    except Exception as exc:
        m.trained_eval = _why(exc)
    try:
        rows = clone_rows(Path(t.spec.bundle), t.thresholds.clone_max_rows)
        m.language = clone_language(wrapper, t.spec.language)
        m.clones = generate_clones(wrapper, Path(t.spec.bundle), rows, m.language, t.thresholds)
    except Exception as exc:
        m.clone_error = _why(exc)
    del wrapper
    _free()


def _measure_base(t: Target, device: torch.device, m: Measured) -> None:
    _say(f"base model {t.base}: held-out eval and its speaker encoder's similarities")
    try:
        wrapper = load_tts(t.base, t.spec.language, device)
    except Exception as exc:
        m.base_eval = m.base_error = f"cannot load base {t.base}: {_why(exc)}"
        return
    try:
        m.base_eval = eval_loss(wrapper, t.spec, t.thresholds.eval_max_rows, device)
    except Exception as exc:
        m.base_eval = _why(exc)
    try:
        score_base(wrapper.model, m.clones)
        m.judges["speaker_encoder"] = Judge(
            role="speaker_encoder", kind="base-encoder", model=str(t.base),
            detail=f"the base model's own speaker encoder (the x-vector cloning conditions on), {ENCODER_RATE} Hz")
    except Exception as exc:
        m.base_error = _why(exc)
    del wrapper
    _free()


def _measure_verifier(t: Target, device: torch.device, m: Measured) -> None:
    if m.clone_error or not m.clones:
        return
    _say(f"speaker verifier {t.verifier or 'resemblyzer (default)'}: similarities")
    try:
        verifier = load_verifier(t.verifier, device)
        score_verified(verifier, m.clones)
        m.judges["speaker_verifier"] = verifier.judge
    except Exception as exc:
        m.verifier_error = f"speaker verifier {t.verifier or 'resemblyzer'} failed: {_why(exc)}"
    _free()


def _measure_asr(t: Target, device: torch.device, m: Measured) -> None:
    if t.asr is None or m.clone_error or not m.clones:
        return
    _say(f"ASR model {t.asr}: transcripts")
    try:
        asr = load_asr(t.asr, device)
        transcribe_clones(asr, m.clones)
        m.judges["asr"] = asr.judge
    except Exception as exc:
        m.asr_error = f"ASR with {t.asr} failed: {_why(exc)}"
    _free()


def _similarity(t: Target, m: Measured) -> Criterion:
    minimum = t.thresholds.min_speaker_similarity
    if m.clone_error:
        return not_measured("speaker_similarity", f"no clones: {m.clone_error}", minimum)
    if m.verifier_error:
        return not_measured("speaker_similarity", m.verifier_error, minimum)
    return similarity_criterion(m.clones, t.thresholds, m.language, m.judges.get("speaker_verifier"), m.base_error)


def _intelligibility(t: Target, m: Measured) -> Criterion:
    maximum = t.thresholds.max_cer
    if t.asr is None:
        return Criterion(name="intelligibility", passed=False, detail=NO_ASR, threshold=maximum)
    if m.clone_error:
        return not_measured("intelligibility", f"no clones: {m.clone_error}", maximum)
    if m.asr_error:
        return not_measured("intelligibility", m.asr_error, maximum)
    return intelligibility_criterion(m.clones, maximum, m.judges.get("asr"))


def judge(t: Target) -> tuple[GateVerdict, list[Clone]]:
    """Measure everything, decide every criterion; the verdict and the clones it judged (neither written yet)."""
    device = gate_device()
    m = Measured()
    _measure_trained(t, device, m)
    _measure_base(t, device, m)
    _measure_verifier(t, device, m)
    _measure_asr(t, device, m)
    criteria = [
        ended_cleanly(t.run_dir),
        eval_criterion(m.trained_eval, m.base_eval),
        _similarity(t, m),
        _intelligibility(t, m),
        resource_evidence(t.resources, t.thresholds.max_resource_gap_fraction),
        provenance(t.export, t.run_dir, t.spec),
    ]
    assert tuple(c.name for c in criteria) == CRITERIA
    try:
        recorded = read_provenance(t.export).code_revision
    except ValueError:
        recorded = ""
    verdict = GateVerdict(
        run=t.run_dir.name, run_dir=str(t.run_dir), model=str(t.export), checkpoint_step=t.step,
        base_model=str(t.base), passed=all(c.passed for c in criteria), criteria=criteria,
        decided_at=time.time(), code_revision=recorded, gate_revision=code_revision(),
        thresholds=thresholds_record(t.thresholds),
        judges=[m.judges[role] for role in ("asr", "speaker_verifier", "speaker_encoder") if role in m.judges],
        speakers=speaker_rows(m.clones, m.ran("speaker_verifier"), m.ran("speaker_encoder"), m.ran("asr")),
    )
    return verdict, m.clones


def gate_main(opts: GateOptions) -> int:
    try:
        target = resolve(opts)
        if target.to_export is not None:
            _say(f"exporting {target.to_export.name} to {target.export}")
            export_run(target.run_dir, target.step, target.export)
    except (GateUsageError, ExportError) as exc:
        print(f"qwen-train gate: {exc}", file=sys.stderr)
        return exitcodes.FAILED_DISK_FULL if isinstance(exc, ExportDiskFull) else exitcodes.USAGE
    verdict, clones = judge(target)
    path = publish(target.run_dir, verdict, clones)
    print(render(verdict))
    print(f"verdict written to {path}")
    return exitcodes.COMPLETED if verdict.passed else exitcodes.GATE_FAILED
