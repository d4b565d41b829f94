"""KBLab/rixvox as KBLab serves it: metadata parquet joined to tar.gz archives, split words in file names."""

from __future__ import annotations

import shutil
import tarfile
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import pytest

from qwen_train.prepare import rixvox_archives
from qwen_train.prepare.select import select
from qwen_train.prepare.spec import SourceSpec, SplitSpec
from qwen_train.prepare.splits import SplitSelectsNothing
from qwen_train.prepare.window import count_rows
from qwen_train.spec import SpecError
from tests.conftest import MakeDir
from tests.prepare_layouts import Clip, make_rixvox, make_rixvox_published, speak_clips
from tests.prepare_window import run_once, window_spec


@pytest.fixture(scope="module")
def clips(module_dir: MakeDir) -> list[Clip]:
    return speak_clips(module_dir("clips"), per_speaker=2)


@pytest.fixture(scope="module")
def published(module_dir: MakeDir, clips: list[Clip]) -> tuple[Path, dict[str, str | None]]:
    root = module_dir("rixvox")
    return root, make_rixvox_published(root, clips)


def _metadata(root: Path, split: str) -> dict[str, dict[str, Any]]:
    import pyarrow.parquet as pq

    rows = pq.read_table(root / "data" / f"{split}_metadata.parquet").to_pylist()
    return {str(r["filename"]).removesuffix(".wav"): r for r in rows}


def test_every_row_joined_by_filename_with_the_publishers_speaker_text_and_duration(
    tmp_path: Path, published: tuple[Path, dict[str, str | None]]
) -> None:
    root, expect = published
    spec = window_spec(tmp_path, SourceSpec(kind="rixvox", path=str(root / "data")))
    assert count_rows(spec) == len(expect)  # the metadata's rows: the member no row names is not one
    entries = {e.orig_id: e for e in run_once(spec)[1]}
    assert {k: e.reason for k, e in entries.items()} == expect
    meta = {**_metadata(root, "train"), **_metadata(root, "dev")}
    for orig_id, e in entries.items():
        if e.reason is not None:
            assert e.detail
            continue
        rec = meta[orig_id]
        assert e.speaker == (rec["intressent_id"] or rec["speaker"])
        assert e.text == rec["text"] and e.rate_in == 16000
        assert abs(e.duration_s - rec["duration"]) < 0.01
        assert (e.meta["start"], e.meta["end"], e.meta["bleu_score"]) == (rec["start"], rec["end"], rec["bleu_score"])
    named = [e for e in entries.values() if e.reason is None and e.speaker.endswith(" Ek")]
    assert named and all(e.meta["speaker_from_id"] is False for e in named)  # bo: no person id, the name stands
    missing = next(e for e in entries.values() if e.reason == "missing_audio")
    assert "train/train_0.tar.gz, train/train_1.tar.gz" in missing.detail and "not extracted" in missing.detail
    assert "0.120" in next(e.detail for e in entries.values() if e.reason == "low_alignment")
    dev = [e for e in entries.values() if e.orig_id.startswith("GR01DEV/")]
    assert len(dev) == 2 and all(e.reason is None and e.meta["split"] == "dev" for e in dev)  # extracted in place
    notes = rixvox_archives.notes(spec.sources[0], Path(spec.work_dir or ""))
    assert notes["archives"] == 2 and notes["members_without_metadata"] == 1 and notes["damaged_archives"] == 0


def test_bleu_floor_is_the_specs(tmp_path: Path, published: tuple[Path, dict[str, str | None]]) -> None:
    root, expect = published
    source = SourceSpec(kind="rixvox", path=str(root / "data"), min_bleu_score=0.0, splits=["train"])
    spec = window_spec(tmp_path, source)
    reasons = {e.orig_id: e.reason for e in run_once(spec)[1]}
    low = next(k for k, v in expect.items() if v == "low_alignment")
    assert reasons[low] is None
    with pytest.raises(SpecError, match="min_bleu_score applies to rixvox"):
        window_spec(tmp_path, SourceSpec(kind="fleurs", path=str(root), min_bleu_score=0.3))
    with pytest.raises(SpecError, match="waxholm has no published splits"):
        window_spec(tmp_path, SourceSpec(kind="waxholm", path=str(root), role="benchmark", splits=["train"]))


def test_splits_match_file_names_and_an_empty_selection_names_the_files(
    tmp_path: Path, published: tuple[Path, dict[str, str | None]], clips: list[Clip]
) -> None:
    root, _ = published
    repo_root = window_spec(tmp_path / "r", SourceSpec(kind="rixvox", path=str(root), splits=["dev"]))  # not data/
    dev = run_once(window_spec(tmp_path / "dev", SourceSpec(kind="rixvox", path=str(root / "data"), splits=["dev"])))[1]
    assert count_rows(repo_root) == len(dev) == 2
    assert sorted(e.orig_id.split("/")[0] for e in dev) == ["GR01DEV", "GR01DEV"]
    with pytest.raises(SplitSelectsNothing, match=r"train_metadata\.parquet.*dev_metadata\.parquet|dev_metadata"):
        count_rows(window_spec(tmp_path / "x", SourceSpec(kind="rixvox", path=str(root / "data"), splits=["test"])))
    pushed = tmp_path / "pushed"
    make_rixvox(pushed, clips)  # data/train/0000.parquet -> data/train-00000-of-00001.parquet, as a Hub push names it
    (pushed / "data" / "train" / "0000.parquet").rename(pushed / "data" / "train-00000-of-00001.parquet")
    shutil.rmtree(pushed / "data" / "train")
    source = SourceSpec(kind="rixvox", path=str(pushed / "data"), splits=["train"])
    rows = run_once(window_spec(tmp_path / "p", source))[1]
    assert sum(e.reason is None for e in rows) == 12


def test_a_resumed_window_skips_taken_archives_unopened_and_continues_inside_the_one_it_stopped_in(
    tmp_path: Path, published: tuple[Path, dict[str, str | None]], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, _ = published
    source = SourceSpec(kind="rixvox", path=str(root / "data"), splits=["train"])
    whole = run_once(window_spec(tmp_path / "whole", source))[1]
    opened: list[str] = []
    real_open = tarfile.open

    def counting(*args: Any, **kwargs: Any) -> tarfile.TarFile:
        opened.append(Path(kwargs["fileobj"].name).name)
        return real_open(*args, **kwargs)

    monkeypatch.setattr(tarfile, "open", counting)
    first = run_once(window_spec(tmp_path / "parts", source, max_rows=9))[1]  # 6 rows in train_0: stop in train_1
    assert opened == ["train_0.tar.gz", "train_1.tar.gz"]
    opened.clear()
    rest = run_once(window_spec(tmp_path / "parts", source))[1]
    assert opened == ["train_1.tar.gz"]  # train_0 counted from its listing, never decompressed again
    assert len(first) == 9 and [msgspec.to_builtins(e) for e in rest] == [msgspec.to_builtins(e) for e in whole]


def test_a_source_emptied_by_rejects_says_why_before_any_split_advice(tmp_path: Path, clips: list[Clip]) -> None:
    root = tmp_path / "rix"
    make_rixvox_published(root, clips)
    for archive in (root / "data" / "train").glob("*.tar.gz"):
        archive.unlink()  # metadata downloaded, archives not
    spec = window_spec(tmp_path, SourceSpec(kind="rixvox", path=str(root / "data"), splits=["train"]),
                 split=SplitSpec(held_out_speakers=1))
    entries = run_once(spec)[1]
    assert Counter(e.reason for e in entries) == {"missing_audio": 13, "bad_metadata": 1, "low_alignment": 1}
    with pytest.raises(SpecError) as err:
        select(spec, entries)
    message = str(err.value)
    assert message.index("missing_audio 13") < message.index("Lower split.held_out_speakers")
    assert "rejected 15" in message and "bad_metadata 1" in message


def test_a_cut_short_archive_a_fifo_and_a_corrupt_metadata_file_are_named_not_hung_on(
    tmp_path: Path, clips: list[Clip]
) -> None:
    import os

    root = tmp_path / "rix"
    make_rixvox_published(root, clips)
    data = root / "data"
    whole = (data / "train" / "train_1.tar.gz").read_bytes()
    (data / "train" / "train_1.tar.gz").write_bytes(whole[: len(whole) // 2])  # a download cut off halfway
    os.mkfifo(data / "train" / "train_2.tar.gz")
    (data / "test_metadata.parquet").write_bytes(b"PAR1 not parquet")
    spec = window_spec(tmp_path, SourceSpec(kind="rixvox", path=str(data)))
    entries = run_once(spec)[1]
    assert len(entries) == count_rows(spec) == 18  # 15 train, 2 dev, 1 for the unreadable test metadata
    by_reason = Counter(e.reason for e in entries)
    assert by_reason[None] >= 8 and by_reason["bad_metadata"] == 2  # the unreadable file, and the speakerless row
    missing = [e for e in entries if e.reason == "missing_audio"]
    assert missing and all("train_1.tar.gz could not be read past" in e.detail for e in missing)
    assert all("train_2.tar.gz" in e.detail and "not a regular file" in e.detail for e in missing)
    assert next(e for e in entries if e.orig_id == "test_metadata.parquet").detail.startswith("test_metadata.parquet")
    notes = rixvox_archives.notes(spec.sources[0], Path(spec.work_dir or ""))
    assert notes["damaged_archives"] == 2 and notes["archives"] == 3
