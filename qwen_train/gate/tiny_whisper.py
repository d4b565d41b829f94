"""A tiny random-weight Whisper, saved as a transformers model dir: the gate's ASR judge offline.

No real ASR model can be downloaded here (no hub at run time), so the demo
and the tests build this one, the way the tiny TTS model is built: the real
architecture (`WhisperForConditionalGeneration`), a real byte-level BPE
tokenizer with Whisper's special tokens (start, languages, tasks, no-speech,
no-timestamps; not the 1501 timestamp tokens, which the gate never asks
for), a real
feature extractor and a generation config of the shape KB-Whisper ships
(`lang_to_id`, `task_to_id`, `no_timestamps_token_id`). The gate loads it
through AutoProcessor + WhisperForConditionalGeneration and decodes it with
the real `generate`, forced to Swedish, exactly as it would KB-Whisper; its
transcripts are noise, so a gate judged by it fails intelligibility, honestly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

END = "<|endoftext|>"
START = "<|startoftranscript|>"
TASKS = ("<|translate|>", "<|transcribe|>")
OTHERS = ("<|startoflm|>", "<|startofprev|>", "<|nospeech|>", "<|notimestamps|>")
MAX_TARGET_POSITIONS = 128  # decoder positions: prompt plus transcript tokens


def _byte_vocab(out: Path) -> tuple[Path, Path]:
    """vocab.json (the 256 byte-level symbols and <|endoftext|>) and an empty merges.txt."""
    from tokenizers.pre_tokenizers import ByteLevel

    symbols = sorted(ByteLevel.alphabet())
    vocab = {symbol: i for i, symbol in enumerate(symbols)} | {END: len(symbols)}
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (out / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return out / "vocab.json", out / "merges.txt"


def _tokenizer(out: Path) -> Any:
    """Whisper's tokenizer with its special tokens in Whisper's order (start, languages, tasks, others)."""
    from transformers import WhisperTokenizer
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    vocab, merges = _byte_vocab(out)
    tokenizer = WhisperTokenizer(str(vocab), str(merges), unk_token=END, bos_token=END, eos_token=END,
                                 pad_token=END)
    specials = [START, *(f"<|{code}|>" for code in LANGUAGES), *TASKS, *OTHERS]
    tokenizer.add_special_tokens({"additional_special_tokens": specials})
    return tokenizer


def _generation_config(tokenizer: Any) -> Any:
    """KB-Whisper's shape. Inside a transcript every special token but <|endoftext|> is suppressed (the
    prompt carries them), so the random weights speak bytes, not a run of timestamps."""
    from transformers import GenerationConfig
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    ids = tokenizer.convert_tokens_to_ids
    end = ids(END)
    specials = sorted(i for i in tokenizer.added_tokens_decoder if i != end)
    return GenerationConfig(
        decoder_start_token_id=ids(START), bos_token_id=end, eos_token_id=end, pad_token_id=end,
        lang_to_id={f"<|{code}|>": ids(f"<|{code}|>") for code in LANGUAGES},
        task_to_id={"translate": ids(TASKS[0]), "transcribe": ids(TASKS[1])},
        no_timestamps_token_id=ids("<|notimestamps|>"), prev_sot_token_id=ids("<|startofprev|>"),
        is_multilingual=True, max_length=MAX_TARGET_POSITIONS, begin_suppress_tokens=[ids("Ġ"), end],
        suppress_tokens=specials,
    )


def build_tiny_whisper(out: Path, seed: int = 0) -> Path:
    """Write a Whisper model dir (config, weights, generation config, processor) to `out`; returns `out`."""
    import torch
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperProcessor

    out.mkdir(parents=True, exist_ok=True)
    tokenizer = _tokenizer(out)
    generation = _generation_config(tokenizer)
    config = WhisperConfig(
        vocab_size=len(tokenizer), num_mel_bins=80, d_model=32, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
        max_source_positions=1500, max_target_positions=MAX_TARGET_POSITIONS,
        decoder_start_token_id=generation.decoder_start_token_id, pad_token_id=generation.pad_token_id,
        bos_token_id=generation.bos_token_id, eos_token_id=generation.eos_token_id,
    )
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config).eval()
    model.generation_config = generation
    model.save_pretrained(str(out))
    extractor = WhisperFeatureExtractor(feature_size=80, sampling_rate=16000)
    WhisperProcessor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(str(out))
    return out
