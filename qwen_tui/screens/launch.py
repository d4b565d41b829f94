"""Ask for the spec file to launch (key `n`) and what it is; the app then confirms and launches it.

What a spec file can describe is actions.SPEC_FILES, one choice each: a
training run takes a RunSpec file, a preprocess job (`qwen-train prepare`)
a PrepareSpec file; diagnose jobs are started from a run (`d`), not here.
The path is read by the daemon on its own host, which may not be the machine
the dashboard runs on (a forwarded socket), so nothing here resolves or checks
it beyond its being given and absolute: the daemon's refusal (spec that does
not load, governance rule) is shown as it gives it.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, RadioButton, RadioSet, Static

from qwen_daemon.protocol import JobKind
from qwen_tui.actions import SPEC_FILES


@dataclass(frozen=True)
class LaunchChoice:
    path: str
    kind: JobKind


def path_problem(path: str) -> str | None:
    """Why a typed path cannot be sent, or None."""
    if not path:
        return "type the spec file's path"
    if not path.startswith("/"):
        return f"{path!r} is relative: give the absolute path of the spec file on the daemon's host"
    return None


class LaunchScreen(ModalScreen[LaunchChoice | None]):
    CSS_PATH = "launch.tcss"
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label("Launch a run from a spec file", id="title")
            yield Label(
                "The path is on the daemon's host. Tab to choose what it describes; Enter goes on to a "
                "confirmation; Escape cancels.",
                id="hint",
            )
            yield Input(placeholder="/srv/scratch/specs/run.json", id="spec-path")
            with RadioSet(id="kind"):
                for index, spec in enumerate(SPEC_FILES):
                    yield RadioButton(spec.choice, value=index == 0, id=spec.kind)
            yield Static("", id="problem")
            with Horizontal(id="buttons"):
                yield Button("Next (enter)", variant="primary", id="next")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#problem").display = False
        self.query_one(Input).focus()

    def _submit(self) -> None:
        path = self.query_one(Input).value.strip()
        problem = path_problem(path)
        if problem is not None:
            shown = self.query_one("#problem", Static)
            shown.update(Text(problem, style="bold red"))
            shown.display = True
            return
        pressed = self.query_one(RadioSet).pressed_index
        self.dismiss(LaunchChoice(path, SPEC_FILES[max(pressed, 0)].kind))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "next":
            self._submit()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)
