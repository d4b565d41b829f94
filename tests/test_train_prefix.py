"""Training builds the talker input exactly as voice-clone inference does."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from qwen_train.train.data import BundleData
from qwen_train.train.layout import SpecialIds
from qwen_train.train.objective import embed_inputs, speaker_embeddings


class _Captured(Exception):
    def __init__(self, embeds: torch.Tensor) -> None:
        super().__init__("captured")
        self.embeds = embeds


def _inference_prefix(model, text_ids: torch.Tensor, spk: torch.Tensor) -> torch.Tensor:
    """Run the real generate() up to the point it hands the prompt to the talker."""

    def capture(**kwargs):
        raise _Captured(kwargs["inputs_embeds"])

    original = model.talker.generate
    model.talker.generate = capture
    try:
        model.generate(
            input_ids=[text_ids],
            languages=["auto"],
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
