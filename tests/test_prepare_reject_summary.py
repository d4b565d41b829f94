"""When validation leaves nothing, the terminal says why: each reason, its count, one example, the journal's path.

Before, `qwen-train prepare` said "no rows survived validation; see the work dir's journal for the
reasons", and the journal sat in a hidden `.OUT.work/`. A corpus of real espeak-ng clips whose every
row is refused, for four reasons in unequal numbers (one example id carrying a terminal escape), goes
through the real CLI; the daemon reads status.json, so its message must be the same text.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from qwen_train import exitcodes
from qwen_train.prepare.journal import read_journal
from qwen_train.prepare.records import Processed, Reject
from qwen_train.prepare.reject_summary import DETAIL_CHARS, rejects_text
from qwen_train.prepare.select import select
from qwen_train.prepare.spec import SourceSpec, SplitSpec
from qwen_train.spec import SpecError
from qwen_train.status import read_status
from tests.conftest import REPO, MakeDir, python_env
from tests.prepare_layouts import speak_clips
from tests.prepare_window import window_spec

EVIL_ID = "esc\x1b[2J0"  # a JSONL's id is the corpus author's: it must not clear the user's screen


@pytest.fixture(scope="module")
def corpus(module_dir: MakeDir) -> Path:
    """corpus/train.jsonl: path_escape 3, missing_audio 2, bad_metadata 1, decode_error 1; no row survives."""
    top = module_dir("allbad")
    clip = speak_clips(top / "clips", per_speaker=1)[0]
    (top / "corpus").mkdir()
    (top / "elsewhere").mkdir()
    shutil.copyfile(clip.path, top / "elsewhere" / "a.wav")  # good audio, outside the corpus's root
    (top / "corpus" / "garbage.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot a wav" * 20)
    row = {"text": clip.text, "speaker": clip.speaker}
    lines = [json.dumps({"id": uid, "audio": str(top / "elsewhere" / "a.wav"), **row}) for uid in
             (EVIL_ID, "esc1", "esc2")]
    lines += [json.dumps({"id": f"miss{k}", "audio": f"nowhere/m{k}.wav", **row}) for k in range(2)]
    lines.append("{not json")
    lines.append(json.dumps({"id": "garbage", "audio": "garbage.wav", **row}))
    (top / "corpus" / "train.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return top / "corpus" / "train.jsonl"


def said(stderr: str, prefix: str) -> list[str]:
    """The command's message: from its `qwen-train ...:` line to the end (tqdm's bars come before it)."""
    lines = stderr.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(prefix))
    return lines[start:]


def check_reasons(lines: list[str], corpus: Path) -> None:
    """The four reason lines, commonest first, each with its first row and that row's detail."""
    root = corpus.parent
    outside = root.parent / "elsewhere" / "a.wav"
    assert lines[0] == (f"  path_escape 3: e.g. row 'esc\\x1b[2J0' of 'up': line 1: {outside} is an absolute path "
                        f"outside {root}: refused, a corpus stays inside its root; declare another root with the "
                        "source's `root` (prepare spec) or `--root` (qwen-train bundle build)")
    assert lines[1] == "  missing_audio 2: e.g. row 'miss0' of 'up': line 4: nowhere/m0.wav does not exist"
    assert lines[2].startswith("  bad_metadata 1: e.g. row 'line6' of 'up': line 6: ")
    assert lines[3].startswith("  decode_error 1: e.g. row 'garbage' of 'up': ") and len(lines[3]) > 50


def test_prepare_prints_each_reason_an_example_and_the_journal_and_status_says_the_same(
    corpus: Path, tmp_path: Path
) -> None:
    spec = {"name": "allbad", "out": "bundles/allbad", "model": "no-model-needed", "split": {"held_out_speakers": 0},
            "sources": [{"kind": "upstream_jsonl", "path": str(corpus), "name": "up"}]}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "qwen_train", "prepare", str(tmp_path / "spec.json"), "--run-dir",
                           str(run_dir)], capture_output=True, text=True, env=python_env(), cwd=REPO, timeout=300)
    assert proc.returncode == exitcodes.FAILED and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "\x1b" not in proc.stderr
    lines = said(proc.stderr, "qwen-train prepare: ")
    assert lines[0] == "qwen-train prepare: no rows survived validation; rejected 7 row(s):"
    check_reasons(lines[1:5], corpus)
    journal = tmp_path / "bundles" / "allbad.work" / "journal.jsonl"
    assert lines[5:] == [f"every row's reason and detail is in the journal {journal}"]
    assert len(read_journal(journal.parent)[0].entries) == 7
    status = read_status(run_dir / "status.json")  # what the daemon's preprocess job shows
    assert status.state == "failed" and status.message == "\n".join(lines).removeprefix("qwen-train prepare: ")


def test_bundle_build_says_why_the_source_has_no_speakers_the_same_way(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "b"
    proc = subprocess.run([sys.executable, "-m", "qwen_train", "bundle", "build", str(corpus), "--model",
                           str(tmp_path / "m"), "--out", str(out)],
                          capture_output=True, text=True, env=python_env(), cwd=REPO, timeout=300)
    assert proc.returncode == exitcodes.USAGE and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = said(proc.stderr, "qwen-train: ")
    assert lines[0] == ("qwen-train: source 'demo' has 0 speaker(s) after validation (0 row(s) kept); "
                        "rejected 7 row(s):")
    check_reasons([line.replace("'demo'", "'up'") for line in lines[1:5]], corpus)
    assert lines[5] == f"every row's reason and detail is in the journal {tmp_path / '.b.work' / 'journal.jsonl'}"
    assert lines[6].startswith("Holding out 1 speaker(s) would leave none to train on. Fix what rejected its rows "
                               "first. Lower split.held_out_speakers (bundle build: --held-out-speakers;")
    assert not out.exists()


def test_the_summary_counts_ties_in_order_met_and_rows_left_by_a_share(tmp_path: Path) -> None:
    rejects = [Reject("s", "a", 0, "silent", "x" * 1000), Reject("s", "b", 1, "too_short", "0.1 s"),
               Reject("s", "c", 2, "silent", "second")]
    text = rejects_text(rejects, tmp_path / "journal.jsonl", unselected=4).splitlines()
    assert text[0] == "rejected 3 row(s):"
    assert text[1].startswith("  silent 2: e.g. row 'a' of 's': xxx") and text[1].endswith("x...")
    assert len(text[1]) == len("  silent 2: e.g. row 'a' of 's': ") + DETAIL_CHARS
    assert text[2:] == ["  too_short 1: e.g. row 'b' of 's': 0.1 s",
                        "  4 accepted row(s) left out by the source's share",
                        f"every row's reason and detail is in the journal {tmp_path / 'journal.jsonl'}"]
    assert rejects_text([], tmp_path / "j", unselected=0).startswith("the sources held no rows;")


def test_a_source_short_of_speakers_without_rejects_gets_the_split_advice_alone(tmp_path: Path) -> None:
    spec = window_spec(tmp_path, SourceSpec(kind="upstream_jsonl", path="/c/train.jsonl", name="up"),
                       split=SplitSpec(held_out_speakers=1))
    entries = [Processed(source="up", n=k, orig_id=f"r{k}", speaker="solo", text="Hej på dig, hur mår du?",
                         audio_sha=f"{k:064x}", duration_s=2.0, span_s=2.0) for k in range(3)]
    with pytest.raises(SpecError) as err:
        select(spec, entries)
    assert str(err.value) == ("source 'up' has 1 speaker(s) after validation (3 row(s) kept). Holding out 1 "
                              "speaker(s) would leave none to train on. Lower split.held_out_speakers (bundle build: "
                              "--held-out-speakers; 0 for a single-speaker bundle) or add speakers.")
