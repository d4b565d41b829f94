"""Training builds the talker input exactly as voice-clone inference does."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from qwen_train.train.data.batches import BundleData
from qwen_train.train.data.layout import SpecialIds
from qwen_train.train.objective import embed_inputs, speaker_embeddings


class _Captured(Exception):
    def __init__(self, embeds: torch.Tensor) -> None:
        super().__init__("captured")
        self.embeds = embeds


def _inference_prefix(model, text_ids: torch.Tensor, spk: torch.Tensor, language: str = "auto") -> torch.Tensor:
    """Run the real generate() up to the point it hands the prompt to the talker."""

    def capture(**kwargs):
        raise _Captured(kwargs["inputs_embeds"])

    original = model.talker.generate
    model.talker.generate = capture
    try:
        model.generate(
            input_ids=[text_ids],
            languages=[language],
            voice_clone_prompt={"ref_spk_embedding": [spk], "x_vector_only_mode": [True], "icl_mode": [False],
                                "ref_code": [None]},
            non_streaming_mode=True,
        )
    except _Captured as cap:
        return cap.embeds
    finally:
        model.talker.generate = original
    raise AssertionError("generate() never reached the talker")


def test_training_prefix_equals_inference_prefix(demo_root: Path) -> None:
    from qwen_tts import Qwen3TTSModel

    wrapper = Qwen3TTSModel.from_pretrained(str(demo_root / "model"), dtype=torch.float32)
    model = wrapper.model.eval()
    ids = SpecialIds.from_config(model.config)
    data = BundleData(demo_root / "bundle", wrapper.processor, ids, None, "train")
    batch, mels, rows = data.batch([0])
    assert batch["speaker_index"].tolist() == [data.speaker_index[rows[0].speaker_id]]  # speaker_id travels
    spk = speaker_embeddings(model, mels)
    with torch.no_grad():
        ours = embed_inputs(model, batch, spk)
    prompt = f"<|im_start|>assistant\n{rows[0].text}<|im_end|>\n<|im_start|>assistant\n"
    text_ids = wrapper.processor(text=prompt, return_tensors="pt")["input_ids"]
    theirs = _inference_prefix(model, text_ids, spk[0])
    start = int(batch["cp_mask"][0].nonzero()[0])  # position of codec_bos: the last prompt position
    assert theirs.shape[1] == start + 1
    torch.testing.assert_close(ours[:, : start + 1], theirs, rtol=1e-5, atol=1e-5)


def test_prefix_differs_without_text_projection(demo_root: Path) -> None:
    """Guard the guard: skipping text_projection (the upstream fault) changes the prefix."""
    from qwen_tts import Qwen3TTSModel

    wrapper = Qwen3TTSModel.from_pretrained(str(demo_root / "model"), dtype=torch.float32)
    model = wrapper.model.eval()
    ids = SpecialIds.from_config(model.config)
    data = BundleData(demo_root / "bundle", wrapper.processor, ids, None, "train")
    batch, mels, _ = data.batch([0])
    spk = speaker_embeddings(model, mels)
    with torch.no_grad():
        projected = embed_inputs(model, batch, spk)
        model.talker.text_projection.forward = lambda x: x  # type: ignore[method-assign]
        skipped = embed_inputs(model, batch, spk)
    with pytest.raises(AssertionError):
        torch.testing.assert_close(projected, skipped)


def test_swedish_tag_prefix_equals_generate_with_language_swedish(demo_root: Path) -> None:
    from qwen_tts import Qwen3TTSModel

    from qwen_train.train.language import ensure_language

    wrapper = Qwen3TTSModel.from_pretrained(str(demo_root / "model"), dtype=torch.float32)
    model = wrapper.model.eval()
    known = dict(model.config.talker_config.codec_language_id)
    lang = ensure_language(model, "swedish")
    assert lang is not None and lang not in known.values() and 2048 <= lang < 3072
    assert ensure_language(model, "swedish") == lang  # idempotent: same id on resume/export
    ids = SpecialIds.from_config(model.config)
    data = BundleData(demo_root / "bundle", wrapper.processor, ids, lang, "train")
    batch, mels, rows = data.batch([0])
    assert lang in batch["codec_ids"][0].tolist()
    spk = speaker_embeddings(model, mels)
    with torch.no_grad():
        ours = embed_inputs(model, batch, spk)
    prompt = f"<|im_start|>assistant\n{rows[0].text}<|im_end|>\n<|im_start|>assistant\n"
    text_ids = wrapper.processor(text=prompt, return_tensors="pt")["input_ids"]
    theirs = _inference_prefix(model, text_ids, spk[0], language="swedish")
    start = int(batch["cp_mask"][0].nonzero()[0])
    assert theirs.shape[1] == start + 1
    torch.testing.assert_close(ours[:, : start + 1], theirs, rtol=1e-5, atol=1e-5)
