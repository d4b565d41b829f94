"""Held-out evaluation: talker, code-predictor and total loss, split by kind and speaker.

Held-out speakers and held-out utterances of seen speakers answer different
questions (does it clone a new voice? does it generalise text?), so they are
reported separately as well as together.
"""

from __future__ import annotations

from collections import defaultdict

import torch

from qwen_train.status import EvalResult, Losses
from qwen_train.train.data import Rows
from qwen_train.train.objective import forward_losses, speaker_embeddings


def _mean(values: list[tuple[float, float, float]]) -> Losses:
    n = len(values)
    return Losses(
        total=sum(v[0] for v in values) / n,
        talker=sum(v[1] for v in values) / n,
        code_predictor=sum(v[2] for v in values) / n,
    )


def evaluate(model: torch.nn.Module, data: Rows, step: int, sub_weight: float, max_rows: int,
             device: torch.device) -> EvalResult:
    """One row at a time so each row's loss is its own (per-speaker means are exact)."""
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
