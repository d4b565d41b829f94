"""Build the tiny Qwen3-TTS: the real architecture, random weights, small sizes.

It is saved and loaded through the real `Qwen3TTSModel.from_pretrained` path,
so everything downstream (bundle, trainer, export, voice cloning) runs the
official model code. The known pitfalls of a hand-made checkpoint are handled
here, one by one:
  * special-token ids in the config must be the tokenizer's ids;
  * `text_hidden_size` equals the talker hidden size;
  * the speaker encoder's `enc_dim` equals the talker hidden size, `mel_dim` 128;
  * the talker vocabulary stays > 3000 (codec control ids live at 2148+);
  * `spk_id` and `codec_language_id` are dicts;
  * `save_pretrained` writes `speaker_encoder_config.model_type = ""`, which breaks reload;
  * `generation_config.json` and `speech_tokenizer/` must exist.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from qwen_tts.core.models.configuration_qwen3_tts import Qwen3TTSConfig
from qwen_tts.core.models.modeling_qwen3_tts import Qwen3TTSForConditionalGeneration
from qwen_tts.core.models.processing_qwen3_tts import Qwen3TTSProcessor

from qwen_train.atomic import atomic_write_text
from qwen_train.corpus.sentences import PROMPT_WORDS, SENTENCES
from qwen_train.modeldir import save_model_dir
from qwen_train.tiny.speech_tokenizer import NUM_QUANTIZERS, build_speech_tokenizer
from qwen_train.tiny.text_tokenizer import TokenIds, build_text_tokenizer

TALKER_HIDDEN = 64

# The real model's codec control ids (reference config); codes are 0..2047.
CODEC_IDS = {
    "codec_pad_id": 2148,
    "codec_bos_id": 2149,
    "codec_eos_token_id": 2150,
    "codec_think_id": 2154,
    "codec_nothink_id": 2155,
    "codec_think_bos_id": 2156,
    "codec_think_eos_id": 2157,
}
LANGUAGE_IDS = {"english": 2050, "german": 2053, "spanish": 2054, "chinese": 2055}

GENERATION_CONFIG = {
    "do_sample": True,
    "top_k": 50,
    "top_p": 1.0,
    "temperature": 0.9,
    "repetition_penalty": 1.05,
    "subtalker_dosample": True,
    "subtalker_top_k": 50,
    "subtalker_top_p": 1.0,
    "subtalker_temperature": 0.9,
    "max_new_tokens": 256,
}


def tiny_config(ids: TokenIds) -> dict[str, Any]:
    """A config dict of the reference model's shape, scaled down."""
    head_dim = 16
    talker = {
        "code_predictor_config": {
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 16,
            "vocab_size": 2048,
            "num_code_groups": NUM_QUANTIZERS,
            "max_position_embeddings": 64,
            "rope_theta": 1000000,
        },
        "hidden_size": TALKER_HIDDEN,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": head_dim,
        "vocab_size": 3072,
        "num_code_groups": NUM_QUANTIZERS,
        "text_hidden_size": TALKER_HIDDEN,
        "text_vocab_size": ids.vocab_size,
        "max_position_embeddings": 4096,
        "position_id_per_seconds": 13,
        "rope_theta": 1000000,
        "rope_scaling": {"interleaved": True, "mrope_section": [4, 2, 2], "rope_type": "default"},
        "codec_language_id": dict(LANGUAGE_IDS),
        "spk_id": {},
        "spk_is_dialect": {},
        **CODEC_IDS,
    }
    speaker_encoder = {
        "mel_dim": 128,
        "enc_dim": TALKER_HIDDEN,
        "enc_channels": [32, 32, 32, 32, 96],
        "enc_kernel_sizes": [5, 3, 3, 3, 1],
        "enc_dilations": [1, 2, 3, 4, 1],
        "enc_attention_channels": 16,
        "enc_res2net_scale": 4,
        "enc_se_channels": 16,
        "sample_rate": 24000,
    }
    return {
        "architectures": ["Qwen3TTSForConditionalGeneration"],
        "model_type": "qwen3_tts",
        "tokenizer_type": "qwen3_tts_tokenizer_12hz",
        "tts_model_size": "tiny",
        "tts_model_type": "base",
        "assistant_token_id": ids.assistant,
        "im_start_token_id": ids.im_start,
        "im_end_token_id": ids.im_end,
        "tts_pad_token_id": ids.tts_pad,
        "tts_bos_token_id": ids.tts_bos,
        "tts_eos_token_id": ids.tts_eos,
        "talker_config": talker,
        "speaker_encoder_config": speaker_encoder,
    }


def build_tiny_model(out_dir: Path, seed: int = 0) -> Path:
    """Write a complete tiny model directory and return it."""
    tokenizer = build_text_tokenizer(list(SENTENCES) + list(PROMPT_WORDS))
    ids = TokenIds(tokenizer)
    torch.manual_seed(seed)
    config = Qwen3TTSConfig(**tiny_config(ids))
    model = Qwen3TTSForConditionalGeneration(config)
    model.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    save_model_dir(model, out_dir)
    Qwen3TTSProcessor(tokenizer=tokenizer).save_pretrained(out_dir)
    atomic_write_text(out_dir / "generation_config.json", json.dumps(GENERATION_CONFIG, indent=2))
    build_speech_tokenizer(out_dir / "speech_tokenizer", seed=seed + 100)
    return out_dir
