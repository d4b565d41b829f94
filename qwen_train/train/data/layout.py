"""The talker's training sequence, laid out exactly as inference lays it out.

`Qwen3TTSForConditionalGeneration.generate` (non-streaming, speaker from the
x-vector) feeds the talker, position by position:

    role      text: <|im_start|> assistant \\n                   codec: -
    prefix    text: tts_pad ... tts_pad tts_bos                 codec: nothink think_bos think_eos [spk] pad
              (with a language: think think_bos LANG think_eos [spk] pad)
    body      text: the tokens of the sentence, then tts_eos    codec: pad ...
    start     text: tts_pad                                     codec: bos
    frames    text: tts_pad                                     codec: sum of the 16 code groups of frame k

The talker's output at `start + k` predicts code group 0 of frame k; the
output at the last frame predicts codec_eos. Targets are stored *at the
position whose logits score them*, so the loss needs no shift at all (the
upstream recipe shifted labels itself and the library shifted them again).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

IGNORE = -100


@dataclass(frozen=True)
class SpecialIds:
    """Token ids the layout needs, read from the model config."""

    tts_pad: int
    tts_bos: int
    tts_eos: int
    codec_pad: int
    codec_bos: int
    codec_eos: int
    codec_think: int
    codec_nothink: int
    codec_think_bos: int
    codec_think_eos: int

    @classmethod
    def from_config(cls, config) -> SpecialIds:
        t = config.talker_config
        return cls(
            tts_pad=config.tts_pad_token_id,
            tts_bos=config.tts_bos_token_id,
            tts_eos=config.tts_eos_token_id,
            codec_pad=t.codec_pad_id,
            codec_bos=t.codec_bos_id,
            codec_eos=t.codec_eos_token_id,
            codec_think=t.codec_think_id,
            codec_nothink=t.codec_nothink_id,
            codec_think_bos=t.codec_think_bos_id,
            codec_think_eos=t.codec_think_eos_id,
        )


@dataclass(frozen=True)
class RowLayout:
    """One row's channels, each of length `length`.

    codec_ids holds control ids and, at frame positions, code group 0;
    frame_codes holds all 16 groups at frame positions (zeros elsewhere).
    talker_targets holds the code-0/eos each position's logits must predict.
    cp_codes holds, at the position whose hidden state produced frame k,
    frame k's 16 groups: the code predictor's input and targets.
    """

    text_ids: torch.Tensor
    text_mask: torch.Tensor
    codec_ids: torch.Tensor
    codec_mask: torch.Tensor
    frame_codes: torch.Tensor
    frame_mask: torch.Tensor
    talker_targets: torch.Tensor
    cp_codes: torch.Tensor
    cp_mask: torch.Tensor
    speaker_pos: int
    length: int


def codec_prefix(ids: SpecialIds, language_id: int | None) -> list[int]:
    """The think/language tags before the speaker slot, as inference builds them."""
    if language_id is None:
        return [ids.codec_nothink, ids.codec_think_bos, ids.codec_think_eos]
    return [ids.codec_think, ids.codec_think_bos, language_id, ids.codec_think_eos]


def row_length(prompt_tokens: int, frames: int, with_language: bool) -> int:
    """The `length` build_row gives a row, from its prompt's token count and frame count alone.

    What a frame budget must count (every position the talker processes), known without reading a row's
    codes: role (3) + codec prefix and speaker/pad slots + body + tts_eos + bos + frames, where the body is
    the prompt less its 3 role and 5 tail tokens.
    """
    n_prefix = (4 if with_language else 3) + 2
    return 3 + n_prefix + (prompt_tokens - 8) + 2 + frames


def build_row(text_ids: list[int], codes: torch.Tensor, ids: SpecialIds, language_id: int | None) -> RowLayout:
    """Lay out one row. `text_ids` is the full assistant prompt (role + body + 5 tail tokens)."""
    role, body = text_ids[:3], text_ids[3:-5]
    prefix = codec_prefix(ids, language_id)
    n_prefix = len(prefix) + 2  # + speaker slot + codec_pad
    frames = int(codes.shape[0])
    groups = int(codes.shape[1])
    start = 3 + n_prefix + len(body) + 1
    length = start + 1 + frames

    text = [*role, *([ids.tts_pad] * (n_prefix - 1)), ids.tts_bos, *body, ids.tts_eos]
    text += [ids.tts_pad] * (length - len(text))
    codec = [0, 0, 0, *prefix, 0, ids.codec_pad, *([ids.codec_pad] * (len(body) + 1)), ids.codec_bos]
    codec += codes[:, 0].tolist()
    speaker_pos = 3 + len(prefix)

    codec_mask = torch.ones(length, dtype=torch.bool)
    codec_mask[:3] = False
    codec_mask[speaker_pos] = False
    frame_mask = torch.zeros(length, dtype=torch.bool)
    frame_mask[start + 1 :] = True
    frame_codes = torch.zeros(length, groups, dtype=torch.long)
    frame_codes[start + 1 :] = codes

    targets = torch.full((length,), IGNORE, dtype=torch.long)
    targets[start : start + frames] = codes[:, 0]
    targets[start + frames] = ids.codec_eos
    cp_mask = torch.zeros(length, dtype=torch.bool)
    cp_mask[start : start + frames] = True
    cp_codes = torch.zeros(length, groups, dtype=torch.long)
    cp_codes[start : start + frames] = codes

    return RowLayout(
        text_ids=torch.tensor(text, dtype=torch.long),
        text_mask=torch.ones(length, dtype=torch.bool),
        codec_ids=torch.tensor(codec, dtype=torch.long),
        codec_mask=codec_mask,
        frame_codes=frame_codes,
        frame_mask=frame_mask,
        talker_targets=targets,
        cp_codes=cp_codes,
        cp_mask=cp_mask,
        speaker_pos=speaker_pos,
        length=length,
    )


def collate(rows: list[RowLayout], pad_multiple: int = 0) -> dict[str, torch.Tensor]:
    """Right-pad rows into a batch; padded positions are masked out everywhere.

    `pad_multiple` > 0 rounds the batch's length up to a multiple of it (a GPU speed setting: fewer
    distinct shapes to compile for); the extra positions are padding like any other.
    """
    width = max(r.length for r in rows)
    if pad_multiple > 0:
        width = -(-width // pad_multiple) * pad_multiple
    out: dict[str, torch.Tensor] = {}
    for field in ("text_ids", "codec_ids", "talker_targets", "text_mask", "codec_mask", "frame_mask", "cp_mask"):
        fill = IGNORE if field == "talker_targets" else 0
        out[field] = torch.stack([_pad(getattr(r, field), width, fill) for r in rows])
    for field in ("frame_codes", "cp_codes"):
        out[field] = torch.stack([_pad(getattr(r, field), width, 0) for r in rows])
    out["attention_mask"] = torch.stack([_pad(torch.ones(r.length, dtype=torch.long), width, 0) for r in rows])
    out["speaker_pos"] = torch.tensor([r.speaker_pos for r in rows], dtype=torch.long)
    return out


def _pad(t: torch.Tensor, width: int, fill: int) -> torch.Tensor:
    pad_shape = (width - t.shape[0], *t.shape[1:])
    return torch.cat([t, torch.full(pad_shape, fill, dtype=t.dtype)])
