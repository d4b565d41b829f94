"""The three Swedish corpora as published, mixed in their roles: a bundle that verifies, the same when resumed.

RixVox in KBLab's archives (train), FLEURS's parquet export (eval) and Waxholm
staged as `.wav` beside its labels (benchmark), through `prepare` with the tiny
model's codes. One build runs uninterrupted; the other in bounded windows, the
first stopping inside RixVox's second archive, each later window resuming where
the last stopped. Both fingerprints must be equal.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from qwen_train import exitcodes
from qwen_train.bundle.fingerprint import verify_bundle
from qwen_train.bundle.manifest import read_manifest
from qwen_train.prepare.run import prepare
from qwen_train.prepare.spec import PrepareSpec, SourceSpec, SplitSpec
from tests.conftest import MakeDir
from tests.layouts_fleurs import write_parquet
from tests.layouts_waxholm import make_staged
from tests.prepare_layouts import make_rixvox_published, speak_clips


@pytest.fixture(scope="module")
def corpora(module_dir: MakeDir) -> Path:
    root = module_dir("published")
    clips = speak_clips(root / "clips", per_speaker=2)
    make_rixvox_published(root / "rixvox", clips)
    write_parquet(root / "fleurs", "names", clips)
    make_staged(root / "waxholm", clips, "wav")
    return root


def _spec(root: Path, model: Path, tag: str, max_rows: int | None = None) -> PrepareSpec:
    return PrepareSpec(
        name=f"mix-{tag}", out=str(root / tag / "bundle"), work_dir=str(root / tag / "work"), model=str(model),
        sources=[SourceSpec(kind="rixvox", path=str(root / "rixvox" / "data")),
                 SourceSpec(kind="fleurs", path=str(root / "fleurs"), splits=["validation"]),
                 SourceSpec(kind="waxholm", path=str(root / "waxholm"), role="benchmark")],
        split=SplitSpec(held_out_speakers=1, held_out_utterances=1), batch_size=8, max_rows=max_rows)


def test_mixed_in_their_roles_and_resumed_mid_archive_to_the_same_fingerprint(
    corpora: Path, demo_root: Path
) -> None:
    model = demo_root / "model"
    whole = prepare(_spec(corpora, model, "whole"))
    assert whole.code == exitcodes.COMPLETED, whole.message
    bundle = corpora / "whole" / "bundle"
    assert verify_bundle(bundle) == whole.fingerprint
    rows = read_manifest(bundle)
    assert {r.source: r.role for r in rows} == {"rixvox": "train", "fleurs": "eval", "waxholm": "benchmark"}
    rix = [r for r in rows if r.source == "rixvox"]
    assert all(r.meta["bleu_score"] == 0.8 and "start" in r.meta for r in rix)
    assert any(r.eval_kind == "held_out_speaker" for r in rix) and any(r.split == "train" for r in rix)
    assert all("noise_markers" in r.meta for r in rows if r.source == "waxholm")
    stats = msgspec.json.decode((bundle / "stats.json").read_bytes())
    assert stats["per_source"]["rixvox"]["layout"]["members_without_metadata"] == 1

    windows = 0
    while True:
        outcome = prepare(_spec(corpora, model, "parts", max_rows=9))  # 6 rows in train_0: the first stops in train_1
        windows += 1
        if outcome.code == exitcodes.COMPLETED:
            break
        assert outcome.code == exitcodes.STOPPED and windows < 20, outcome.message
    assert windows > 2 and outcome.fingerprint == whole.fingerprint
