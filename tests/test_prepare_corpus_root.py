"""A JSONL corpus whose audio lies elsewhere: a declared root (`root` in a prepare source, `bundle build --root`).

Formatting scripts (upstream Qwen3-TTS's, the community's) write absolute paths to audio kept on a
storage disk, far from the JSONL. Laid out here as such a host would be, with real espeak-ng clips:
`storage/sv/wavs/` holds the audio, `storage/lists/train.jsonl` names it by absolute path, and
`elsewhere/` holds audio outside the root that would pass every other check if it were let in.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from qwen_daemon.jobs.kinds.preprocess import PREPROCESS, check_prepare_runnable
from qwen_daemon.protocol import LaunchRequest
from qwen_daemon.protocol.errors import RequestError
from qwen_train import exitcodes
from qwen_train.bundle.fingerprint import verify_bundle
from qwen_train.bundle.manifest import read_manifest
from qwen_train.prepare.spec import PrepareSpec, SourceSpec, encode_prepare_spec, load_prepare_spec
from qwen_train.prepare.window import audio_root
from qwen_train.spec import SpecError
from tests.conftest import REPO, MakeDir, python_env
from tests.prepare_layouts import Clip, speak_clips
from tests.prepare_window import run_whole, window_spec


@pytest.fixture(scope="module")
def clips(module_dir: MakeDir) -> list[Clip]:
    return speak_clips(module_dir("clips"), per_speaker=1)


@pytest.fixture(scope="module")
def host(module_dir: MakeDir, clips: list[Clip]) -> Path:
    """storage/sv/wavs/<speaker>.wav (the audio), storage/lists/ (the JSONL's dir), elsewhere/ (outside)."""
    top = module_dir("host")
    for where in ("storage/sv/wavs", "storage/lists/near", "elsewhere"):
        (top / where).mkdir(parents=True)
    for clip in clips:
        shutil.copyfile(clip.path, top / "storage" / "sv" / "wavs" / f"{clip.speaker}.wav")
    shutil.copyfile(clips[0].path, top / "storage" / "lists" / "near" / "anna.wav")
    shutil.copyfile(clips[1].path, top / "elsewhere" / "bo.wav")
    (top / "storage" / "sv" / "out.wav").symlink_to(top / "elsewhere" / "bo.wav")  # inside by name only
    return top


def write_jsonl(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_absolute_paths_inside_a_declared_root_are_imported_and_the_rest_refused(
    tmp_path: Path, host: Path, clips: list[Clip]
) -> None:
    storage, wavs = host / "storage", host / "storage" / "sv" / "wavs"
    text = {c.speaker: c.text for c in clips}
    jsonl = write_jsonl(host / "storage" / "lists" / f"{tmp_path.name}.jsonl", [
        {"id": "abs", "audio": str(wavs / "bo.wav"), "text": text["bo"], "ref_audio": str(wavs / "bo.wav")},
        {"id": "rel", "audio": "near/anna.wav", "text": text["anna"]},  # relative to the JSONL's dir
        {"id": "up", "audio": "../sv/wavs/cia.wav", "text": text["cia"]},  # climbs, but stays inside the root
        {"id": "rel_to_root", "audio": "sv/wavs/dan.wav", "text": text["dan"]},  # relative to the root: not so
        {"id": "outside", "audio": str(host / "elsewhere" / "bo.wav"), "text": text["bo"]},
        {"id": "ref_outside", "audio": str(wavs / "eva.wav"), "text": text["eva"],
         "ref_audio": str(host / "elsewhere" / "bo.wav")},
        {"id": "link", "audio": str(storage / "sv" / "out.wav"), "text": text["bo"]},
    ])
    entries, spec = run_whole(tmp_path / "declared", SourceSpec(kind="upstream_jsonl", path=str(jsonl),
                                                                root=str(storage)))
    assert {k: e.reason for k, e in entries.items()} == {
        "abs": None, "rel": None, "up": None, "rel_to_root": "missing_audio", "outside": "path_escape",
        "ref_outside": "path_escape", "link": "path_escape"}
    for key in ("outside", "ref_outside", "link"):
        detail = entries[key].detail
        assert f"outside {storage}" in detail and "`root` (prepare spec)" in detail and "`--root`" in detail, detail
    assert "absolute path outside" in entries["outside"].detail
    assert "symlink" in entries["link"].detail
    assert sum(1 for _ in audio_root(spec).rglob("*.wav")) == 3  # the three accepted clips; nothing from outside

    entries, _ = run_whole(tmp_path / "default", SourceSpec(kind="upstream_jsonl", path=str(jsonl)))
    assert {k for k, e in entries.items() if e.reason is None} == {"rel"}  # the default root: the JSONL's dir
    assert f"outside {jsonl.parent}" in entries["abs"].detail and "`--root`" in entries["abs"].detail


def test_a_relative_path_from_a_jsonl_outside_its_root_says_so(tmp_path: Path, host: Path, clips: list[Clip]) -> None:
    jsonl = write_jsonl(tmp_path / "train.jsonl", [
        {"id": "rel", "audio": "x.wav", "text": clips[0].text},
        {"id": "abs", "audio": str(host / "storage" / "sv" / "wavs" / "anna.wav"), "text": clips[0].text}])
    shutil.copyfile(clips[0].path, tmp_path / "x.wav")
    entries, _ = run_whole(tmp_path / "w", SourceSpec(kind="upstream_jsonl", path=str(jsonl),
                                                      root=str(host / "storage")))
    assert entries["abs"].reason is None and entries["rel"].reason == "path_escape"
    assert f"relative to {tmp_path}, which is outside {host / 'storage'}" in entries["rel"].detail


def test_root_in_a_spec_file_resolves_like_path_and_belongs_to_upstream_jsonl_only(tmp_path: Path) -> None:
    spec_dir = tmp_path / "specs"
    spec_dir.mkdir()
    raw = {"name": "r", "out": "out", "model": "model",
           "sources": [{"kind": "upstream_jsonl", "path": "../lists/train.jsonl", "root": "../storage"}]}
    (spec_dir / "p.json").write_text(json.dumps(raw))
    src = load_prepare_spec(spec_dir / "p.json").sources[0]
    assert (src.path, src.root) == (str(tmp_path / "lists" / "train.jsonl"), str(tmp_path / "storage"))
    raw["sources"] = [{"kind": "upstream_jsonl", "path": "/l/train.jsonl"}]
    (spec_dir / "q.json").write_text(json.dumps(raw))
    assert load_prepare_spec(spec_dir / "q.json").sources[0].root is None
    for kind in ("fleurs", "rixvox", "waxholm"):
        with pytest.raises(SpecError, match=r"source '\w+': root applies to upstream_jsonl sources only"):
            window_spec(tmp_path, SourceSpec(kind=kind, path="/c", role="eval", root="/srv"))


def test_a_declared_root_that_is_no_directory_stops_the_source(tmp_path: Path) -> None:
    jsonl = write_jsonl(tmp_path / "train.jsonl", [{"audio": "a.wav", "text": "Hej på dig."}])
    with pytest.raises(FileNotFoundError, match=f"root {tmp_path / 'gone'} is not a directory"):
        run_whole(tmp_path, SourceSpec(kind="upstream_jsonl", path=str(jsonl), root=str(tmp_path / "gone")))


def test_the_daemon_mounts_and_checks_a_declared_root(tmp_path: Path) -> None:
    (tmp_path / "lists").mkdir()
    (tmp_path / "model").mkdir()
    jsonl = write_jsonl(tmp_path / "lists" / "train.jsonl", [])
    spec = PrepareSpec(name="p", out=str(tmp_path / "b" / "p"), model=str(tmp_path / "model"), sources=[
        SourceSpec(kind="upstream_jsonl", path=str(jsonl), root=str(tmp_path / "storage"), name="declared"),
        SourceSpec(kind="upstream_jsonl", path=str(jsonl), name="plain")])
    with pytest.raises(RequestError, match="source declared's root .* does not exist") as refused:
        check_prepare_runnable(spec)
    assert refused.value.status == 422
    (tmp_path / "storage").mkdir()
    mounts = [(str(p), ro) for p, ro, _ in PREPROCESS.job(check_prepare_runnable(spec), "default", "process").paths()]
    assert (str(tmp_path / "storage"), True) in mounts and (str(tmp_path / "lists"), True) in mounts
    inline = json.loads(encode_prepare_spec(spec))
    inline["sources"][0]["root"] = "storage"
    request = msgspec.convert({"kind": "preprocess", "prepare": inline}, LaunchRequest)
    with pytest.raises(RequestError, match=r"prepare.sources\[0\].root 'storage' is a relative path"):
        PREPROCESS.from_request(request)


def test_bundle_build_with_root_through_the_cli(tmp_path: Path, host: Path, clips: list[Clip],
                                                demo_root: Path) -> None:
    """Every clip named by absolute path under storage/: refused without --root, a verified bundle with it."""
    wavs = host / "storage" / "sv" / "wavs"
    jsonl = write_jsonl(host / "storage" / "lists" / f"{tmp_path.name}.jsonl", [
        {"id": c.speaker, "audio": str(wavs / f"{c.speaker}.wav"), "text": c.text, "speaker": c.speaker}
        for c in clips])

    def build(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "qwen_train", "bundle", "build", str(jsonl), "--model", str(demo_root / "model"),
               "--out", str(out), *extra]
        return subprocess.run(cmd, capture_output=True, text=True, env=python_env(), cwd=REPO, timeout=600)

    refused = build(tmp_path / "plain")
    assert refused.returncode == exitcodes.USAGE and "Traceback" not in refused.stderr, refused.stderr[-3000:]
    assert f"path_escape {len(clips)}: e.g. row 'anna'" in refused.stderr and "`--root`" in refused.stderr
    assert not (tmp_path / "plain").exists()
    done = build(tmp_path / "rooted", "--root", str(host / "storage"))
    assert done.returncode == 0, done.stderr[-3000:]
    rows = read_manifest(tmp_path / "rooted")
    assert sorted(r.orig_id for r in rows) == sorted(c.speaker for c in clips)
    assert len(verify_bundle(tmp_path / "rooted")) == 64
    missing = build(tmp_path / "nope", "--root", str(host / "gone"))
    assert missing.returncode == exitcodes.USAGE and f"--root {host / 'gone'} is not a directory" in missing.stderr
