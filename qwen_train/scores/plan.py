"""What scoring needs of a GPU: the memory it adds beside a training run, by part. No torch.

The scorer loads one model at a time (scores/engine.py), so its peak is the largest stage, not their sum:
the TTS model at the scoring dtype (bf16 on a GPU: inference keeps no gradients or optimizer state) with
generation's workspace (the talker's KV cache for one clone at `scores.max_new_tokens`, logits, the codec
decoder), or the ASR judge's weights as they lie on disk (a Whisper checkpoint is stored at the precision
it runs in, or wider: an over-estimate is the safe side) with its decoding workspace; the speaker verifier
(resemblyzer's GE2E, or an x-vector model, tens of MiB) rides along with either. DNSMOS and Silero VAD run
on the CPU. The CUDA context is counted once. `qwen-train score RUN_DIR --plan` prints this as JSON; when
to run scoring is the daemon's decision, by this need and the card's room.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from qwen_train.plan import count_params, read_config
from qwen_train.plan.memory import CONTEXT_BYTES
from qwen_train.spec import RunSpec

MiB = 1 << 20
BF16, FP32 = 2, 4
VERIFIER_BYTES = 256 * MiB
DECODER_BYTES = 512 * MiB  # the codec decoder's activations for a 30 s clone, and the logits
ASR_WORKSPACE = 512 * MiB  # a batch of 8 clips through Whisper's encoder and greedy decoder
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


class ScoringPlan(msgspec.Struct, frozen=True):
    dtype: str
    tts_bytes: int  # the TTS model's weights
    generation_bytes: int  # KV cache and decoder workspace for one clone
    asr_bytes: int  # the ASR judge's weights (0: none given)
    judges_bytes: int  # the verifier and the ASR's workspace
    context_bytes: int
    peak_bytes: int  # the largest stage, plus the context


def _weights_on_disk(model_dir: Path) -> int:
    try:
        return sum(p.stat().st_size for p in model_dir.rglob("*") if p.suffix in WEIGHT_SUFFIXES and p.is_file())
    except OSError:
        return 0


def _kv_bytes(config: Mapping[str, Any], frames: int, element: int) -> int:
    """Keys and values of every talker layer for `frames` positions (plus the text prompt, a few hundred)."""
    talker: Mapping[str, Any] = config.get("talker_config") or {}
    layers = int(talker.get("num_hidden_layers") or 0)
    attention_heads = int(talker.get("num_attention_heads") or 1)
    heads = int(talker.get("num_key_value_heads") or attention_heads)
    head_dim = int(talker.get("head_dim") or int(talker.get("hidden_size") or 0) // attention_heads)
    return 2 * layers * heads * head_dim * (frames + 512) * element


def scoring_plan(spec: RunSpec, asr: Path | None, gpu: bool = True) -> ScoringPlan:
    """ValueError naming the model dir when its config cannot be read."""
    config = read_config(Path(spec.model))
    element = FP32 if spec.scores.dtype == "fp32" or not gpu else BF16
    tts = count_params(config).total * element
    generation = _kv_bytes(config, spec.scores.max_new_tokens, element) + DECODER_BYTES
    asr_bytes = _weights_on_disk(asr) if asr is not None else 0
    judges = VERIFIER_BYTES + (ASR_WORKSPACE if asr is not None else 0)
    peak = max(tts + generation + VERIFIER_BYTES, asr_bytes + judges) + CONTEXT_BYTES
    return ScoringPlan(dtype="bf16" if element == BF16 else "fp32", tts_bytes=tts, generation_bytes=generation,
                       asr_bytes=asr_bytes, judges_bytes=judges, context_bytes=CONTEXT_BYTES, peak_bytes=peak)
