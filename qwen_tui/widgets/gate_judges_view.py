"""The gate's judges and its per-speaker rows on screen, beside the criteria.

An operator deciding whether to trust a verdict needs to know who judged it:
which ASR model heard the clones (KB-Whisper, a CTC model, none), which
speaker verifier scored them, and that the base model's own encoder gave
only the second figure. And a mean can hide one lost voice, so each held-out
speaker gets its row: clones, unusable clones, the verifier's and the base
encoder's mean cosine and the speaker's CER and WER, each marked against the
threshold the verdict was decided with. A verdict written before judges and
rows were recorded says so instead of showing an empty table as if nothing
had been judged.
"""

from __future__ import annotations

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from qwen_daemon.protocol import GateVerdict
from qwen_daemon.protocol.display import SCREEN
from qwen_train.gate.verdict import SpeakerRow
from qwen_tui.format import DASH
from qwen_tui.widgets.run_facts import key_value_grid

ROLES = {"asr": "ASR", "speaker_verifier": "speaker verifier", "speaker_encoder": "second figure"}
NOT_RECORDED = "not recorded: this verdict was written before the gate recorded its judges"


def judges_renderable(verdict: GateVerdict) -> RenderableType:
    """One line per judge: its role, kind, model and how it was run."""
    if not verdict.judges:
        return Text(NOT_RECORDED, style="yellow")
    grid = key_value_grid()
    for judge in verdict.judges:
        line = Text(f"{judge.kind}  ", style="bold").append(judge.model, style="")
        if judge.detail:
            line.append(f"  ({judge.detail})", style="dim")
        grid.add_row(ROLES.get(judge.role, judge.role), line)
    return grid


def _cell(value: float | None, threshold: float | None, higher_is_better: bool) -> Text:
    """The number, marked ✗ in red where it misses the verdict's threshold."""
    if value is None:
        return Text(DASH, style="dim")
    text = SCREEN.decimal(value, 3)
    if threshold is None:
        return Text(text)
    ok = value >= threshold if higher_is_better else value <= threshold
    return Text(text, style="green") if ok else Text(f"✗ {text}", style="bold red")


def _speaker_row(row: SpeakerRow, thresholds: dict[str, float]) -> tuple[Text, ...]:
    unusable = Text(str(row.unusable), style="bold red" if row.unusable else "")
    return (Text(row.speaker, style="bold"), Text(str(row.clones)), unusable,
            _cell(row.similarity, thresholds.get("min_speaker_similarity"), True),
            _cell(row.base_similarity, thresholds.get("min_base_encoder_similarity"), True),
            _cell(row.cer, thresholds.get("max_cer"), False), _cell(row.wer, None, False))


def speakers_renderable(verdict: GateVerdict) -> RenderableType:
    """A row per held-out speaker; why there are none where there are none."""
    if not verdict.speakers:
        if not verdict.judges:
            return Text("not recorded: this verdict was written before per-speaker rows were kept", style="yellow")
        return Text("no held-out speaker was cloned (speaker_similarity says why)", style="red")
    table = Table(box=None, padding=(0, 2), header_style="bold")  # as wide as its numbers, not the screen
    for column in ("speaker", "clones", "unusable", "verifier", "base encoder", "CER", "WER"):
        table.add_column(column, justify="left" if column == "speaker" else "right", no_wrap=True)
    for row in verdict.speakers:
        table.add_row(*_speaker_row(row, verdict.thresholds))
    return table
