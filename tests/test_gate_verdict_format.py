"""The verdict format with judges, figures and per-speaker rows, as the gate, the daemon and the dashboard read it.

tests/gate_verdict_before_judges.json is a verdict as the gate wrote it
before this format grew (written by that commit's own GateVerdict): the
daemon may meet such files in run dirs for as long as they exist, so each
reader must still take it, and the dashboard must say its judges were not
recorded rather than show nothing as if nothing had judged.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import msgspec
import numpy as np
from rich.console import Console, RenderableType

from qwen_daemon.cli.jobs import verdict_text
from qwen_daemon.governance.surfaces import read_gate
from qwen_daemon.jobs.kinds.gate import read_run_verdict, verdict_line
from qwen_train.bundle.manifest import Row
from qwen_train.gate.clones import Clone
from qwen_train.gate.report import render
from qwen_train.gate.speakers import speaker_rows
from qwen_train.gate.verdict import GateVerdict, read_verdict, verdict_path
from qwen_tui.widgets.gate_judges_view import NOT_RECORDED, judges_renderable, speakers_renderable
from qwen_tui.widgets.verdict_view import criteria_renderable
from tests.gate_fake import make_verdict

BEFORE = Path(__file__).parent / "gate_verdict_before_judges.json"


def shown(renderable: RenderableType) -> str:
    console = Console(width=200, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def _run_dir_with(tmp_path: Path, source: Path | GateVerdict) -> Path:
    run_dir = tmp_path / "old"
    verdict_path(run_dir).parent.mkdir(parents=True)
    if isinstance(source, Path):
        shutil.copyfile(source, verdict_path(run_dir))
    else:
        verdict_path(run_dir).write_bytes(msgspec.json.encode(source))
    return run_dir


def test_a_verdict_written_before_judges_still_reads_everywhere(tmp_path: Path) -> None:
    run_dir = _run_dir_with(tmp_path, BEFORE)
    verdict = read_verdict(verdict_path(run_dir))
    assert verdict.judges == [] and verdict.speakers == [] and all(c.figures == [] for c in verdict.criteria)
    assert verdict.thresholds["min_speaker_similarity"] == 0.5
    assert "min_base_encoder_similarity" not in verdict.thresholds
    # the daemon: the verdict route's reader, the job's one-line outcome, governance, `qwen-daemon verdict`
    assert read_run_verdict("old", run_dir) == verdict
    # written before the listening criteria: the daemon says they were not judged
    assert verdict_line(verdict) == ("gate did not pass: intelligibility failed; not judged: speaking_rate, "
                                     "end_of_speech, quality (checkpoint step 4)")
    assert read_gate(str(verdict_path(run_dir))).passed is False
    assert "intelligibility" in verdict_text(verdict) and "greedy CTC" in verdict_text(verdict)
    assert "judges: none recorded" in verdict_text(verdict) and "per held-out speaker" not in verdict_text(verdict)
    # the gate's own table and the dashboard say the judges were not recorded
    assert "judges: none recorded" in render(verdict) and "per held-out speaker" not in render(verdict)
    assert NOT_RECORDED in shown(judges_renderable(verdict))
    assert "written before per-speaker rows were kept" in shown(speakers_renderable(verdict))
    assert "speaker_similarity" in shown(criteria_renderable(verdict))


def test_a_verdict_with_judges_and_speaker_rows_round_trips_to_every_reader(tmp_path: Path) -> None:
    written = make_verdict(tmp_path / "new", 40, passed=True, decided_at=1234.5)
    run_dir = _run_dir_with(tmp_path, written)
    verdict = read_run_verdict("new", run_dir)
    assert verdict == written and [j.role for j in verdict.judges] == ["asr", "speaker_verifier", "speaker_encoder"]
    assert verdict_line(verdict) == "gate passed: all 9 criteria (checkpoint step 40)"
    table = render(verdict)
    for line in table.splitlines()[-6:]:  # `qwen-daemon verdict` says the judges and speakers as the gate's log does
        assert line in verdict_text(verdict)
    assert "asr               whisper      /srv/models/kb-whisper-large" in table
    weak = next(line for line in table.splitlines() if "fleurs:1002" in line)
    assert weak.split() == ["fleurs:1002", "2", "1", "0.41", "0.91", "0.04", "0.1"]
    judges = shown(judges_renderable(verdict))
    assert "ASR" in judges and "whisper  /srv/models/kb-whisper-large" in judges
    assert "speaker verifier" in judges and "resemblyzer 0.1.4" in judges and "second figure" in judges
    rows = {line.split()[0]: line for line in shown(speakers_renderable(verdict)).splitlines() if line.strip()}
    assert "✗ 0.410" in rows["fleurs:1002"] and "0.910" in rows["fleurs:1002"]  # 0.41 under 0.75; 0.91 over 0.5
    assert "✗" not in rows["fleurs:1001"] and "0.840" in rows["fleurs:1001"] and "0.040" in rows["fleurs:1001"]


def _clone(speaker: str, text: str, transcript: str, similarity: float | None, base: float | None,
           error: str | None = None) -> Clone:
    row = Row(id=f"{speaker}-{text}", speaker_id=speaker, text=text, audio="", codes="", frames=1, duration_s=1.0,
              ref_audio="", source="demo", role="train", split="eval")
    clone = Clone(row=row, reference=Path("/ref.wav"), wave=np.zeros(4800, np.float32), rate=24000, error=error)
    clone.similarity, clone.base_similarity, clone.transcript = similarity, base, transcript
    return clone


def test_speaker_rows_score_each_voice_with_the_judges_that_ran() -> None:
    clones = [_clone("b", "hej du", "hej du", 0.8, 0.9), _clone("a", "god natt", "god", 0.6, 0.95),
              _clone("a", "tack", "", None, None, error="RuntimeError: broke")]
    a, b = speaker_rows(clones, verified=True, based=True, heard=True)
    assert (a.speaker, a.clones, a.unusable) == ("a", 2, 1) and (b.speaker, b.clones, b.unusable) == ("b", 1, 0)
    assert a.similarity == 0.3 and a.base_similarity == 0.475  # the failed clone counts 0
    assert a.cer == 9 / 12 and a.wer == 2 / 3  # pooled: "god natt"->"god" (5 of 8), "tack"->"" (4 of 4)
    assert (b.similarity, b.cer, b.wer) == (0.8, 0.0, 0.0)
    (quiet,) = speaker_rows(clones[:1], verified=False, based=True, heard=False)
    assert quiet.similarity is None and quiet.cer is None and quiet.wer is None and quiet.base_similarity == 0.9
