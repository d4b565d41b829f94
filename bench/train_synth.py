"""Synthetic rows, the random-weight model, the upstream recipe's step and the FLOP count.

Shared by `train_throughput.py`. Everything the two trainers see comes from
one seeded pool of rows (text 20-80 tokens, 25-190 codec frames of 16 groups,
and a speaker whose 3-6 s anchor is the reference, as in a bundle, where
`ref_audio` is the speaker's anchor), so the baseline and ours train the same
rows. `shape="riksdag"` draws the rows' sizes as Riksdag clips run instead
(riksdag_sizes: 2-30 s, long-tailed), which a fixed row count cannot fit.
Both compute the reference mel from the waveform and lay the batch out in the
step's process, as their own data paths do: the baseline in the main process
(the recipe's DataLoader has no workers), ours through the trainer's batch
source (prefetched by workers on a GPU).

The baseline step follows `finetuning/sft_12hz.py` + `dataset.py` of
QwenLM/Qwen3-TTS as described there (written here, not copied): bf16 weights,
`Accelerator(gradient_accumulation_steps=4, mixed_precision="bf16")`, AdamW
(lr 2e-5, weight decay 0.01) over all parameters, the upstream padded layout
(longest row + 8), the speaker encoder run with autograd on and detached,
text projection, codec embeddings summed over the 16 groups, the talker with
the library's label loss, the sub-talker fine-tune loss at 0.3, clip 1.0 on
sync steps. One deviation: the recipe concatenates reference mels, which
only works when they are the same length, so each batch's mels are cut to
the shortest one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qwen_train.train.data.batches import mel_from_wave
from qwen_train.train.data.layout import SpecialIds, build_row, collate

CONFIG = Path(__file__).with_name("train_model_config.json")
NEWLINE = 198  # "\n" in the Qwen tokenizer
FRAME_RATE = 12.5  # codec frames per second of audio
TOKENS_PER_S = 4.0  # Swedish speech: ~15 characters/s, ~4 tokens/s


def model_config(scale: str) -> dict[str, Any]:
    """The real 1.7B configuration, or a scaled-down one of the same shape for a CPU dry run."""
    cfg: dict[str, Any] = json.loads(CONFIG.read_text())
    if scale == "full":
        return cfg
    talker = cfg["talker_config"]
    talker.update(hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=2,
                  num_key_value_heads=1, text_hidden_size=256)
    talker["code_predictor_config"].update(hidden_size=128, intermediate_size=256, num_hidden_layers=1,
                                           num_attention_heads=2, num_key_value_heads=1)
    cfg["speaker_encoder_config"] = {"enc_dim": 256, "sample_rate": 24000, "enc_channels": [64, 64, 64, 64, 192],
                                     "enc_attention_channels": 32, "enc_se_channels": 32}
    return cfg


def build_model(cfg: dict[str, Any], device: torch.device, dtype: torch.dtype, seed: int) -> Any:
    """The real architecture with random weights, built directly on `device` (no real weights exist here)."""
    from qwen_tts.core.models.configuration_qwen3_tts import Qwen3TTSConfig
    from qwen_tts.core.models.modeling_qwen3_tts import Qwen3TTSForConditionalGeneration

    config = Qwen3TTSConfig(**cfg)
    for sub in (config, config.talker_config, config.talker_config.code_predictor_config):
        sub._attn_implementation = "sdpa"
    torch.manual_seed(seed)
    with torch.device(device):
        model = Qwen3TTSForConditionalGeneration(config)
    return model.to(dtype)


@dataclass(frozen=True)
class SynthRow:
    body: list[int]
    codes: torch.Tensor  # (frames, 16)
    wave: torch.Tensor  # 24 kHz mono reference audio: the speaker's anchor
    speaker: int

    @property
    def frames(self) -> int:
        return int(self.codes.shape[0])

    @property
    def length(self) -> int:
        """The talker sequence length of this row in the trainer's layout."""
        return len(self.body) + self.frames + 10


def riksdag_sizes(count: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """(text tokens, codec frames) of `count` clips shaped like Riksdag speech segments.

    Durations long-tailed as segmented parliament speech is: log-normal around 8 s (sigma 0.55), cut to the
    segmenter's 2-30 s, so about one clip in twenty runs past 20 s; text at ~4 tokens/s, +-30% per clip.
    """
    seconds = np.clip(rng.lognormal(np.log(8.0), 0.55, count), 2.0, 30.0)
    tokens = np.maximum(3, np.round(seconds * TOKENS_PER_S * rng.uniform(0.7, 1.3, count)))
    return [(int(t), int(round(s * FRAME_RATE))) for t, s in zip(tokens, seconds, strict=True)]


def make_rows(count: int, cfg: dict[str, Any], seed: int, speakers: int, shape: str = "bench") -> list[SynthRow]:
    """Rows spread over `speakers` voices, each with one 3-6 s anchor as its reference (a bundle's layout).

    `shape`: "bench", text 20-80 tokens and 25-190 frames, uniform; "riksdag", riksdag_sizes.
    """
    rng = np.random.default_rng(seed)
    groups = cfg["talker_config"]["num_code_groups"]
    codebook = cfg["talker_config"]["code_predictor_config"]["vocab_size"]
    anchors = [torch.from_numpy(rng.standard_normal(int(rng.uniform(3.0, 6.0) * 24000)).astype(np.float32) * 0.1)
               for _ in range(speakers)]
    if shape not in ("bench", "riksdag"):
        raise ValueError(f"row shape {shape!r}: expected 'bench' or 'riksdag'")
    sized = riksdag_sizes(count, rng) if shape == "riksdag" else None
    rows = []
    for i in range(count):
        # "bench" draws in this order, row by row, so its pool is the one earlier results were measured on
        tokens = int(rng.integers(20, 81)) if sized is None else sized[i][0]
        body = rng.integers(1000, 150000, size=tokens).tolist()
        frames = int(rng.integers(25, 191)) if sized is None else sized[i][1]
        codes = torch.from_numpy(rng.integers(0, codebook, size=(frames, groups)))
        speaker = int(rng.integers(0, speakers))
        rows.append(SynthRow(body=body, codes=codes, wave=anchors[speaker], speaker=speaker))
    return rows


def prompt(cfg: dict[str, Any], body: list[int]) -> list[int]:
    """<|im_start|>assistant\\n BODY <|im_end|>\\n<|im_start|>assistant\\n as token ids."""
    start, assistant, end = cfg["im_start_token_id"], cfg["assistant_token_id"], cfg["im_end_token_id"]
    return [start, assistant, NEWLINE, *body, end, NEWLINE, start, assistant, NEWLINE]


class SynthData:
    """The trainer's data interface (len, lengths, batch) over synthetic rows, laid out by the real layout code."""

    def __init__(self, rows: list[SynthRow], cfg: dict[str, Any], ids: SpecialIds) -> None:
        self.rows, self.cfg, self.ids = rows, cfg, ids
        self.pad_multiple = 0  # set from the session's Perf, as for BundleData

    def __len__(self) -> int:
        return len(self.rows)

    def lengths(self) -> list[int]:
        return [r.length for r in self.rows]

    def row_name(self, index: int) -> str:
        return f"synthetic row {index}"

    def batch(self, indices: list[int]) -> tuple[dict[str, torch.Tensor], list[torch.Tensor], list[Any]]:
        rows = [self.rows[i] for i in indices]
        layouts = [build_row(prompt(self.cfg, r.body), r.codes, self.ids, None) for r in rows]
        batch = collate(layouts, self.pad_multiple)
        batch["speaker_index"] = torch.tensor([r.speaker for r in rows], dtype=torch.long)
        batch["ref_index"] = batch["speaker_index"].clone()  # one anchor per speaker
        return batch, [mel_from_wave(r.wave) for r in rows], []


def upstream_batch(rows: list[SynthRow], cfg: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The recipe's padded layout: two input channels, 16-group codes, masks and code-0 labels."""
    t_cfg = cfg["talker_config"]
    texts = [prompt(cfg, r.body)[:-5] for r in rows]
    width = max(len(t) + r.frames for t, r in zip(texts, rows, strict=True)) + 8
    b = len(rows)
    input_ids = torch.zeros(b, width, 2, dtype=torch.long)
    codec_ids = torch.zeros(b, width, 16, dtype=torch.long)
    text_mask = torch.zeros(b, width, dtype=torch.bool)
    codec_embed_mask = torch.zeros(b, width, dtype=torch.bool)
    codec_mask = torch.zeros(b, width, dtype=torch.bool)
    attention = torch.zeros(b, width, dtype=torch.long)
    labels = torch.full((b, width), -100, dtype=torch.long)
    for i, (text, row) in enumerate(zip(texts, rows, strict=True)):
        n, f = len(text), row.frames
        end = 8 + n + f
        input_ids[i, :3, 0] = torch.tensor(text[:3])
        input_ids[i, 3:7, 0] = cfg["tts_pad_token_id"]
        input_ids[i, 7, 0] = cfg["tts_bos_token_id"]
        input_ids[i, 8 : 5 + n, 0] = torch.tensor(text[3:])
        input_ids[i, 5 + n, 0] = cfg["tts_eos_token_id"]
        input_ids[i, 6 + n : end, 0] = cfg["tts_pad_token_id"]
        text_mask[i, :end] = True
        input_ids[i, 3:8, 1] = torch.tensor([t_cfg["codec_nothink_id"], t_cfg["codec_think_bos_id"],
                                             t_cfg["codec_think_eos_id"], 0, t_cfg["codec_pad_id"]])
        input_ids[i, 8 : 6 + n, 1] = t_cfg["codec_pad_id"]
        input_ids[i, 6 + n, 1] = t_cfg["codec_bos_id"]
        input_ids[i, 7 + n : 7 + n + f, 1] = row.codes[:, 0]
        input_ids[i, 7 + n + f, 1] = t_cfg["codec_eos_token_id"]
        labels[i, 7 + n : 7 + n + f] = row.codes[:, 0]
        labels[i, 7 + n + f] = t_cfg["codec_eos_token_id"]
        codec_ids[i, 7 + n : 7 + n + f] = row.codes
        codec_embed_mask[i, 3:end] = True
        codec_embed_mask[i, 6] = False
        codec_mask[i, 7 + n : 7 + n + f] = True
        attention[i, :end] = 1
    mels = [mel_from_wave(r.wave) for r in rows]
    shortest = min(m.shape[0] for m in mels)  # the recipe's torch.cat needs equal lengths
    return {"input_ids": input_ids, "codec_ids": codec_ids, "text_mask": text_mask.unsqueeze(-1),
            "codec_embed_mask": codec_embed_mask.unsqueeze(-1), "codec_mask": codec_mask,
            "attention_mask": attention, "labels": labels,
            "ref_mels": torch.stack([m[:shortest] for m in mels])}


def upstream_micro_step(model: Any, batch: dict[str, torch.Tensor], accelerator: Any, optimizer: Any) -> torch.Tensor:
    """One micro-batch of the recipe: forward, backward, and the optimizer call accelerate gates."""
    b = {k: v.to(accelerator.device) for k, v in batch.items()}
    with accelerator.accumulate(model):
        talker = model.talker
        speaker = model.speaker_encoder(b["ref_mels"].to(model.dtype)).detach()
        text = talker.text_projection(talker.model.text_embedding(b["input_ids"][:, :, 0])) * b["text_mask"]
        codec = talker.model.codec_embedding(b["input_ids"][:, :, 1]) * b["codec_embed_mask"]
        codec[:, 6, :] = speaker
        embeds = text + codec
        tables = talker.code_predictor.get_input_embeddings()
        for group in range(1, 16):
            embeds = embeds + tables[group - 1](b["codec_ids"][:, :, group]) * b["codec_mask"].unsqueeze(-1)
        out = talker(inputs_embeds=embeds, attention_mask=b["attention_mask"], labels=b["labels"],
                     output_hidden_states=True)
        hidden = out.hidden_states[0][-1][:, :-1, :]
        _logits, sub_loss = talker.forward_sub_talker_finetune(b["codec_ids"][b["codec_mask"]],
                                                               hidden[b["codec_mask"][:, 1:]])
        loss = out.loss + 0.3 * sub_loss
        accelerator.backward(loss)
        if accelerator.sync_gradients:
            accelerator.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
    return loss.detach()


def step_flops(cfg: dict[str, Any], lengths: list[int], frames: list[int]) -> float:
    """Model FLOPs of one training pass (forward + backward = 3x forward) over real, unpadded tokens.

    Matrix products of the talker (28 layers, codec head, text projection) per
    token, causal attention per row, and the code predictor (16 positions per
    frame through its layers, the projection in, one head per position out).
    The frozen speaker encoder and embedding lookups are not counted.
    """
    t = cfg["talker_config"]
    c = t["code_predictor_config"]

    def layer_params(h: int, heads: int, kv: int, hd: int, inter: int) -> int:
        return h * heads * hd + 2 * h * kv * hd + heads * hd * h + 3 * h * inter

    th, ch = t["hidden_size"], c["hidden_size"]
    talker = t["num_hidden_layers"] * layer_params(th, t["num_attention_heads"], t["num_key_value_heads"],
                                                   t["head_dim"], t["intermediate_size"])
    talker += th * t["vocab_size"] + 2 * t["text_hidden_size"] * t["text_hidden_size"]
    cp_layer = c["num_hidden_layers"] * layer_params(ch, c["num_attention_heads"], c["num_key_value_heads"],
                                                     c["head_dim"], c["intermediate_size"])
    groups = c["num_code_groups"]
    fwd = 0.0
    for n in lengths:
        fwd += 2 * talker * n + 2 * t["num_hidden_layers"] * n * n * t["num_attention_heads"] * t["head_dim"]
    for _f in frames:
        per_frame = groups * (cp_layer + th * ch) + (groups - 1) * ch * c["vocab_size"]
        attention = 2 * c["num_hidden_layers"] * groups * groups * c["num_attention_heads"] * c["head_dim"]
        fwd += 2 * per_frame + attention
    return 3.0 * fwd
