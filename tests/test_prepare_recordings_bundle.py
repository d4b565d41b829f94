"""A folder of long recordings to a frozen bundle that verifies, and a prepare killed inside a recording that
resumes to the same fingerprint. Whisper here is the tiny random one, so its slices fall under the default
confidence floor: what reaches the bundle is what the user transcribed (.txt, SRT, VTT)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from qwen_train.bundle.fingerprint import verify_bundle
from qwen_train.bundle.manifest import read_manifest
from qwen_train.prepare import recording_plan
from qwen_train.prepare.journal import read_journal
from qwen_train.prepare.run import Outcome, prepare
from qwen_train.prepare.spec import PrepareSpec, SourceSpec, SplitSpec, encode_prepare_spec, load_prepare_spec
from tests.conftest import REPO, MakeDir, python_env
from tests.layouts_recordings import make_recordings
from tests.prepare_layouts import speak_clips


def one_thread(call: Callable[[], Outcome]) -> Outcome:
    """`call` with torch on one thread: the tiny Whisper's decode ran ten times slower on two threads of a
    busy two-core machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return call()
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def corpus(module_dir: MakeDir) -> Path:
    from qwen_train.gate.tiny_whisper import build_tiny_whisper

    root = module_dir("recordings-bundle")
    make_recordings(root / "rec", speak_clips(root / "clips", per_speaker=4))
    build_tiny_whisper(root / "asr")
    return root


def _spec(root: Path, model: Path, tag: str) -> Path:
    spec = PrepareSpec(name=f"rec-{tag}", out=f"out-{tag}/bundle", work_dir=f"out-{tag}/work", model=str(model),
                       sources=[SourceSpec(kind="recordings", path="rec", name="mine", asr="asr")],
                       split=SplitSpec(held_out_speakers=1, held_out_utterances=1))
    path = root / f"spec-{tag}.json"
    path.write_bytes(encode_prepare_spec(spec))
    return path


@pytest.fixture(scope="module")
def bundled(corpus: Path, demo_root: Path) -> tuple[Path, str]:
    outcome = one_thread(lambda: prepare(load_prepare_spec(_spec(corpus, demo_root / "model", "a"))))
    assert outcome.code == 0 and outcome.fingerprint, outcome.message
    return corpus / "out-a" / "bundle", outcome.fingerprint


def test_the_bundle_verifies_with_each_slice_its_speaker_and_every_reject_its_reason(bundled: tuple[Path, str]) -> None:
    out, fingerprint = bundled
    assert verify_bundle(out) == fingerprint
    rows = read_manifest(out)
    assert {r.speaker_id for r in rows} == {"mine:cia", "mine:dan", "mine:eva"}
    assert all(r.meta["recording"].startswith(r.speaker_id.split(":")[1] + "/") for r in rows)
    assert Counter(str(r.meta["transcript"]) for r in rows) == {"txt": 1, "srt": 2, "vtt": 2}
    assert all(0.5 <= r.duration_s <= 20.0 and r.role == "train" for r in rows)
    assert {r.split for r in rows} == {"train", "eval"}
    rejects = (out / "rejects.jsonl").read_text(encoding="utf-8")
    assert rejects.count('"reason":"low_confidence"') == 8  # the tiny Whisper's 5 + 3 slices of anna and bo
    for reason in ("music", "noise", "long_silence", "overlapping_speech"):
        assert rejects.count(f'"reason":"{reason}"') == 1, reason
    stats = json.loads((out / "stats.json").read_text())["per_source"]["mine"]
    layout = stats["layout"]
    assert (layout["recordings"], layout["slices"], layout["slices_for_asr"]) == (5, 13, 8)
    assert 70 <= layout["audio_s"] <= 76 and 30 <= layout["speech_s"] < layout["audio_s"]
    assert stats["rejected_by_reason"] == {"long_silence": 1, "low_confidence": 8, "music": 1, "noise": 1,
                                           "overlapping_speech": 1}


def test_a_prepare_killed_inside_a_recording_resumes_to_the_same_fingerprint(
        bundled: tuple[Path, str], corpus: Path, demo_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGKILL as soon as anna/talk.wav's plan is written, while Whisper transcribes its first batch: the next
    prepare does not scan the file again, transcribes the batch, and comes to the same journal and bundle.
    (A window stopped after some of a file's rows is test_prepare_recordings'.) The codes of the first
    bundle's work dir are lent to the second: codes are cached by the audio's sha256, so a row with other
    audio would not find them; it spares the tiny tokenizer's minute, not a check."""
    spec = _spec(corpus, demo_root / "model", "b")
    work = corpus / "out-b" / "work"
    env = python_env() | {"OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "qwen_train", "prepare", str(spec), "--run-dir",
                             str(corpus / "run-b"), "--nonce", "n0"], env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not list((work / "recordings" / "mine").glob("*.plan.json")):
        assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
        assert time.monotonic() < deadline, "the first recording was never planned"
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert read_journal(work)[0].rows == 0 and not (corpus / "out-b" / "bundle").exists()
    scanned: list[str] = []
    real = recording_plan.scan_file

    def scan(path: Path, *args: Any) -> Any:
        scanned.append(path.name)
        return real(path, *args)

    monkeypatch.setattr(recording_plan, "scan_file", scan)
    shutil.copytree(corpus / "out-a" / "work" / "codes", work / "codes", dirs_exist_ok=True)
    outcome = one_thread(lambda: prepare(load_prepare_spec(spec)))
    assert outcome.code == 0, outcome.message
    assert "talk.wav" not in scanned and len(scanned) == 4
    assert outcome.fingerprint == bundled[1] == verify_bundle(corpus / "out-b" / "bundle")
    assert read_journal(work)[0].entries == read_journal(corpus / "out-a" / "work")[0].entries
