"""Where a run stands: the one home of what moves as it trains.

The step (train_step) advances it, the checkpointer saves it with every
checkpoint and puts it back on resume and rollback, and the retry policy
(retry.py) adds to the non-finite guard's memory in it. Keeping these in one
record, rather than as loose fields of the session, makes what a checkpoint
holds of the position the record's own `state_dict`, so nothing can be added
to the position without being saved.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from qwen_train.status import EvalResult
from qwen_train.train.data.cursor import Cursor


@dataclass
class Progress:
    cursor: Cursor  # the next batch to draw
    step: int = 0  # optimizer steps applied
    micro_steps: int = 0
    evals: list[EvalResult] = field(default_factory=list)
    # The non-finite guard's memory: batches to skip, a temporary LR scale, retries used.
    skip: set[tuple[int, int]] = field(default_factory=set)
    lr_scale: float = 1.0
    lr_scale_until: int = 0
    retries: int = 0
    # What the latest step drew, for a refused step's event and diagnosis. Not saved: a checkpoint is
    # always taken between steps, where no step is in flight.
    last_step_cursor: Cursor | None = None
    drawn: list[list[int]] = field(default_factory=list)

    def state_dict(self) -> dict[str, Any]:
        """The keys a checkpoint's state holds of the position (beside model, optimizer, ...)."""
        return {
            "step": self.step,
            "micro_steps": self.micro_steps,
            "evals": msgspec.to_builtins(self.evals),  # plain values: the weights-only loader takes them
            "guard": {"skip": sorted(self.skip), "lr_scale": self.lr_scale, "lr_scale_until": self.lr_scale_until,
                      "retries": self.retries},
        }

    def load_state_dict(self, state: Mapping[str, Any], cursor: Cursor) -> None:
        """Back to a checkpoint's position; `cursor` is its meta's (the state file does not repeat it)."""
        self.step = int(state["step"])
        self.micro_steps = int(state["micro_steps"])
        self.evals = [e if isinstance(e, EvalResult) else msgspec.convert(e, EvalResult) for e in state["evals"]]
        self.cursor = cursor
        guard = state.get("guard", {})
        self.skip = {(int(e), int(p)) for e, p in guard.get("skip", [])}
        self.lr_scale = float(guard.get("lr_scale", 1.0))
        self.lr_scale_until = int(guard.get("lr_scale_until", 0))
        self.retries = int(guard.get("retries", 0))
