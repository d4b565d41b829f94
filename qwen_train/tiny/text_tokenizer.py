"""A small byte-level BPE text tokenizer shaped like Qwen's.

The real model uses Qwen2's 151k-token vocabulary; the tiny model needs the
same *structure* so the real prompt code works: byte-level BPE (å/ä/ö always
encodable), the chat markers as special tokens, "assistant" as one token and
"\\n" as one token, so `<|im_start|>assistant\\n` is 3 tokens and
`<|im_end|>\\n<|im_start|>assistant\\n` is 5, as `Qwen3TTSModel` slices them.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import Qwen2TokenizerFast

SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|tts_pad|>",
    "<|tts_text_bos|>",
    "<|tts_text_eod|>",
)


class TokenIds:
    """The ids the model config must agree with."""

    def __init__(self, tok: Qwen2TokenizerFast) -> None:
        self.im_start = _single_id(tok, "<|im_start|>")
        self.im_end = _single_id(tok, "<|im_end|>")
        self.tts_pad = _single_id(tok, "<|tts_pad|>")
        self.tts_bos = _single_id(tok, "<|tts_text_bos|>")
        self.tts_eos = _single_id(tok, "<|tts_text_eod|>")
        self.assistant = _single_id(tok, "assistant")
        self.vocab_size = len(tok)


def _single_id(tok: Qwen2TokenizerFast, text: str) -> int:
    ids = tok.encode(text, add_special_tokens=False)
    if len(ids) != 1:
        raise RuntimeError(f"tokenizer splits {text!r} into {len(ids)} tokens; it must be one")
    return int(ids[0])


def build_text_tokenizer(corpus: Iterable[str], vocab_size: int = 1024) -> Qwen2TokenizerFast:
    """Train a deterministic byte-level BPE on `corpus` and wrap it as Qwen2TokenizerFast."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(list(corpus), trainer=trainer)
    bpe.add_tokens([AddedToken("assistant", single_word=False, normalized=False)])
    tok = Qwen2TokenizerFast(
        tokenizer_object=bpe,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        additional_special_tokens=list(SPECIAL_TOKENS[1:]),
    )
    check_prompt_shape(tok)
    return tok


def check_prompt_shape(tok: Qwen2TokenizerFast) -> None:
    """Fail early if the chat markers would be sliced wrongly by the model code."""
    head = tok.encode("<|im_start|>assistant\n", add_special_tokens=False)
    tail = tok.encode("<|im_end|>\n<|im_start|>assistant\n", add_special_tokens=False)
    if len(head) != 3 or len(tail) != 5:
        raise RuntimeError(
            f"prompt markers tokenize to {len(head)} and {len(tail)} tokens; the model code needs 3 and 5"
        )
