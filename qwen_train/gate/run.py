"""`qwen-train gate RUN_DIR`: judge a run's checkpoint, write the verdict, say it criterion by criterion.

Order of work: check every input (usage errors, exit 2, before anything is
written) and choose the checkpoint (named, else the best-scored, else the
newest: target.py); export it unless an export is given or already there;
then measure everything that can be measured, one model in memory at a time:
the judged model's held-out eval loss and its listening scores (read from
RUN_DIR/scores when current, else scored now by the same code as `qwen-train
score`: clones of the listening set, then the verifier, the ASR judge,
DNSMOS and the VAD), then the base model's eval loss, its listening scores
(cached once) and its own speaker encoder's similarities on the judged
clones. The listening criteria read the two scores records (listening.py).
The verdict names each judge that measured, the checkpoint judged and why
it was chosen, and the scores files it read (report.py prints them, and the
per-speaker rows, under the table). A measurement that raises is recorded as
the reason its criterion was not measured, and the other criteria are still
measured: the verdict always lists all of them, in CRITERIA order. Once the
verdict is complete it and the samples it judged (samples.json,
samples/*.wav: the scored clones) are written into a fresh RUN_DIR/.gate.new
and swapped in for RUN_DIR/gate in one rename (publish.py), so until then
the older verdict and its own samples stay readable, together.

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
from qwen_train.gate.clones import Clone
from qwen_train.gate.criteria import ended_cleanly, not_measured, provenance, read_provenance, resource_evidence
from qwen_train.gate.heldout import eval_criterion, eval_loss, gate_device, load_tts
from qwen_train.gate.intelligibility import NO_ASR
from qwen_train.gate.listen import Listening, base_of, clones_from, judged_subject, scores_of
from qwen_train.gate.listen import plan as plan_listening
from qwen_train.gate.listening import end_of_speech, intelligibility, quality, speaker_similarity, speaking_rate
from qwen_train.gate.publish import publish
from qwen_train.gate.report import render
from qwen_train.gate.speaker import ENCODER_RATE, score_base
from qwen_train.gate.speakers import speaker_rows
from qwen_train.gate.target import GateOptions, GateUsageError, Target, asr_family, resolve
from qwen_train.gate.thresholds import thresholds_record
from qwen_train.gate.verdict import CRITERIA, LISTENING, Criterion, GateVerdict, Judge, JudgeRole
from qwen_train.revision import code_revision
from qwen_train.scores.record import Scores
from qwen_train.status import EvalResult

JUDGE_ORDER: tuple[JudgeRole, ...] = ("asr", "speaker_verifier", "speaker_encoder", "quality", "speech_detector")


@dataclass
class Measured:
    """What the models said; a string is why that measurement could not be made."""

    trained_eval: EvalResult | str = "not run"
    base_eval: EvalResult | str = "not run"
    judged: Scores | None = None  # the judged model's listening scores
    base: Scores | None = None  # the base model's
    judged_file: Path | None = None  # where they are
    base_file: Path | None = None
    scores_error: str = ""  # why the judged model's scores are missing
    base_scores_error: str = ""
    clones: list[Clone] = field(default_factory=list)
    base_error: str = ""  # the base encoder's similarities
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


def _eval(t: Target, device: torch.device, path: Path, what: str) -> EvalResult | str:
    """Held-out eval loss of one model, loaded for it alone."""
    try:
        wrapper = load_tts(path, t.spec.language, device)
    except Exception as exc:
        return f"cannot load {what} {path}: {_why(exc)}"
    try:
        return eval_loss(wrapper, t.spec, t.thresholds.eval_max_rows, device)
    except Exception as exc:
        return _why(exc)
    finally:
        del wrapper
        _free()


def _listening(t: Target) -> Listening | str:
    try:
        return plan_listening(t)
    except Exception as exc:
        return f"no listening set: {_why(exc)}"


def _measure_trained(t: Target, device: torch.device, m: Measured) -> None:
    """The judged model's held-out eval, then its listening scores (read, or scored now) and their clones."""
    _say(f"judged model {t.export}: held-out eval and listening scores")
    m.trained_eval = _eval(t, device, t.export, "the judged model")
    listening = _listening(t)
    if isinstance(listening, str):
        m.scores_error = listening
        return
    try:
        subject = judged_subject(t, listening.spec)
        m.judged = scores_of(listening, t, subject, device)
        m.judged_file = listening.scores_dir / subject.file
        m.clones = clones_from(m.judged, t.run_dir, Path(t.spec.bundle), t.thresholds.min_clone_peak)
        m.language = m.judged.language or "auto"
        _judges_of(m.judged, t, m)
    except Exception as exc:
        m.scores_error = _why(exc)
    _free()


def _judges_of(scores: Scores, t: Target, m: Measured) -> None:
    """The judges the scores name, as the verdict lists them."""
    if scores.asr and t.asr is not None:
        m.judges["asr"] = Judge(role="asr", kind=asr_family(t.asr), model=str(t.asr),
                                detail="greedy, forced language sv for CER/WER, unforced for the language heard")
    if scores.verifier and "similarity" not in scores.notes:
        kind = "resemblyzer" if t.verifier is None else "xvector"
        m.judges["speaker_verifier"] = Judge(role="speaker_verifier", kind=kind, model=scores.verifier,
                                             detail="each clone against its row's real recording")
    if scores.dnsmos:
        m.judges["quality"] = Judge(role="quality", kind="dnsmos", model=scores.dnsmos, detail="P.835 SIG/BAK/OVRL")
    if scores.vad:
        m.judges["speech_detector"] = Judge(role="speech_detector", kind="silero-vad", model=scores.vad,
                                            detail="speech seconds of clones and real recordings")


def _measure_base(t: Target, device: torch.device, m: Measured) -> None:
    """The base model's held-out eval, its listening scores (cached once), its encoder on the judged clones."""
    _say(f"base model {t.base}: held-out eval, listening scores and its speaker encoder's similarities")
    m.base_eval = _eval(t, device, t.base, "base")
    listening = _listening(t)
    if isinstance(listening, str):
        m.base_scores_error = listening
    else:
        try:
            m.base, m.base_file = base_of(listening, t, device)
        except Exception as exc:
            m.base_scores_error = _why(exc)
    try:
        wrapper = load_tts(t.base, t.spec.language, device)
        score_base(wrapper.model, m.clones)
        del wrapper
        m.judges["speaker_encoder"] = Judge(
            role="speaker_encoder", kind="base-encoder", model=str(t.base),
            detail=f"the base model's own speaker encoder (the x-vector cloning conditions on), {ENCODER_RATE} Hz")
    except Exception as exc:
        m.base_error = _why(exc)
    _free()


def _listening_criteria(t: Target, m: Measured) -> list[Criterion]:
    """The five criteria that read the scores, or each "not measured" with why the scores are missing."""
    th = t.thresholds
    if m.judged is None:
        why = f"no listening scores of the judged model: {m.scores_error or 'not run'}"
        if t.asr is None:
            return [not_measured(n, why) if n != "intelligibility" else
                    Criterion(name=n, passed=False, detail=NO_ASR, threshold=th.max_cer) for n in LISTENING]
        return [not_measured(n, why) for n in LISTENING]
    judged, base = m.judged, m.base
    return [
        speaker_similarity(judged, base, m.clones, th, m.language, m.judges.get("speaker_verifier"), m.base_error),
        intelligibility(judged, base, th, m.judges.get("asr"), t.asr is not None),
        speaking_rate(judged, th),
        end_of_speech(judged, base, th),
        quality(judged, base, th),
    ]


def _relative(path: Path | None, run_dir: Path) -> str:
    if path is None:
        return ""
    try:
        return str(path.relative_to(run_dir))
    except ValueError:
        return str(path)


def judge(t: Target) -> tuple[GateVerdict, list[Clone]]:
    """Measure everything, decide every criterion; the verdict and the clones it judged (neither written yet)."""
    device = gate_device()
    m = Measured()
    _measure_trained(t, device, m)
    _measure_base(t, device, m)
    criteria = [
        ended_cleanly(t.run_dir),
        eval_criterion(m.trained_eval, m.base_eval),
        *_listening_criteria(t, m),
        resource_evidence(t.resources, t.thresholds.max_resource_gap_fraction),
        provenance(t.export, t.run_dir, t.spec),
    ]
    assert tuple(c.name for c in criteria) == CRITERIA
    try:
        recorded = read_provenance(t.export).code_revision
    except ValueError:
        recorded = ""
    listening = _listening(t)
    verdict = GateVerdict(
        run=t.run_dir.name, run_dir=str(t.run_dir), model=str(t.export), checkpoint_step=t.step,
        base_model=str(t.base), passed=all(c.passed for c in criteria), criteria=criteria,
        decided_at=time.time(), code_revision=recorded, gate_revision=code_revision(),
        thresholds=thresholds_record(t.thresholds, listening.spec.scores if not isinstance(listening, str) else None),
        judges=[m.judges[role] for role in JUDGE_ORDER if role in m.judges],
        speakers=speaker_rows(m.clones, m.ran("speaker_verifier"), m.ran("speaker_encoder"), m.ran("asr")),
        checkpoint=t.checkpoint.name if t.checkpoint is not None else "", chosen_by=t.chosen_by,
        scores=_relative(m.judged_file, t.run_dir), base_scores=_relative(m.base_file, t.run_dir),
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
