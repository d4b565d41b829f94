"""FLEURS from google/fleurs's parquet export, both layouts: rows named as the TSV reader names them.

Every good row is kept with its speaker, raw transcription and duration, the
export's `validation` becomes `dev`, each corrupt row and shard is refused
with its reason, `splits` treats dev and validation as one split (in the TSV
layout too) and a filter selecting nothing names the files, and a window
resumed mid-shard journals exactly what one uninterrupted window does.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import soundfile as sf

from qwen_train.prepare import fleurs
from qwen_train.prepare.process import stored_wav
from qwen_train.prepare.records import Processed, SourceRow
from qwen_train.prepare.spec import PrepareSpec, SourceSpec
from qwen_train.prepare.splits import SplitSelectsNothing
from qwen_train.prepare.window import audio_root, count_rows
from tests.conftest import MakeDir
from tests.layouts_fleurs import LAYOUTS, Layout, good_rows, shard_name, write_parquet, write_tsv
from tests.prepare_layouts import Clip, make_fleurs, speak_clips
from tests.prepare_window import run_once, window_spec

Corpus = tuple[Path, dict[str, str | None]]


@pytest.fixture(scope="module")
def clips(module_dir: MakeDir) -> list[Clip]:
    return speak_clips(module_dir("clips"), per_speaker=2)


@pytest.fixture(scope="module")
def corpora(module_dir: MakeDir, clips: list[Clip]) -> dict[Layout, Corpus]:
    """Each parquet layout under its own dataset root, with the expected outcome of every row."""
    made: dict[Layout, Corpus] = {}
    for layout in LAYOUTS:
        root = module_dir(f"fleurs-{layout}")
        made[layout] = (root, write_parquet(root, layout, clips))
    return made


@pytest.fixture(scope="module")
def full(module_dir: MakeDir, corpora: dict[Layout, Corpus]) -> dict[Layout, tuple[PrepareSpec, list[Processed]]]:
    """One uninterrupted window over each layout: the journal every other run must reproduce."""
    done: dict[Layout, tuple[PrepareSpec, list[Processed]]] = {}
    for layout, (root, _) in corpora.items():
        spec = window_spec(module_dir(f"work-{layout}"), SourceSpec(kind="fleurs", path=str(root)))
        result, entries = run_once(spec)
        assert result.complete and result.journaled == count_rows(spec) == len(entries)
        done[layout] = (spec, entries)
    return done


def _importer_ids(path: Path, work: Path, splits: list[str] | None) -> list[str]:
    src = SourceSpec(kind="fleurs", path=str(path), splits=splits)
    items = list(fleurs.rows(src, work))
    assert len(items) == fleurs.count(src, work)
    return [i.orig_id for i in items]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_good_row_kept_and_every_bad_row_refused_with_its_reason(
        layout: Layout, corpora: dict[Layout, Corpus], full: dict[Layout, tuple[PrepareSpec, list[Processed]]],
        clips: list[Clip]) -> None:
    _, expect = corpora[layout]
    spec, entries = full[layout]
    assert {e.orig_id: e.reason for e in entries} == expect and len(entries) == len(expect)
    by_id = {e.orig_id: e for e in entries}
    for good in good_rows(clips):
        e = by_id[f"{good.split}/{Path(good.name).stem}"]
        stem = Path(good.name).stem
        assert e.speaker == f"{good.split}-{stem}" and e.text == good.clip.text  # raw: cased and punctuated
        assert e.meta == {"split": good.split, "sentence_id": str(good.sentence_id),
                          "gender": ("male", "female")[good.gender]}
        assert abs(e.duration_s - len(good.clip.samples()) / 16000) < 0.01 and e.rate_in == 16000
        assert sf.info(str(stored_wav(audio_root(spec), e.audio_sha or ""))).samplerate == 24000
    assert [e.meta["split"] for e in entries if e.reason is None] == ["dev"] * 5 + ["test"] * 3  # dev, then test
    assert not any(e.orig_id.startswith("validation") or e.speaker.startswith("validation") for e in entries)
    dev0, dev1 = shard_name(layout, "dev", 0, 2), shard_name(layout, "dev", 1, 2)
    assert f"sv_se/{dev0} row 5: no audio bytes, and gone.wav is not there" in by_id["dev/gone"].detail
    assert f"sv_se/{dev0} row 6: no audio bytes or path" in by_id[f"dev/{Path(dev0).stem}-6"].detail
    assert "absolute path outside" in by_id["dev/out"].detail
    assert "not a readable parquet file" in by_id[f"sv_se/{dev1}"].detail


@pytest.mark.parametrize("where", ["root", "sv_se"])
@pytest.mark.parametrize("spelling", ["dev", "validation"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_dev_and_validation_both_select_the_validation_shards(
        layout: Layout, spelling: str, where: str, corpora: dict[Layout, Corpus], tmp_path: Path) -> None:
    root, expect = corpora[layout]
    path = root if where == "root" else root / "sv_se"
    ids = _importer_ids(path, tmp_path, [spelling])
    broken = str((root / "sv_se" / shard_name(layout, "dev", 1, 2)).relative_to(path))
    assert sorted(ids) == sorted([k for k in expect if k.startswith("dev/")] + [broken])
    assert sorted(_importer_ids(path, tmp_path, ["test", spelling])) == sorted(
        [k.replace("sv_se/", "", where == "sv_se") for k in expect])
    assert _importer_ids(path, tmp_path, ["test", spelling])[:3] == [k for k in expect if k.startswith("test/")]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_filter_selecting_nothing_names_the_shards(layout: Layout, corpora: dict[Layout, Corpus],
                                                     tmp_path: Path) -> None:
    root, _ = corpora[layout]
    with pytest.raises(SplitSelectsNothing) as caught:
        fleurs.count(SourceSpec(kind="fleurs", path=str(root), splits=["train"]), tmp_path)
    for split, k, of in (("dev", 0, 2), ("dev", 1, 2), ("test", 0, 1)):
        assert shard_name(layout, split, k, of) in str(caught.value)
    with pytest.raises(ValueError, match="unknown splits"):
        fleurs.count(SourceSpec(kind="fleurs", path=str(root), splits=["eval"]), tmp_path)


def test_the_tsv_reader_takes_validation_for_dev_and_names_its_tsvs(tmp_path: Path, clips: list[Clip]) -> None:
    expect = make_fleurs(tmp_path / "tsv", clips)
    dev = sorted(k for k in expect if k.startswith("dev"))
    assert sorted(_importer_ids(tmp_path / "tsv", tmp_path / "w", ["validation"])) == dev
    assert sorted(_importer_ids(tmp_path / "tsv", tmp_path / "w", ["dev", "validation"])) == dev
    with pytest.raises(SplitSelectsNothing, match=r"dev\.tsv, test\.tsv"):
        fleurs.count(SourceSpec(kind="fleurs", path=str(tmp_path / "tsv"), splits=["train"]), tmp_path / "w")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_both_downloads_give_a_recording_the_same_id_speaker_text_and_meta(
        layout: Layout, corpora: dict[Layout, Corpus], tmp_path: Path, clips: list[Clip]) -> None:
    write_tsv(tmp_path / "tsv", clips)

    def described(path: Path) -> dict[str, tuple[str, str, object]]:
        items = fleurs.rows(SourceSpec(kind="fleurs", path=str(path)), tmp_path / "w")
        return {i.orig_id: (i.speaker, i.text, i.meta) for i in items if isinstance(i, SourceRow)}

    from_tsv, from_parquet = described(tmp_path / "tsv"), described(corpora[layout][0])
    assert len(from_tsv) == len(good_rows(clips))
    assert set(from_parquet) - set(from_tsv) == {"dev/noise"}  # its bytes are refused later, by the decoder
    assert {k: v for k, v in from_parquet.items() if k in from_tsv} == from_tsv


@pytest.mark.parametrize("layout", LAYOUTS)
def test_windows_resumed_mid_shard_journal_what_one_window_does(
        layout: Layout, corpora: dict[Layout, Corpus], full: dict[Layout, tuple[PrepareSpec, list[Processed]]],
        tmp_path: Path) -> None:
    root, _ = corpora[layout]
    spec = window_spec(tmp_path, SourceSpec(kind="fleurs", path=str(root)), max_rows=3)
    sizes: list[int] = []
    while True:
        result, entries = run_once(spec)
        sizes.append(result.rows_this_window)
        if result.complete:
            break
        assert result.stop_reason == "max_rows=3 reached" and len(sizes) < 10
    assert sizes[:4] == [3, 3, 3, 3]  # starts at rows 3 and 6 fall inside the first validation shard
    assert entries == full[layout][1]

