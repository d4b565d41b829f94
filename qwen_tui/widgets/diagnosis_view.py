"""The non-finite panel: what broke, where it broke first, and whether fp32 reproduces it.

The operator's loop for a NaN/Inf is status -> diagnose -> fix -> bounded retry
(DESIGN.md §1). This panel is the "diagnose" step on screen: the diagnosis the
trainer (or a `diagnose` job) wrote, with the first module whose output went
non-finite while its inputs were finite, forward and backward, and the fp32
replay's verdict, which decides between a precision fix and a real bug. A run
with non-finite events but no diagnosis says how to get one (`d`).
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.text import Text
from textual.widgets import Static

from qwen_daemon.protocol.display import SCREEN
from qwen_train.status import Diagnosis, ModuleFinding, Status
from qwen_tui.widgets.run_facts import key_value_grid


def finding_text(finding: ModuleFinding | None, none_words: str) -> Text:
    if finding is None:
        return Text(none_words, style="dim")
    text = Text(finding.name, style="bold red")
    text.append(f"  ({finding.dtype}; input absmax {finding.input_absmax} → output absmax {finding.output_absmax})")
    return text


def fp32_verdict_text(diagnosis: Diagnosis) -> Text:
    """True: a real fault (fp32 breaks too); False: a precision fault; None: nothing to replay."""
    if diagnosis.fp32_reproduces is None:
        return Text("not judged: no loss part was non-finite in the replay", style="dim")
    if diagnosis.fp32_reproduces:
        return Text("reproduces in fp32: not a precision problem (look at data or weights)", style="bold red")
    return Text(
        f"finite in fp32: the fault appears only in {diagnosis.precision} (a precision problem)", style="bold yellow"
    )


def diagnosis_renderable(diagnosis: Diagnosis, now: float | None = None) -> RenderableType:
    grid = key_value_grid()
    grid.add_row("at", f"step {diagnosis.step}, epoch {diagnosis.epoch}, batch {diagnosis.position}")
    broken = ", ".join(diagnosis.broken_parts) if diagnosis.broken_parts else "none"
    grid.add_row("broken loss parts", Text(broken, style="bold red" if diagnosis.broken_parts else "green"))
    parts = ", ".join(f"{name} {value}" for name, value in sorted(diagnosis.loss_parts.items()))
    grid.add_row("loss parts", parts or "—")
    grid.add_row("grad norm", diagnosis.grad_norm)
    grid.add_row("forward", finding_text(diagnosis.forward, "every module output stayed finite"))
    grid.add_row("backward", finding_text(diagnosis.backward, "no non-finite gradient located"))
    if diagnosis.backward_note:
        grid.add_row("", Text(diagnosis.backward_note, style="dim"))
    grid.add_row("precision", diagnosis.precision)
    if diagnosis.recipe is not None:  # diagnoses from before recipes name none
        grid.add_row("recipe", diagnosis.recipe)
    grid.add_row("fp32 replay", fp32_verdict_text(diagnosis))
    grid.add_row("written", SCREEN.clock(diagnosis.created_at, now))
    return Group(Text(diagnosis.summary, style="bold"), grid)


def non_finite_renderable(
    status: Status | None, diagnosis: Diagnosis | None, error: str | None = None, now: float | None = None
) -> RenderableType:
    """The diagnosis if there is one (the trusted status's first, else the daemon's record)."""
    found = (status.diagnosis if status is not None else None) or diagnosis
    events = len(status.non_finite_events) if status is not None else 0
    retries = status.retries if status is not None else 0
    parts: list[RenderableType] = []
    if events or retries:
        counts = f"{events} non-finite event{'s' if events != 1 else ''}, "
        counts += f"{retries} retr{'ies' if retries != 1 else 'y'}"
        parts.append(Text(counts, style="bold red"))
    if found is not None:
        parts.append(diagnosis_renderable(found, now))
    elif events:
        hint = "no diagnosis yet: press d to replay the run to its last non-finite event and diagnose it"
        parts.append(Text(hint, style="yellow"))
        if error:
            parts.append(Text(f"the daemon has none: {error}", style="dim"))
    elif status is not None:
        parts.append(Text("no non-finite events", style="green"))
    else:
        parts.append(Text(f"no diagnosis: {error}" if error else "no trusted status and no diagnosis", style="dim"))
    return Group(*parts)


class DiagnosisView(Static):
    def show(self, status: Status | None, diagnosis: Diagnosis | None, error: str | None = None) -> None:
        alarm = (status is not None and (bool(status.non_finite_events) or status.diagnosis is not None)) or (
            diagnosis is not None
        )
        self.set_class(alarm, "-alarm")
        self.update(non_finite_renderable(status, diagnosis, error))
