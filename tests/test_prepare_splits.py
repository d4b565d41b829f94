"""Speaker-level splits: deterministic from the seed, and a held-out speaker never reaches train."""

from __future__ import annotations

import random

import pytest

from qwen_train.prepare.records import Processed
from qwen_train.prepare.select import select
from qwen_train.prepare.spec import PrepareSpec, SourceSpec, SplitSpec
from qwen_train.spec import SpecError


def _entries(source: str, speakers: int, seed: int) -> list[Processed]:
    rng = random.Random(seed)
    out: list[Processed] = []
    for s in range(speakers):
        for _ in range(rng.randint(1, 9)):
            n = len(out)
            out.append(Processed(source=source, n=n, orig_id=f"u{n:04d}", speaker=f"spk{s:02d}", text="Hej på dig.",
                                 audio_sha=f"{n:064x}", duration_s=2.0, speech_s=1.5, span_s=1.0))
    return out


def _spec(seed: int, split: SplitSpec, share: float = 1.0) -> PrepareSpec:
    return PrepareSpec(name="s", out="o", model="m", seed=seed, split=split,
                       sources=[SourceSpec(kind="rixvox", path="r", share=share),
                                SourceSpec(kind="fleurs", path="f")])


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("split", [
    SplitSpec(held_out_speakers=1),
    SplitSpec(held_out_speakers=3, held_out_utterances=2),
    SplitSpec(held_out_speakers=0, held_out_speaker_fraction=0.25),
])
def test_no_held_out_speaker_in_train(seed: int, split: SplitSpec) -> None:
    entries = _entries("rixvox", 12, seed) + _entries("fleurs", 4, seed + 100)
    sel = select(_spec(seed, split, share=0.8), entries)
    train = {s.speaker_id for s in sel.rows if s.split == "train"}
    held = {s.speaker_id for s in sel.rows if s.eval_kind == "held_out_speaker"}
    assert set(sel.held_out_speakers) == held
    assert train and not train & held
    want = max(split.held_out_speakers, 3 if split.held_out_speaker_fraction else 0)
    assert sum(sid.startswith("rixvox:") for sid in held) == want
    assert all(s.split == "eval" for s in sel.rows if s.entry.source == "fleurs")
    for s in sel.rows:
        if s.eval_kind == "held_out_utterance":
            assert s.speaker_id in train
    again = select(_spec(seed, split, share=0.8), entries)
    assert [(s.row_id, s.split, s.eval_kind) for s in again.rows] == [
        (s.row_id, s.split, s.eval_kind) for s in sel.rows
    ]


def test_seed_changes_the_held_out_speakers() -> None:
    entries = _entries("rixvox", 20, 0)
    picks = {tuple(select(_spec(seed, SplitSpec(held_out_speakers=2)), entries).held_out_speakers) for seed in range(6)}
    assert len(picks) > 1


def test_too_few_speakers_is_a_clear_error() -> None:
    entries = _entries("rixvox", 1, 0)
    with pytest.raises(SpecError, match="held_out_speakers"):
        select(_spec(0, SplitSpec(held_out_speakers=1)), entries)
