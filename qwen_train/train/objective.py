"""Forward pass and the aligned losses.

Three faults of the upstream recipe are fixed here, each pinned by a test:
  * the talker is scored against the frame it predicts (targets already sit
    at the scoring position, so no shift is applied anywhere);
  * code-predictor head i is scored against code group i (the library's
    causal-LM loss would shift once more and never train the last group);
  * `talker.text_projection`, which inference applies, is applied here too.
The speaker embedding comes from each row's reference audio through the
(frozen, kept) speaker encoder, as in voice-clone inference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from qwen_train.train.data.layout import IGNORE

if TYPE_CHECKING:
    from accelerate import Accelerator


@dataclass
class StepLosses:
    total: torch.Tensor
    talker: torch.Tensor
    code_predictor: torch.Tensor


def talker_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean CE over scored positions; `targets` are aligned with `logits` (no shift)."""
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE)


def code_predictor_loss(logits: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """logits (M, G-1, V) from heads 0..G-2 score code groups 1..G-1 of the same frame."""
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), codes[:, 1:].reshape(-1))


def speaker_embeddings(model, ref_mels: list[torch.Tensor]) -> torch.Tensor:
    """One x-vector per row from its own reference mel (anchors differ in length)."""
    encoder = model.speaker_encoder
    dtype = next(encoder.parameters()).dtype
    with torch.no_grad():
        vecs = [encoder(m.unsqueeze(0).to(device=model.device, dtype=dtype))[0] for m in ref_mels]
    return torch.stack(vecs)


class SpeakerCache:
    """x-vectors of references already seen, so each reference goes through the encoder once.

    The speaker encoder is frozen (no gradient, eval mode) and a bundle's
    references are its speakers' anchors, shared by all of a speaker's rows, so
    an x-vector is a pure function of the reference: computing it once per run
    gives the same value as computing it for every row (the same per-row call
    on the same input), and spares a launch-bound encoder call per row and
    micro-batch. Keys are the data's reference ids plus the autocast state; the
    cache is cleared whenever weights are loaded.
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.table: dict[tuple[int, bool, torch.dtype], torch.Tensor] = {}

    def clear(self) -> None:
        self.table.clear()

    def embed(self, model, mels: list[torch.Tensor], refs: list[int] | None) -> torch.Tensor:
        if not self.enabled or refs is None:
            return speaker_embeddings(model, mels)
        kind = model.device.type
        state = (torch.is_autocast_enabled(kind), torch.get_autocast_dtype(kind))
        keys = [(ref, *state) for ref in refs]
        missing = [i for i, key in enumerate(keys) if key not in self.table]
        if missing:
            for i, vec in zip(missing, speaker_embeddings(model, [mels[i] for i in missing]), strict=True):
                self.table[keys[i]] = vec
        return torch.stack([self.table[key] for key in keys])


def embed_inputs(model, batch: dict[str, torch.Tensor], spk: torch.Tensor) -> torch.Tensor:
    """Sum the text channel (projected) and the codec channel, as inference does."""
    talker = model.talker
    text = talker.text_projection(talker.model.text_embedding(batch["text_ids"]))
    text = text * batch["text_mask"].unsqueeze(-1)
    codec = talker.model.codec_embedding(batch["codec_ids"]) * batch["codec_mask"].unsqueeze(-1)
    positions = torch.arange(codec.shape[1], device=codec.device)
    at_speaker = (positions.unsqueeze(0) == batch["speaker_pos"].unsqueeze(1)).unsqueeze(-1)
    codec = codec + at_speaker * spk.to(codec.dtype).unsqueeze(1)
    frame_mask = batch["frame_mask"].unsqueeze(-1)
    tables = talker.code_predictor.get_input_embeddings()
    for group in range(1, batch["frame_codes"].shape[-1]):
        codec = codec + tables[group - 1](batch["frame_codes"][..., group]) * frame_mask
    return text + codec


def code_predictor_logits(model, hidden: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Feed [talker hidden, code 0, ..., code G-2] and return logits of heads for groups 1..G-1."""
    talker = model.talker
    tables = talker.code_predictor.get_input_embeddings()
    parts = [hidden.unsqueeze(1), talker.model.codec_embedding(codes[:, :1])]
    parts += [tables[g - 1](codes[:, g : g + 1]) for g in range(1, codes.shape[1] - 1)]
    # use_cache=False: the library would otherwise build a KV cache it never reads (memory, and a
    # recompile of each compiled layer for every cache length).
    out = talker.code_predictor.forward_finetune(inputs_embeds=torch.cat(parts, dim=1), use_cache=False)
    return out.logits


def forward_losses(model, batch: dict[str, torch.Tensor], spk: torch.Tensor, sub_weight: float) -> StepLosses:
    embeds = embed_inputs(model, batch, spk)
    out = model.talker(
        inputs_embeds=embeds,
        attention_mask=batch["attention_mask"],
        output_hidden_states=True,
        use_cache=False,
    )
    hidden = out.hidden_states[0][-1]
    t_loss = talker_loss(out.logits, batch["talker_targets"])
    cp_mask = batch["cp_mask"]
    codes = batch["cp_codes"][cp_mask]
    cp_logits = code_predictor_logits(model, hidden[cp_mask], codes)
    c_loss = code_predictor_loss(cp_logits, codes)
    return StepLosses(
        total=t_loss + sub_weight * c_loss,
        talker=t_loss,
        code_predictor=c_loss,
    )


class Objective(torch.nn.Module):
    """The model plus its loss, as one module so DDP sees the whole forward."""

    def __init__(self, model: torch.nn.Module, sub_weight: float, speaker_cache: bool = False) -> None:
        super().__init__()
        self.model = model
        self.sub_weight = sub_weight
        self.speakers = SpeakerCache(speaker_cache)

    def forward(self, batch: dict[str, torch.Tensor], mels: list[torch.Tensor],
                refs: list[int] | None = None) -> torch.Tensor:
        spk = self.speakers.embed(self.model, mels, refs)
        losses = forward_losses(self.model, batch, spk, self.sub_weight)
        return torch.stack([losses.total, losses.talker, losses.code_predictor])


def unwrap(accelerator: Accelerator, objective: torch.nn.Module) -> Objective:
    """The Objective inside accelerate's wrapper (DDP when distributed): for its bare model and its cache."""
    inner = accelerator.unwrap_model(objective)
    assert isinstance(inner, Objective), f"expected the trainer's Objective, got {type(inner).__name__}"
    return inner
