"""A tiny 12 Hz speech tokenizer of the real Qwen3-TTS-Tokenizer-12Hz shape.

Same classes and rates as the real one (Mimi encoder at 24 kHz -> 12.5 Hz,
16 code groups of 2048 entries, the V2 decoder), only much narrower. Random
weights: codes carry no phonetics, but they vary with the audio, which is
what the pipeline and the trainer need to be exercised for real.
"""

from __future__ import annotations

from pathlib import Path

import torch
from qwen_tts.core.tokenizer_12hz.configuration_qwen3_tts_tokenizer_v2 import Qwen3TTSTokenizerV2Config
from qwen_tts.core.tokenizer_12hz.modeling_qwen3_tts_tokenizer_v2 import Qwen3TTSTokenizerV2Model
from transformers import EncodecFeatureExtractor

SAMPLE_RATE = 24000
FRAME_SAMPLES = 1920  # 24000 / 12.5
NUM_QUANTIZERS = 16
CODEBOOK_SIZE = 2048


def tiny_speech_tokenizer_config() -> Qwen3TTSTokenizerV2Config:
    encoder = {
        "sampling_rate": SAMPLE_RATE,
        "frame_rate": 12.5,
        "hidden_size": 32,
        "num_filters": 8,
        "upsampling_ratios": [8, 6, 5, 4],
        "codebook_size": CODEBOOK_SIZE,
        "codebook_dim": 16,
        "vector_quantization_hidden_dimension": 16,
        "num_quantizers": NUM_QUANTIZERS,
        "num_semantic_quantizers": 1,
        "upsample_groups": 32,
        "num_hidden_layers": 1,
        "intermediate_size": 64,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "sliding_window": 250,
        "use_cache": False,
    }
    decoder = {
        "codebook_size": CODEBOOK_SIZE,
        "codebook_dim": 16,
        "hidden_size": 32,
        "latent_dim": 32,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_quantizers": NUM_QUANTIZERS,
        "upsample_rates": [8, 5, 4, 3],
        "upsampling_ratios": [2, 2],
        "decoder_dim": 32,
        "sliding_window": 72,
    }
    return Qwen3TTSTokenizerV2Config(
        encoder_config=encoder,
        decoder_config=decoder,
        encoder_valid_num_quantizers=NUM_QUANTIZERS,
        input_sample_rate=SAMPLE_RATE,
        output_sample_rate=SAMPLE_RATE,
        decode_upsample_rate=FRAME_SAMPLES,
        encode_downsample_rate=FRAME_SAMPLES,
    )


def fill_codebooks(model: Qwen3TTSTokenizerV2Model, generator: torch.Generator) -> None:
    """Random Mimi codebooks start at zero, so every frame would encode to code 0.

    Give every codebook (encoder and decoder) random centroids with unit usage so
    nearest-centroid search spreads frames across codes.
    """
    for name, buf in model.named_buffers():
        if name.endswith("embed_sum"):
            buf.copy_(torch.randn(buf.shape, generator=generator) * 0.5)
        elif name.endswith("cluster_usage"):
            buf.fill_(1.0)
    for module in model.modules():
        if hasattr(module, "_embed"):
            module._embed = None


def build_speech_tokenizer(out_dir: Path, seed: int) -> None:
    """Write a loadable `speech_tokenizer/` directory (model, config, feature extractor)."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed + 1)
    config = tiny_speech_tokenizer_config()
    model = Qwen3TTSTokenizerV2Model(config)
    with torch.no_grad():
        fill_codebooks(model, generator)
    model.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    EncodecFeatureExtractor(
        feature_size=1, sampling_rate=SAMPLE_RATE, padding_value=0.0, return_attention_mask=True
    ).save_pretrained(out_dir)
