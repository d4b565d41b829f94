"""Governance: one refusal per rule, the audit log, and the lane classifier."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from qwen_daemon.governance.lanes import LaneUnclear, classify
from qwen_daemon.governance.surfaces import Governance, GovernanceRefusal
from qwen_train.bundle.manifest import BundleInfo, Row, Splits, write_json, write_jsonl
from qwen_train.spec import RunSpec
from tests.conftest import python_env


def bundle(root: Path, speakers: list[str], held_out: list[str]) -> Path:
    """A bundle's records, as build writes them (the lane check reads nothing else)."""
    root.mkdir(parents=True)
    rows = []
    for n, speaker in enumerate(speakers * 2):
        split = "eval" if speaker in held_out else "train"
        rows.append(Row(id=f"u{n}", speaker_id=speaker, text="hej", audio="a.wav", codes="c.npy", frames=10,
                        duration_s=1.0, ref_audio="r.wav", source="espeak", role="train", split=split,
                        eval_kind="held_out_speaker" if split == "eval" else None))
    write_jsonl(root / "manifest.jsonl", rows)
    write_json(root / "splits.json", Splits(seed=0, train=[r.id for r in rows if r.split == "train"],
                                            eval=[r.id for r in rows if r.split == "eval"], held_out_speakers=held_out))
    write_json(root / "bundle.json", BundleInfo(format=1, fingerprint="x", files={}, rows=len(rows),
                                                speakers=len(set(speakers)), tokenizer="t", created_at=0.0))
    return root


def spec(tmp: Path, surface: str = "default", lane: str = "benchmark", bundle_dir: Path | None = None) -> RunSpec:
    return msgspec.convert({"name": "r", "lane": lane, "model": str(tmp), "bundle": str(bundle_dir or tmp),
                            "surface": surface}, RunSpec)


@pytest.fixture
def gov(tmp_path: Path) -> Governance:
    return Governance(tmp_path / "surfaces.json", tmp_path / "audit.jsonl")


def refused(gov: Governance, run: RunSpec) -> str:
    with pytest.raises(GovernanceRefusal) as info:
        gov.check_launch(run)
    return info.value.rule


def test_default_surface_is_seeded_and_launches(gov: Governance, tmp_path: Path) -> None:
    assert gov.check_launch(spec(tmp_path)).klass == "mechanism"


@pytest.mark.parametrize("klass", ["provenance", "legacy-readonly", "deprecated"])
def test_never_launched_classes_are_refused_by_their_rule(gov: Governance, tmp_path: Path, klass: str) -> None:
    gov.set_class("story31", klass, "historical", "tester")  # type: ignore[arg-type]
    assert refused(gov, spec(tmp_path, "story31")) == f"surface-{klass}"


def test_unregistered_surface_and_broken_registry(gov: Governance, tmp_path: Path) -> None:
    assert refused(gov, spec(tmp_path, "nowhere")) == "surface-registered"
    gov.path.write_text("{not json")
    assert refused(gov, spec(tmp_path)) == "surfaces-file"


def test_recovery_is_blocked_until_a_passed_gate_unblocks_it(gov: Governance, tmp_path: Path) -> None:
    gov.set_class("fresh", "recovery", "the proof lane", "tester")
    assert refused(gov, spec(tmp_path, "fresh")) == "recovery-blocked"
    failed = tmp_path / "failed.json"
    failed.write_text('{"passed": false, "criteria": {}}')
    with pytest.raises(GovernanceRefusal, match="did not pass") as info:
        gov.set_class("fresh", "recovery", "try", "tester", gate=str(failed))
    assert info.value.rule == "recovery-gate"
    passed = tmp_path / "passed.json"
    passed.write_text('{"passed": true, "criteria": {"eval": true}}')
    gov.set_class("fresh", "recovery", "candidate m7 passed the gate", "tester", gate=str(passed))
    assert gov.check_launch(spec(tmp_path, "fresh")).unblocked_by == str(passed)
    passed.write_text('{"passed": false}')  # the verdict is re-read at every launch
    assert refused(gov, spec(tmp_path, "fresh")) == "recovery-blocked"


def test_language_expansion_needs_held_out_speakers(gov: Governance, tmp_path: Path) -> None:
    good = bundle(tmp_path / "good", ["a", "b", "c"], held_out=["c"])
    assert gov.check_launch(spec(tmp_path, lane="language-expansion", bundle_dir=good))
    none_held = bundle(tmp_path / "none", ["a", "b", "c"], held_out=[])
    assert refused(gov, spec(tmp_path, lane="language-expansion", bundle_dir=none_held)) == "lane-language-expansion"
    single = bundle(tmp_path / "single", ["a"], held_out=[])
    assert refused(gov, spec(tmp_path, lane="language-expansion", bundle_dir=single)) == "lane-language-expansion"
    assert refused(gov, spec(tmp_path, lane="language-expansion", bundle_dir=tmp_path / "missing")) == (
        "lane-language-expansion")


def test_class_changes_are_audited_and_need_a_reason(gov: Governance) -> None:
    with pytest.raises(GovernanceRefusal) as info:
        gov.set_class("lab", "mechanism", "  ", "tester")
    assert info.value.rule == "audit-reason"
    with pytest.raises(GovernanceRefusal) as info:
        gov.set_class("../etc", "mechanism", "x", "tester")
    assert info.value.rule == "surface-name"
    gov.set_class("lab", "mechanism", "new diagnosis lane", "alice (uid 1000, pid 1)")
    gov.set_class("lab", "deprecated", "superseded by lab2", "bob (uid 1001, pid 2)")
    entries = gov.audit()
    assert [(e.surface, e.old_class, e.new_class, e.actor.split()[0]) for e in entries] == [
        ("lab", None, "mechanism", "alice"), ("lab", "mechanism", "deprecated", "bob")]
    assert entries[1].reason == "superseded by lab2" and entries[0].time <= entries[1].time


@pytest.mark.parametrize(("text", "lane"), [
    ("general Swedish support", "language-expansion"),
    ("General Swedish support for the base model", "language-expansion"),
    ("teach it Swedish with many voices", "language-expansion"),
    ("make the model speak Swedish", "language-expansion"),
    ("benchmark the base model on FLEURS", "benchmark"),
    ("adapt to my voice", "single-speaker"),
])
def test_classify(text: str, lane: str) -> None:
    assert classify(text).lane == lane


def test_classify_refuses_what_it_cannot_tell() -> None:
    with pytest.raises(LaneUnclear, match="benchmark"):
        classify("make it better")
    with pytest.raises(LaneUnclear, match="empty"):
        classify("  ")


def test_classify_command() -> None:
    out = subprocess.run([sys.executable, "-m", "qwen_daemon", "classify", "general", "Swedish", "support"],
                         capture_output=True, text=True, env=python_env(), check=True).stdout
    assert out.startswith("language-expansion")
    bad = subprocess.run([sys.executable, "-m", "qwen_daemon", "classify", "hmm"], capture_output=True, text=True,
                         env=python_env(), check=False)
    assert bad.returncode == 2 and "cannot tell the lane" in bad.stderr
