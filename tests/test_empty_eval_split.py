"""A bundle with no eval rows: refused at build time for language-expansion, trained (eval not available) otherwise.

Before, such a bundle built silently and the trainer died at its first eval (ZeroDivisionError in
evaluate) with nothing saved. Built from the real espeak-ng demo corpus and trained on the tiny model.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import msgspec
import pytest
import torch

from qwen_train import exitcodes
from qwen_train.bundle.manifest import read_manifest, read_splits
from qwen_train.prepare.run import prepare
from qwen_train.prepare.spec import PrepareSpec, SourceSpec, SplitSpec, validate_prepare_spec
from qwen_train.spec import Posture, RunSpec, SpecError, TrainConfig, encode_spec
from qwen_train.status import read_status
from qwen_train.train.checkpointing.checkpoint import list_checkpoints, verify_checkpoint
from qwen_train.train.evaluate import NoEvalRows, evaluate, unavailable_reason
from tests.conftest import REPO, MakeDir, python_env

SPEAKERS = ("astrid", "bengt")
PER_SPEAKER = 4


@pytest.fixture(scope="module")
def corpus(demo_root: Path, module_dir: MakeDir) -> Path:
    """Two demo speakers, four clips each, copied with the corpus's own relative layout."""
    root = module_dir("small") / "corpus"
    lines: list[str] = []
    taken: Counter[str] = Counter()
    for line in (demo_root / "corpus" / "corpus.jsonl").read_bytes().splitlines():
        row = msgspec.json.decode(line)
        if row["speaker"] in SPEAKERS and taken[row["speaker"]] < PER_SPEAKER:
            taken[row["speaker"]] += 1
            for rel in {row["audio"], row["ref_audio"]}:
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(demo_root / "corpus" / rel, root / rel)
            lines.append(line.decode())
    (root / "corpus.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert len(lines) == len(SPEAKERS) * PER_SPEAKER
    return root / "corpus.jsonl"


def _spec(corpus: Path, demo_root: Path, out: Path, split: SplitSpec) -> PrepareSpec:
    return validate_prepare_spec(PrepareSpec(
        name="no-eval", out=str(out), model=str(demo_root / "model"), work_dir=str(out) + ".work",
        sources=[SourceSpec(kind="upstream_jsonl", path=str(corpus), role="train", name="demo")],
        split=split, device="cpu"))


@pytest.fixture(scope="module")
def bundle(corpus: Path, demo_root: Path) -> Path:
    out = corpus.parent.parent / "bundle"
    outcome = prepare(_spec(corpus, demo_root, out, SplitSpec(held_out_speakers=0, held_out_utterances=0)))
    assert outcome.code == exitcodes.COMPLETED, outcome.message
    assert "no eval rows" in outcome.message and "eval as not available" in outcome.message
    return out


def test_the_bundle_builds_with_an_empty_eval_split_and_says_so(bundle: Path) -> None:
    rows = read_manifest(bundle)
    assert len(rows) == len(SPEAKERS) * PER_SPEAKER and {r.split for r in rows} == {"train"}
    assert read_splits(bundle).eval == []


def test_language_expansion_refuses_the_empty_split_before_extracting_codes(corpus: Path, demo_root: Path,
                                                                           tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    spec = _spec(corpus, demo_root, out, SplitSpec(held_out_speakers=0, held_out_utterances=0))
    with pytest.raises(SpecError, match="language-expansion lane needs held-out speakers") as caught:
        prepare(spec, lane="language-expansion")
    assert "0 eval rows" in str(caught.value) and "held_out_speakers" in str(caught.value)
    assert not out.exists() and not list(Path(spec.work_dir or "").rglob("*.npy"))


def test_language_expansion_build_refuses_held_out_utterances_alone(corpus: Path, demo_root: Path,
                                                                  tmp_path: Path) -> None:
    """`bundle build --held-out-speakers 0` keeps one utterance per speaker for eval: not held-out speakers."""
    out = tmp_path / "bundle"
    cmd = [sys.executable, "-m", "qwen_train", "bundle", "build", str(corpus), "--model", str(demo_root / "model"),
           "--out", str(out), "--held-out-speakers", "0", "--lane", "language-expansion"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=python_env(), cwd=REPO, timeout=300)
    assert proc.returncode == exitcodes.USAGE, proc.stderr[-2000:]
    assert "language-expansion lane needs held-out speakers" in proc.stderr
    assert f"({len(SPEAKERS)} eval rows)" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()


def _run(bundle: Path, demo_root: Path, where: Path, lane: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    spec = RunSpec(name=f"noeval-{lane}", lane=lane, model=str(demo_root / "model"), bundle=str(bundle),  # type: ignore[arg-type]
                   posture=Posture(checkpoint_every=2, eval_every=2, keep_last=3),
                   train=TrainConfig(batch_size=2, lr=1e-3, max_steps=4, eval_max_rows=4, deterministic=True))
    (where / "spec.json").write_bytes(encode_spec(spec))
    run_dir = where / "run"
    cmd = [sys.executable, "-m", "qwen_train", "run", str(where / "spec.json"), "--run-dir", str(run_dir),
           "--nonce", "t"]
    return subprocess.run(cmd, capture_output=True, text=True, env=python_env(), cwd=REPO, timeout=600), run_dir


def test_a_run_on_it_trains_checkpoints_and_reports_eval_not_available(bundle: Path, demo_root: Path,
                                                                     tmp_path: Path) -> None:
    proc, run_dir = _run(bundle, demo_root, tmp_path, "single-speaker")
    assert proc.returncode == exitcodes.COMPLETED, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "eval not available" in proc.stderr
    status = read_status(run_dir / "status.json")
    assert (status.state, status.step, status.last_eval) == ("completed", 4, None)
    assert "eval not available" in (status.message or "") and "no eval rows" in (status.message or "")
    assert [e.kind for e in status.events if "eval not available" in e.message] == ["eval"]
    assert [c.name for c in list_checkpoints(run_dir)] == ["step-00000002", "step-00000004"]
    assert verify_checkpoint(list_checkpoints(run_dir)[-1]).step == 4
    report = msgspec.json.decode((run_dir / "report.json").read_bytes())
    assert report["evals"] == [] and report["eval"].startswith("eval not available")


def test_a_language_expansion_run_on_it_is_refused(bundle: Path, demo_root: Path, tmp_path: Path) -> None:
    proc, run_dir = _run(bundle, demo_root, tmp_path, "language-expansion")
    assert proc.returncode == exitcodes.USAGE, proc.stderr[-3000:]
    assert "language-expansion lane needs held-out speakers" in proc.stderr and "Traceback" not in proc.stderr
    status = read_status(run_dir / "status.json")
    assert status.state == "failed" and "held-out speakers" in (status.message or "")
    assert list_checkpoints(run_dir) == []


class _Rows:
    pad_multiple = 0

    def __init__(self, count: int) -> None:
        self.count = count

    def __len__(self) -> int:
        return self.count


def test_evaluate_refuses_no_rows_instead_of_dividing_by_zero() -> None:
    rows = _Rows(0)
    assert unavailable_reason(rows, 64) == "the bundle has no eval rows (no held-out speakers or utterances)"  # type: ignore[arg-type]
    with pytest.raises(NoEvalRows, match="no eval rows"):
        evaluate(torch.nn.Linear(1, 1), rows, 0, 1.0, 64, torch.device("cpu"))  # type: ignore[arg-type]


def test_an_eval_row_bound_of_zero_is_not_available_either() -> None:
    rows = _Rows(3)
    assert unavailable_reason(rows, 0) == "train.eval_max_rows is 0"  # type: ignore[arg-type]
    assert unavailable_reason(rows, 64) is None  # type: ignore[arg-type]
    with pytest.raises(NoEvalRows, match="eval_max_rows is 0"):
        evaluate(torch.nn.Linear(1, 1), rows, 0, 1.0, 0, torch.device("cpu"))  # type: ignore[arg-type]
