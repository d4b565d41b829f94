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
    """Random Mimi codebooks start at zero, so every frame would encode to code 0 and decode to silence.

    Give every codebook random centroids with unit usage so nearest-centroid
    search spreads frames across codes: the encoder's (`embed_sum` buffers) and
    the decoder's (`embedding_sum` parameters: a decoder left at zero turns
    every code sequence into exact silence).
    """
    tensors = [*model.named_buffers(), *model.named_parameters()]
    for name, tensor in tensors:
        if name.endswith(("embed_sum", "embedding_sum")):
            tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.5)
        elif name.endswith("cluster_usage"):
            tensor.fill_(1.0)
    for module in model.modules():
        if hasattr(module, "_embed"):
            module._embed = None


def calibrate_decoder_gain(model: Qwen3TTSTokenizerV2Model, generator: torch.Generator,
                           target_rms: float = 0.1) -> float:
    """Scale the decoder's last convolution so random codes decode at speech-like loudness.

    A narrow random decoder attenuates by ~1e-8, so its audio is inaudible
    and every loudness or similarity measure on it (the promotion gate's) sees
    silence. Returns the gain applied.
    """
    last = [m for m in model.decoder.modules() if isinstance(m, torch.nn.Conv1d)][-1]
    codes = torch.randint(0, CODEBOOK_SIZE, (2, 25, NUM_QUANTIZERS), generator=generator)
    model.eval()
    wave = model.decode(codes).audio_values
    rms = float(torch.stack([w.float().pow(2).mean() for w in wave]).mean().sqrt())
    gain = target_rms / max(rms, 1e-30)
    last.weight.mul_(gain)
    if last.bias is not None:
        last.bias.mul_(gain)
    return gain


def build_speech_tokenizer(out_dir: Path, seed: int) -> None:
    """Write a loadable `speech_tokenizer/` directory (model, config, feature extractor)."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed + 1)
    config = tiny_speech_tokenizer_config()
    model = Qwen3TTSTokenizerV2Model(config)
    with torch.no_grad():
        fill_codebooks(model, generator)
        calibrate_decoder_gain(model, generator)
    model.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    EncodecFeatureExtractor(
        feature_size=1, sampling_rate=SAMPLE_RATE, padding_value=0.0, return_attention_mask=True
    ).save_pretrained(out_dir)
