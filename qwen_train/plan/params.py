"""Parameter counts of a Qwen3-TTS model by part, from its config.json alone (no torch).

The memory plan must be computable where torch is not (the daemon's admission
check), so the counts come from the config's numbers and the architecture as
qwen-tts 0.1.1 builds it: a Qwen3 decoder talker with a text embedding, a text
projection MLP and a codec head; a small code-predictor decoder with one codec
embedding and one head per code group after the first; an ECAPA-TDNN speaker
encoder. tests/test_memory_plan.py checks every part against the real modules
built on torch's meta device, for the tiny model and the full reference config,
so a change in qwen-tts shows up as a failing test rather than a wrong plan.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

Config = Mapping[str, Any]


class ParamCounts(msgspec.Struct, frozen=True):
    """Parameters per part; `speaker_encoder` is frozen in training, `text_embedding` optionally."""

    talker_layers: int
    text_embedding: int
    talker_other: int  # codec embedding, final norm, text projection, codec head
    code_predictor: int
    speaker_encoder: int

    @property
    def total(self) -> int:
        return self.talker_layers + self.text_embedding + self.talker_other + self.code_predictor + \
            self.speaker_encoder


def _linear(fan_in: int, fan_out: int, bias: bool = False) -> int:
    return fan_in * fan_out + (fan_out if bias else 0)


def decoder_layer(c: Config) -> int:
    """One Qwen3 decoder layer: attention with per-head q/k norms, SwiGLU MLP, two RMSNorms."""
    hidden, heads, kv = int(c["hidden_size"]), int(c["num_attention_heads"]), int(c["num_key_value_heads"])
    head_dim = int(c.get("head_dim") or hidden // heads)
    bias = bool(c.get("attention_bias", False))
    attention = (_linear(hidden, heads * head_dim, bias) + 2 * _linear(hidden, kv * head_dim, bias)
                 + _linear(heads * head_dim, hidden, bias) + 2 * head_dim)
    mlp = 3 * hidden * int(c["intermediate_size"])
    return attention + mlp + 2 * hidden


def code_predictor(c: Config, talker_hidden: int) -> int:
    hidden, groups, vocab = int(c["hidden_size"]), int(c["num_code_groups"]), int(c["vocab_size"])
    layers = int(c["num_hidden_layers"]) * decoder_layer(c) + hidden  # + final norm
    embeddings = (groups - 1) * vocab * talker_hidden  # codec embeddings live in the talker's width
    heads = (groups - 1) * _linear(hidden, vocab)
    projection = _linear(talker_hidden, hidden, bias=True) if hidden != talker_hidden else 0
    return layers + embeddings + heads + projection


def _conv(c_in: int, c_out: int, kernel: int) -> int:
    return c_in * c_out * kernel + c_out


def speaker_encoder(c: Config) -> int:
    """ECAPA-TDNN as qwen-tts builds it (defaults are its config class's)."""
    channels = list(c.get("enc_channels", [512, 512, 512, 512, 1536]))
    kernels = list(c.get("enc_kernel_sizes", [5, 3, 3, 3, 1]))
    scale = int(c.get("enc_res2net_scale", 8))
    se = int(c.get("enc_se_channels", 128))
    attention = int(c.get("enc_attention_channels", 128))
    total = _conv(int(c.get("mel_dim", 128)), channels[0], kernels[0])
    for i in range(1, len(channels) - 1):
        c_in, c_out = channels[i - 1], channels[i]
        total += _conv(c_in, c_out, 1) + _conv(c_out, c_out, 1)  # tdnn1, tdnn2
        total += (scale - 1) * _conv(c_in // scale, c_out // scale, kernels[i])  # res2net
        total += _conv(c_out, se, 1) + _conv(se, c_out, 1)  # squeeze-excitation
    last = channels[-1]
    total += _conv(last, last, kernels[-1])  # multi-layer feature aggregation
    total += _conv(last * 3, attention, 1) + _conv(attention, last, 1)  # attentive statistics pooling
    return total + _conv(last * 2, int(c.get("enc_dim", 1024)), 1)


def count_params(config: Config) -> ParamCounts:
    """Counts for a Qwen3TTSForConditionalGeneration config (the model dir's config.json)."""
    talker = config["talker_config"]
    hidden = int(talker["hidden_size"])
    text_hidden = int(talker.get("text_hidden_size") or hidden)
    vocab = int(talker["vocab_size"])
    other = (vocab * hidden + hidden  # codec embedding, final norm
             + _linear(text_hidden, text_hidden, bias=True) + _linear(text_hidden, hidden, bias=True)
             + _linear(hidden, vocab))  # codec head
    base = config.get("tts_model_type", "base") == "base"
    return ParamCounts(
        talker_layers=int(talker["num_hidden_layers"]) * decoder_layer(talker),
        text_embedding=int(talker["text_vocab_size"]) * text_hidden,
        talker_other=other,
        code_predictor=code_predictor(talker["code_predictor_config"], hidden),
        speaker_encoder=speaker_encoder(config.get("speaker_encoder_config", {})) if base else 0,
    )


def projections(c: Config) -> dict[str, tuple[int, int]]:
    """(in, out) features of each projection in one decoder layer, by the name qwen-tts gives it."""
    hidden, heads, kv = int(c["hidden_size"]), int(c["num_attention_heads"]), int(c["num_key_value_heads"])
    head_dim = int(c.get("head_dim") or hidden // heads)
    inter = int(c["intermediate_size"])
    return {"q_proj": (hidden, heads * head_dim), "k_proj": (hidden, kv * head_dim),
            "v_proj": (hidden, kv * head_dim), "o_proj": (heads * head_dim, hidden),
            "gate_proj": (hidden, inter), "up_proj": (hidden, inter), "down_proj": (inter, hidden)}


def adapted_layers(config: Config, code_predictor: bool) -> list[Config]:
    """The decoder-layer configs an adapter reaches, one entry per layer: the talker's, and the code predictor's."""
    talker = config["talker_config"]
    layers = [talker] * int(talker["num_hidden_layers"])
    if code_predictor:
        predictor = talker["code_predictor_config"]
        layers += [predictor] * int(predictor["num_hidden_layers"])
    return layers


def adapter_params(config: Config, rank: int, targets: tuple[str, ...], code_predictor: bool,
                   language_row: bool) -> int:
    """Parameters of a LoRA adapter (A: rank x in, B: out x rank per adapted projection), and of the language
    row an adapter run trains with a language tag (one talker-wide row)."""
    total = 0
    for layer in adapted_layers(config, code_predictor):
        shapes = projections(layer)
        total += sum(rank * (shapes[name][0] + shapes[name][1]) for name in targets if name in shapes)
    return total + (int(config["talker_config"]["hidden_size"]) if language_row else 0)
