"""The loss alignment fixes, each against the upstream behaviour it replaces."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers.loss.loss_utils import ForCausalLMLoss

from qwen_train.train.data.layout import IGNORE, SpecialIds, build_row
from qwen_train.train.objective import code_predictor_loss, talker_loss

IDS = SpecialIds(
    tts_pad=10, tts_bos=11, tts_eos=12, codec_pad=2148, codec_bos=2149, codec_eos=2150,
    codec_think=2154, codec_nothink=2155, codec_think_bos=2156, codec_think_eos=2157,
)
VOCAB = 3072


def _row(frames: int = 9, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, 2048, (frames, 16), generator=gen)
    text_ids = [1, 2, 3, 40, 41, 42, 43, 2, 3, 1, 2, 3]  # role(3) + body(4) + tail(5)
    return build_row(text_ids, codes, IDS, None), codes


def _next_input(row) -> torch.Tensor:
    """Inference's rule: the talker's output at p is the code-0 fed back at p+1 (eos after the last frame)."""
    return torch.cat([row.codec_ids[1:], torch.tensor([IDS.codec_eos])])


def _oracle_logits(labels: torch.Tensor, vocab: int) -> torch.Tensor:
    return F.one_hot(labels.clamp(min=0), vocab).float() * 60.0


def test_talker_targets_are_the_next_frame() -> None:
    row, codes = _row()
    scored = row.talker_targets != IGNORE
    assert int(scored.sum()) == codes.shape[0] + 1  # every frame plus eos
    assert torch.equal(row.talker_targets[scored], _next_input(row)[scored])
    assert row.talker_targets[scored][0] == codes[0, 0]  # the bos position predicts frame 0
    assert row.talker_targets[scored][-1] == IDS.codec_eos


def test_talker_loss_is_zero_for_a_perfect_next_frame_predictor_and_not_for_upstream() -> None:
    row, _ = _row()
    logits = _oracle_logits(_next_input(row), VOCAB).unsqueeze(0)
    ours = talker_loss(logits, row.talker_targets.unsqueeze(0))
    assert ours.item() < 1e-3
    # Upstream: labels shifted by the script, then shifted again inside the library's loss,
    # so a model predicting the next frame is scored against the frame two steps ahead.
    script_shifted = torch.cat([row.talker_targets[1:], torch.tensor([IGNORE])]).unsqueeze(0)
    upstream = ForCausalLMLoss(logits, script_shifted, vocab_size=VOCAB)
    assert upstream.item() > 10.0


def test_code_predictor_head_i_scores_group_i_and_trains_the_last_group() -> None:
    _, codes = _row(frames=7)
    logits = _oracle_logits(codes[:, 1:], 2048)  # head i-1 predicts group i
    assert code_predictor_loss(logits, codes).item() < 1e-3
    upstream = ForCausalLMLoss(logits, codes[:, 1:], vocab_size=2048)
    assert upstream.item() > 10.0
    # Corrupt only the last head: ours notices, upstream's shifted loss never looks at it.
    broken = logits.clone()
    broken[:, -1] = _oracle_logits((codes[:, -1] + 1) % 2048, 2048)
    assert code_predictor_loss(broken, codes).item() > 1.0
    assert ForCausalLMLoss(broken, codes[:, 1:], vocab_size=2048).item() == upstream.item()
