"""Long windows: SIGKILL mid-window, a bounded window, then completion; same bundle as one run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import msgspec
import pytest

from qwen_train import exitcodes
from qwen_train.bundle.fingerprint import verify_bundle
from qwen_train.prepare.journal import JOURNAL, read_journal
from qwen_train.prepare.run import prepare
from qwen_train.prepare.spec import PrepareSpec, SourceSpec, encode_prepare_spec, load_prepare_spec
from qwen_train.status import read_status
from tests.conftest import REPO, MakeDir, python_env
from tests.prepare_layouts import make_upstream, speak_clips

REPEAT = 12  # 12 x 12 clips + 3 corrupt lines = 147 rows: long enough to kill mid-window


def _spec(root: Path, model: Path, tag: str) -> Path:
    spec = PrepareSpec(
        name=f"resume-{tag}",
        out=f"out-{tag}/bundle",
        work_dir=f"out-{tag}/work",
        model=str(model),
        sources=[SourceSpec(kind="upstream_jsonl", path="corpus/train.jsonl", name="up")],
        batch_size=8,
    )
    path = root / f"spec-{tag}.json"
    path.write_bytes(encode_prepare_spec(spec))
    return path


def _prepare(spec: Path, run_dir: Path, *extra: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "qwen_train", "prepare", str(spec), "--run-dir", str(run_dir), "--nonce", "n0", *extra]
    return subprocess.Popen(cmd, env=python_env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _journal_lines(work: Path) -> int:
    try:
        return (work / JOURNAL).read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


@pytest.fixture(scope="module")
def corpus(module_dir: MakeDir) -> Path:
    root = module_dir("resume")
    clips = speak_clips(root / "clips", per_speaker=2)
    make_upstream(root / "corpus", clips, repeat=REPEAT)
    return root


def test_sigkill_then_bounded_window_then_done_equals_one_run(corpus: Path, demo_root: Path) -> None:
    model = demo_root / "model"
    total = len((corpus / "corpus" / "train.jsonl").read_bytes().splitlines())
    work = corpus / "out-a" / "work"
    run_dir = corpus / "run-a"

    proc = _prepare(_spec(corpus, model, "a"), run_dir)
    deadline = time.monotonic() + 120
    while _journal_lines(work) < 10:
        assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
        assert time.monotonic() < deadline, "the window never started"
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = read_journal(work)[0].rows
    assert 10 <= killed_at < total, f"kill landed at {killed_at}/{total}: not mid-window"
    assert not (corpus / "out-a" / "bundle").exists()

    bounded = _prepare(_spec(corpus, model, "a"), run_dir, "--max-rows", "20")
    _, err = bounded.communicate(timeout=300)
    assert bounded.returncode == exitcodes.STOPPED, err.decode()[-2000:]
    status = read_status(run_dir / "status.json")
    assert status.state == "stopped" and status.nonce == "n0" and "run the same command again" in (status.message or "")
    assert read_journal(work)[0].rows == killed_at + 20
    assert status.step == killed_at + 20  # the final heartbeat says where the window stopped

    final = _prepare(_spec(corpus, model, "a"), run_dir)
    out, err = final.communicate(timeout=300)
    assert final.returncode == 0, err.decode()[-3000:]
    assert read_status(run_dir / "status.json").state == "completed"

    state, _ = read_journal(work)
    keys = Counter((e.source, e.n) for e in state.entries)
    assert max(keys.values()) == 1, "a row was journaled twice"
    assert sorted(n for _, n in keys) == list(range(total)), "a row was skipped"
    assert state.ended == {"up": total}

    fresh = prepare(load_prepare_spec(_spec(corpus, model, "b")))
    assert fresh.code == 0, fresh.message
    resumed_fp = verify_bundle(corpus / "out-a" / "bundle")
    assert resumed_fp == fresh.fingerprint
    again = prepare(load_prepare_spec(_spec(corpus, model, "a")))
    assert again.code == 0 and again.fingerprint == resumed_fp and "already built" in again.message


def test_resume_under_a_different_spec_is_refused(corpus: Path, demo_root: Path, tmp_path: Path) -> None:
    spec_path = _spec(corpus, demo_root / "model", "c")
    first = _prepare(spec_path, tmp_path / "run", "--max-rows", "5")
    _, err = first.communicate(timeout=300)
    assert first.returncode == exitcodes.STOPPED, err.decode()[-2000:]
    spec = load_prepare_spec(spec_path)
    changed = msgspec.structs.replace(spec, seed=spec.seed + 1)
    spec_path.write_bytes(encode_prepare_spec(changed))
    second = _prepare(spec_path, tmp_path / "run")
    _, err = second.communicate(timeout=300)
    assert second.returncode == exitcodes.FAILED
    assert "different spec" in err.decode()
    assert read_status(tmp_path / "run" / "status.json").state == "failed"


def test_a_work_dir_started_before_a_field_was_added_resumes(corpus: Path, demo_root: Path, tmp_path: Path) -> None:
    """The spec copy of an older version lacks the newer fields; read back with their defaults, it is the same spec."""
    import json

    from qwen_train.prepare.run import SPEC_COPY, identity

    spec = load_prepare_spec(_spec(corpus, demo_root / "model", "old"))
    work = Path(spec.work_dir or "")
    work.mkdir(parents=True)
    older = json.loads(identity(spec))
    for source in older["sources"]:
        for newer in ("root", "min_bleu_score", "max_noise_ratio"):
            source.pop(newer, None)
    (work / SPEC_COPY).write_text(json.dumps(older))
    first = prepare(msgspec.structs.replace(spec, max_rows=3))
    assert first.code == exitcodes.STOPPED, first.message
    changed = msgspec.structs.replace(spec, seed=spec.seed + 1, max_rows=3)
    refused = _prepare_refused(changed)
    assert "different spec" in refused


def _prepare_refused(spec: PrepareSpec) -> str:
    from qwen_train.prepare.run import PrepareError

    with pytest.raises(PrepareError) as err:
        prepare(spec)
    return str(err.value)
