"""The GPU speed settings change how batches are made, never what is trained.

Length buckets still visit every row once per epoch, deterministically from
the cursor; prefetched batches are the very batches the step would draw, also
across a skip or a rollback; cached x-vectors equal computed ones; CPU
defaults leave every switch off.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest
import torch

from qwen_train.train.data.cursor import Cursor, CursorRejected, Lengths, advance, batch_indices, validate_cursor
from qwen_train.train.data.prefetch import Prefetcher
from qwen_train.train.device.perf import Perf
from qwen_train.train.objective import SpeakerCache, speaker_embeddings

ROWS = 103
LENGTHS = Lengths([(i * 37) % 211 for i in range(ROWS)])


def bucketed(position: int, epoch: int = 0, rank: int = 0, world: int = 1) -> list[int]:
    cursor = Cursor(epoch=epoch, position=position, seed=7, batch_size=4, world_size=world, rows=ROWS, bucket=3)
    return batch_indices(cursor, rank, LENGTHS)


def test_buckets_cover_each_row_once_per_epoch_and_group_similar_lengths() -> None:
    batches = [bucketed(p) for p in range(ROWS // 4)]
    seen = [i for b in batches for i in b]
    assert len(seen) == len(set(seen)) == (ROWS // 4) * 4
    spread = sum(max(LENGTHS.values[b]) - min(LENGTHS.values[b]) for b in map(torch.tensor, batches))
    plain = Cursor(epoch=0, position=0, seed=7, batch_size=4, world_size=1, rows=ROWS)
    unsorted = [batch_indices(msgspec.structs.replace(plain, position=p)) for p in range(ROWS // 4)]
    spread_plain = sum(max(LENGTHS.values[b]) - min(LENGTHS.values[b]) for b in map(torch.tensor, unsorted))
    assert spread < spread_plain / 2
    assert batches == [bucketed(p) for p in range(ROWS // 4)]  # a pure function of the cursor
    assert bucketed(0, epoch=1) != batches[0]


def test_buckets_split_a_global_batch_between_ranks() -> None:
    both = bucketed(3, rank=0, world=2) + bucketed(3, rank=1, world=2)
    assert len(set(both)) == 8


def test_a_changed_bucket_setting_is_refused_on_resume() -> None:
    saved = Cursor(epoch=0, position=1, seed=7, batch_size=4, world_size=1, rows=ROWS, bucket=3)
    with pytest.raises(CursorRejected, match="bucket changed from 3 to 0"):
        validate_cursor(saved, msgspec.structs.replace(saved, bucket=0), "f", "f", "b")
    old = msgspec.json.decode(b'{"epoch":0,"position":1,"seed":7,"batch_size":4,"world_size":1,"rows":9}',
                              type=Cursor)
    assert old.bucket == 0  # checkpoints from before bucketing still decode


class FakeData:
    def __len__(self) -> int:
        return ROWS

    def batch(self, indices: list[int]) -> tuple[dict[str, torch.Tensor], list[torch.Tensor], list[Any]]:
        ids = torch.tensor(indices)
        return {"ids": ids, "double": ids * 2}, [ids.float()], []


def test_prefetched_batches_are_the_drawn_ones_across_skips_and_rollbacks() -> None:
    data = FakeData()
    fetch = Prefetcher(data, depth=4, workers=1, pin=False, rank=0, lengths=LENGTHS)
    cursor = Cursor(epoch=0, position=0, seed=7, batch_size=4, world_size=1, rows=ROWS, bucket=3)
    skip: set[tuple[int, int]] = set()
    drawn = []
    for step in range(40):  # crosses an epoch boundary
        if step == 10:
            skip.add((0, 12))  # the guard marks a batch ahead: the stream has it and must restart
        if step == 20:
            cursor = Cursor(epoch=0, position=5, seed=7, batch_size=4, world_size=1, rows=ROWS, bucket=3)  # rollback
        while (cursor.epoch, cursor.position) in skip:
            cursor = advance(cursor)
        indices = batch_indices(cursor, 0, LENGTHS)
        batch, mels = fetch.get(cursor, indices, skip)
        assert batch["ids"].tolist() == indices and torch.equal(batch["double"], batch["ids"] * 2)
        drawn.append(indices)
        cursor = advance(cursor)
    fetch.close()
    assert fetch.rebuilds == 3  # the start, the new skip, the rollback


def test_cached_speaker_embeddings_equal_computed_ones() -> None:
    from qwen_tts.core.models.configuration_qwen3_tts import Qwen3TTSSpeakerEncoderConfig
    from qwen_tts.core.models.modeling_qwen3_tts import Qwen3TTSSpeakerEncoder

    torch.manual_seed(0)
    config = Qwen3TTSSpeakerEncoderConfig(enc_dim=32, enc_channels=[16, 16, 16, 16, 48], enc_attention_channels=8,
                                          enc_se_channels=8)

    class Holder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.speaker_encoder = Qwen3TTSSpeakerEncoder(config).eval()

        @property
        def device(self) -> torch.device:
            return torch.device("cpu")

    model = Holder()
    mels = [torch.randn(n, 128) for n in (40, 55, 40)]
    cache = SpeakerCache(enabled=True)
    first = cache.embed(model, [mels[0], mels[1], mels[0]], [3, 9, 3])
    again = cache.embed(model, [mels[1], mels[0]], [9, 3])
    plain = speaker_embeddings(model, [mels[0], mels[1], mels[0]])
    assert torch.equal(first, plain)
    assert torch.equal(again, plain[[1, 0]])
    assert len(cache.table) == 2


def test_cpu_defaults_change_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("QWEN_TRAIN_PERF", raising=False)
    assert Perf.resolve(torch.device("cpu")) == Perf()
    gpu = Perf.for_device(torch.device("cuda"))
    assert gpu.fused_optimizer and gpu.compile_layers and gpu.async_checkpoint and gpu.bucket and gpu.prefetch
    assert not gpu.cudnn_attention and Perf().cudnn_attention  # flash on NVIDIA GPUs; CPU runs change nothing
    monkeypatch.setenv("QWEN_TRAIN_PERF", '{"async_checkpoint": true}')
    assert Perf.resolve(torch.device("cpu")) == Perf(async_checkpoint=True)
    monkeypatch.setenv("QWEN_TRAIN_PERF", '{"no_such_switch": 1}')
    with pytest.raises(ValueError, match="no_such_switch"):
        Perf.resolve(torch.device("cpu"))


@pytest.mark.parametrize("multiple", [8, 64])
def test_padding_to_a_multiple_changes_no_loss(demo_root: Path, multiple: int) -> None:
    """pad_multiple only adds masked positions: the losses of a batch are those of the unpadded batch."""
    from qwen_tts import Qwen3TTSModel

    from qwen_train.train.data.batches import BundleData
    from qwen_train.train.data.layout import SpecialIds
    from qwen_train.train.language import ensure_language
    from qwen_train.train.objective import forward_losses

    wrapper = Qwen3TTSModel.from_pretrained(str(demo_root / "model"), dtype=torch.float32)
    model = wrapper.model.eval()
    lang = ensure_language(model, "swedish")
    data = BundleData(demo_root / "bundle", wrapper.processor, SpecialIds.from_config(model.config), lang, "train")
    indices = [0, 3, 7]
    plain, mels, _ = data.batch(indices)
    data.pad_multiple = multiple
    padded, _, _ = data.batch(indices)
    width = padded["text_ids"].shape[1]
    assert width % multiple == 0 and width >= plain["text_ids"].shape[1]
    assert width > plain["text_ids"].shape[1] or plain["text_ids"].shape[1] % multiple == 0
    with torch.no_grad():
        spk = speaker_embeddings(model, mels)
        a = forward_losses(model, plain, spk, 0.3)
        b = forward_losses(model, padded, spk, 0.3)
    for name in ("total", "talker", "code_predictor"):
        assert torch.allclose(getattr(a, name), getattr(b, name), rtol=1e-5, atol=1e-6), name
