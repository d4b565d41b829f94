"""Held-out evaluation: talker, code-predictor and total loss, split by kind and speaker.

Held-out speakers and held-out utterances of seen speakers answer different
questions (does it clone a new voice? does it generalise text?), so they are
reported separately as well as together. A bundle may have no eval rows (a
single-speaker bundle built without held-out utterances): then there is no
held-out loss to report: the loop asks `unavailable_reason` first and reports
eval as not available, and `evaluate` itself refuses no rows with NoEvalRows
(a ValueError that says so) rather than dividing by zero.
"""

from __future__ import annotations

from collections import defaultdict

import torch

from qwen_train.status import EvalResult, Losses
from qwen_train.train.data.batches import Rows
from qwen_train.train.objective import forward_losses, speaker_embeddings


class NoEvalRows(ValueError):
    """There is no held-out row to score; the message says why."""


def unavailable_reason(data: Rows, max_rows: int) -> str | None:
    """Why this run can report no held-out loss, or None when it can."""
    if len(data) == 0:
        return "the bundle has no eval rows (no held-out speakers or utterances)"
    if max_rows <= 0:
        return f"train.eval_max_rows is {max_rows}"
    return None


def _mean(values: list[tuple[float, float, float]]) -> Losses:
    n = len(values)
    if n == 0:
        raise NoEvalRows("no eval rows to average")
    return Losses(
        total=sum(v[0] for v in values) / n,
        talker=sum(v[1] for v in values) / n,
        code_predictor=sum(v[2] for v in values) / n,
    )


def evaluate(model: torch.nn.Module, data: Rows, step: int, sub_weight: float, max_rows: int,
             device: torch.device) -> EvalResult:
    """One row at a time so each row's loss is its own (per-speaker means are exact)."""
    why = unavailable_reason(data, max_rows)
    if why is not None:
        raise NoEvalRows(f"no held-out loss to compute: {why}")
    was_training = model.training
    model.eval()
    per_row: list[tuple[str, str, tuple[float, float, float]]] = []
    with torch.no_grad():
        for index in range(min(len(data), max_rows)):
            batch, mels, rows = data.batch([index])
            batch = {k: v.to(device) for k, v in batch.items()}
            losses = forward_losses(model, batch, speaker_embeddings(model, mels), sub_weight)
            values = (losses.total.item(), losses.talker.item(), losses.code_predictor.item())
            per_row.append((rows[0].eval_kind or "eval", rows[0].speaker_id, values))
    if was_training:
        model.train()
        model.get_submodule("speaker_encoder").eval()
    by_split: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    by_speaker: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    for kind, speaker, values in per_row:
        by_split[kind].append(values)
        by_speaker[speaker].append(values)
    return EvalResult(
        step=step,
        losses=_mean([v for _, _, v in per_row]),
        rows=len(per_row),
        per_split={k: _mean(v) for k, v in sorted(by_split.items())},
        per_speaker={k: _mean(v) for k, v in sorted(by_speaker.items())},
    )
