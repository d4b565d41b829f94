"""A tiny random-weight Swedish CTC model, saved as a transformers model dir, for the gate's tests.

There is no real ASR model offline. This one has the real shape of a
wav2vec2 CTC directory (config, weights, feature extractor, a character
tokenizer with å ä ö), so the gate loads it through AutoProcessor +
AutoModelForCTC exactly as it loads KBLab's; its transcripts are noise.
"""

from __future__ import annotations

import json
from pathlib import Path

SWEDISH = list("abcdefghijklmnopqrstuvwxyzåäö")


def build_tiny_asr(out: Path, seed: int = 0) -> Path:
    import torch
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2CTCTokenizer,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForCTC,
        Wav2Vec2Processor,
    )

    out.mkdir(parents=True, exist_ok=True)
    vocab = {"<pad>": 0, "<unk>": 1, "|": 2, **{ch: i + 3 for i, ch in enumerate(SWEDISH)}}
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    tokenizer = Wav2Vec2CTCTokenizer(str(out / "vocab.json"), unk_token="<unk>", pad_token="<pad>",
                                     word_delimiter_token="|")
    extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0,
                                         do_normalize=True, return_attention_mask=False)
    torch.manual_seed(seed)
    config = Wav2Vec2Config(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(16, 16, 16), conv_stride=(5, 4, 4), conv_kernel=(10, 4, 4), num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4, pad_token_id=0, ctc_loss_reduction="mean", do_stable_layer_norm=False,
    )
    Wav2Vec2ForCTC(config).eval().save_pretrained(str(out))
    Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(str(out))
    return out
