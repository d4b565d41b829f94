"""Corpus rows whose audio lies outside their root are `path_escape`, in every importer, and nothing outside is read.

Each way out is tried on real espeak-ng clips: `../`, an absolute path elsewhere, a symlinked file
pointing out, a symlinked directory pointing out; and links that stay inside the root are fine.
The file outside is real audio that would pass every other check, so a row that escaped would be
accepted (and its audio copied into the work dir) if the rule were not there.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from qwen_train.bundle.paths import PathEscape, resolve_inside
from qwen_train.prepare.spec import PrepareSpec, SourceSpec
from qwen_train.prepare.window import audio_root
from tests.conftest import MakeDir
from tests.prepare_layouts import Clip, iso646, smp_bytes, speak_clips, wav_bytes
from tests.prepare_window import run_whole


@pytest.fixture(scope="module")
def clips(module_dir: MakeDir) -> list[Clip]:
    return speak_clips(module_dir("clips"), per_speaker=1)


def _stored(spec: PrepareSpec) -> int:
    root = audio_root(spec)
    return sum(1 for _ in root.rglob("*.wav")) if root.exists() else 0


def _upstream(root: Path, rows: dict[str, tuple[str, str | None]], text: str) -> Path:
    lines = [json.dumps({"id": uid, "audio": audio, "text": text, "ref_audio": ref, "speaker": "s"},
                        ensure_ascii=False) for uid, (audio, ref) in rows.items()]
    path = root / "train.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_upstream_jsonl_rows_escaping_their_root_are_refused(tmp_path: Path, clips: list[Clip]) -> None:
    root, outside = tmp_path / "corpus", tmp_path / "elsewhere"
    (root / "wavs" / "real").mkdir(parents=True)
    outside.mkdir()
    clip = clips[0]
    shutil.copyfile(clip.path, root / "wavs" / "real" / "a.wav")
    shutil.copyfile(clip.path, outside / "a.wav")
    (root / "wavs" / "out.wav").symlink_to(outside / "a.wav")  # a file pointing out
    (root / "wavs" / "outdir").symlink_to(outside, target_is_directory=True)  # a directory pointing out
    (root / "wavs" / "in.wav").symlink_to(root / "wavs" / "real" / "a.wav")  # a file staying inside
    (root / "wavs" / "indir").symlink_to("real", target_is_directory=True)  # a directory staying inside
    jsonl = _upstream(root, {
        "dotdot": ("../elsewhere/a.wav", None),
        "absolute": (str(outside / "a.wav"), None),
        "linked_file": ("wavs/out.wav", None),
        "linked_dir": ("wavs/outdir/a.wav", None),
        "ref_out": ("wavs/real/a.wav", "../elsewhere/a.wav"),
        "plain": ("wavs/real/a.wav", "wavs/real/a.wav"),
        "absolute_inside": (str(root / "wavs" / "real" / "a.wav"), None),
        "link_inside": ("wavs/in.wav", "wavs/in.wav"),
        "dir_link_inside": ("wavs/indir/a.wav", None),
    }, clip.text)
    entries, spec = run_whole(tmp_path, SourceSpec(kind="upstream_jsonl", path=str(jsonl)))
    reasons = {k: e.reason for k, e in entries.items()}
    assert reasons == {"dotdot": "path_escape", "absolute": "path_escape", "linked_file": "path_escape",
                       "linked_dir": "path_escape", "ref_out": "path_escape", "plain": None,
                       "absolute_inside": None, "link_inside": None, "dir_link_inside": None}
    assert "climbs out" in entries["dotdot"].detail and "with '..'" in entries["dotdot"].detail
    assert "absolute path outside" in entries["absolute"].detail
    assert "symlink" in entries["linked_file"].detail and str(outside / "a.wav") in entries["linked_file"].detail
    assert "symlink" in entries["linked_dir"].detail
    assert _stored(spec) == 1  # the four accepted rows are one clip; nothing from outside was stored


def test_fleurs_names_and_a_symlinked_audio_dir_that_lead_out(tmp_path: Path, clips: list[Clip]) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.copyfile(clips[1].path, outside / "x.wav")
    shutil.copyfile(clips[1].path, outside / "y.wav")

    def layout(root: Path, names: list[str], audio_is_link: bool) -> None:
        lang = root / "data" / "sv_se"
        lang.mkdir(parents=True)
        lines = ["\t".join([str(i), name, clips[1].text, "n", "w", "1", "FEMALE"]) for i, name in enumerate(names)]
        (lang / "test.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        (lang / "audio").mkdir()
        if audio_is_link:
            (lang / "audio" / "test").symlink_to(outside, target_is_directory=True)
        else:
            (lang / "audio" / "test").mkdir()
            shutil.copyfile(clips[1].path, lang / "audio" / "test" / "good.wav")
            (lang / "audio" / "test" / "alias.wav").symlink_to("good.wav")

    layout(tmp_path / "f1", ["../../../../../elsewhere/x.wav", str(outside / "y.wav"), "good.wav", "alias.wav"],
           audio_is_link=False)
    entries, _ = run_whole(tmp_path / "w1", SourceSpec(kind="fleurs", path=str(tmp_path / "f1")))
    assert {k: e.reason for k, e in entries.items()} == {
        "test/x": "path_escape", "test/y": "path_escape", "test/good": None, "test/alias": None}
    layout(tmp_path / "f2", ["x.wav"], audio_is_link=True)
    entries, _ = run_whole(tmp_path / "w2", SourceSpec(kind="fleurs", path=str(tmp_path / "f2")))
    assert entries["test/x"].reason == "path_escape" and "symlink" in entries["test/x"].detail


def test_rixvox_audio_paths_and_shards_that_lead_out(tmp_path: Path, clips: list[Clip]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    root, outside = tmp_path / "rix" / "data", tmp_path / "elsewhere"
    (root / "train").mkdir(parents=True)
    outside.mkdir()
    flac = wav_bytes(clips[2].samples(), fmt="FLAC")
    (outside / "a.flac").write_bytes(flac)
    (root / "train" / "a.flac").write_bytes(flac)

    def rec(obs: int, path: str) -> dict[str, object]:
        return {"dokid": "H1", "anforande_nummer": 1, "observation_nr": obs, "audio": {"bytes": None, "path": path},
                "text": clips[2].text, "speaker": "cia", "intressent_id": "id-cia"}

    pq.write_table(pa.Table.from_pylist([rec(0, "a.flac"), rec(1, "../../../elsewhere/a.flac"),
                                         rec(2, str(outside / "a.flac")), rec(3, str(root / "train" / "a.flac"))]),
                   root / "train" / "0000.parquet")
    pq.write_table(pa.Table.from_pylist([rec(9, "a.flac")]), outside / "evil.parquet")
    (root / "train" / "0001.parquet").symlink_to(outside / "evil.parquet")
    entries, _ = run_whole(tmp_path, SourceSpec(kind="rixvox", path=str(root)))
    assert {k: e.reason for k, e in entries.items()} == {
        "H1-1-0": None, "H1-1-1": "path_escape", "H1-1-2": "path_escape", "H1-1-3": None,
        "train/0001.parquet": "path_escape"}
    assert "H1-1-9" not in entries  # the shard outside was never opened


def test_waxholm_files_and_labels_that_lead_out(tmp_path: Path, clips: list[Clip]) -> None:
    root, outside = tmp_path / "wax", tmp_path / "elsewhere"
    spk = root / "fp2001"
    spk.mkdir(parents=True)
    outside.mkdir()
    body = smp_bytes(clips[3].samples())
    mix = f"TEXT:\n{iso646(clips[3].text)}\n"
    (outside / "x.smp").write_bytes(body)
    (outside / "x.smp.mix").write_text(mix, encoding="latin-1")
    (spk / "fp2001.1.00.smp").write_bytes(body)
    (spk / "fp2001.1.00.smp.mix").write_text(mix, encoding="latin-1")
    (spk / "fp2001.1.01.smp").symlink_to(outside / "x.smp")  # the audio points out
    (spk / "fp2001.1.01.smp.mix").write_text(mix, encoding="latin-1")
    (spk / "fp2001.1.02.smp").write_bytes(body)
    (spk / "fp2001.1.02.smp.mix").symlink_to(outside / "x.smp.mix")  # the label points out
    (spk / "fp2001.1.03.smp").symlink_to("fp2001.1.00.smp")  # stays inside
    (spk / "fp2001.1.03.smp.mix").symlink_to("fp2001.1.00.smp.mix")
    entries, _ = run_whole(tmp_path, SourceSpec(kind="waxholm", path=str(root), role="benchmark"))
    assert {k: e.reason for k, e in entries.items()} == {
        "fp2001.1.00": None, "fp2001.1.01": "path_escape", "fp2001.1.02": "path_escape", "fp2001.1.03": None}


def test_resolve_inside_names_each_way_out(tmp_path: Path) -> None:
    (tmp_path / "root" / "d").mkdir(parents=True)
    (tmp_path / "out").mkdir()
    (tmp_path / "root" / "link").symlink_to(tmp_path / "out", target_is_directory=True)
    root = tmp_path / "root"
    assert resolve_inside(root, "d/../d/x.wav") == (root / "d" / "x.wav").resolve()  # '..' that stays inside
    for named, how in (("../out/x", "with '..'"), (str(tmp_path / "out" / "x"), "absolute path outside"),
                       ("link/x", "through a symlink"), ("d/../../out/x", "with '..'")):
        with pytest.raises(PathEscape, match=how):
            resolve_inside(root, named)
    os.symlink(root, tmp_path / "alias")  # a root reached through a link is its target
    assert resolve_inside(tmp_path / "alias", "d") == (root / "d").resolve()
