"""Files the trainer and prepare read from places another party can write: special, linked, oversized, escaping.

Each is refused with an error that names the file, at once (a FIFO opened the plain way would block
the reader until a writer came, /dev/zero would never end): bundle records, the files a manifest row
names, checkpoint files, and corpus manifests. The last tests run the real CLI on such inputs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import msgspec
import numpy as np
import pytest
import torch

from qwen_train import exitcodes
from qwen_train.bundle.fingerprint import verify_bundle
from qwen_train.bundle.manifest import (
    BUNDLE_JSON,
    LIMITS,
    MANIFEST,
    SPK_ID_MAP,
    SPLITS,
    BundleError,
    read_bundle_info,
    read_manifest,
    read_spk_id_map,
    read_splits,
)
from qwen_train.bundle.rowfiles import CODES_LIMIT, check_rows, read_codes, read_wave
from qwen_train.checkpoint_files import META_FILE, META_LIMIT, STATE_FILE, CheckpointError, Cursor, list_checkpoints
from qwen_train.corpus.espeak import CorpusError, read_corpus
from qwen_train.prepare.journal import JOURNAL, Journal, read_journal
from qwen_train.prepare.spec import PrepareSpec, SourceSpec, encode_prepare_spec, validate_prepare_spec
from qwen_train.prepare.window import count_rows, run_window
from qwen_train.safe_read import UnsafeFile
from qwen_train.spec import RunSpec, TrainConfig, encode_spec
from qwen_train.status import EvalResult, Losses, read_status
from qwen_train.train.checkpointing.checkpoint import load_state, read_meta, save_checkpoint, verify_checkpoint
from qwen_train.train.checkpointing.losslog import LOSSES_FILE, truncate_losses
from tests.conftest import REPO, python_env
from tests.prepare_layouts import smp_bytes

pytestmark = pytest.mark.timeout(120)  # a reader that blocked on a FIFO fails here instead of hanging the suite

RECORDS: dict[str, Callable[[Path], object]] = {
    BUNDLE_JSON: read_bundle_info, MANIFEST: read_manifest, SPK_ID_MAP: read_spk_id_map, SPLITS: read_splits}


def writable_copy(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    for p in [dest, *dest.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    return dest


def make_hostile(path: Path, kind: str, elsewhere: Path, limit: int) -> None:
    """Turn `path` into a FIFO, a symlink (to an intact copy elsewhere), a device link, or a file past `limit`."""
    shutil.copyfile(path, elsewhere)
    path.unlink()
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "symlink":
        path.symlink_to(elsewhere)
    elif kind == "device":
        path.symlink_to("/dev/zero")
    else:
        with path.open("wb") as handle:
            handle.truncate(limit + 1)  # sparse: instant, and over the bound by one byte


@pytest.fixture
def bundle(demo_root: Path, tmp_path: Path) -> Path:
    return writable_copy(demo_root / "bundle", tmp_path / "bundle")


@pytest.mark.parametrize("name", sorted(RECORDS))
@pytest.mark.parametrize("kind", ["fifo", "symlink", "device", "oversized"])
def test_bundle_records_refuse_special_linked_and_oversized_files(bundle: Path, tmp_path: Path, name: str,
                                                                  kind: str) -> None:
    RECORDS[name](bundle)  # intact, it reads
    make_hostile(bundle / name, kind, tmp_path / "elsewhere", LIMITS[name])
    expected = {"fifo": "a FIFO", "symlink": "a symlink", "device": "a symlink", "oversized": "-byte bound"}[kind]
    with pytest.raises(BundleError, match=expected) as caught:
        RECORDS[name](bundle)
    assert str(bundle / name) in str(caught.value)
    if name == BUNDLE_JSON:
        with pytest.raises(BundleError, match=expected):
            verify_bundle(bundle)


def test_row_files_refuse_fifos_devices_oversize_pickles_and_escapes(bundle: Path, tmp_path: Path) -> None:
    row = read_manifest(bundle)[0]
    assert read_codes(bundle, row.codes).ndim == 2 and read_wave(bundle, row.ref_audio)[1] == 24000
    codes = bundle / row.codes
    make_hostile(codes, "fifo", tmp_path / "a.npy", CODES_LIMIT)
    with pytest.raises(BundleError, match="a FIFO"):
        read_codes(bundle, row.codes)
    codes.unlink()
    with codes.open("wb") as handle:
        handle.truncate(CODES_LIMIT + 1)
    with pytest.raises(BundleError, match="-byte bound"):
        read_codes(bundle, row.codes)
    np.save(codes, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(BundleError, match="not a readable .npy"):
        read_codes(bundle, row.codes)
    codes.unlink()
    codes.symlink_to("/dev/zero")
    with pytest.raises(BundleError, match="outside"):
        read_codes(bundle, row.codes)
    anchor = bundle / row.ref_audio
    make_hostile(anchor, "fifo", tmp_path / "ref.wav", 1)
    with pytest.raises(BundleError, match="reference audio .*(a FIFO)"):
        read_wave(bundle, row.ref_audio, "reference audio")
    for bad in ("/etc/passwd", "../outside.npy", "codes/../../outside.npy", ""):
        with pytest.raises(BundleError, match="not a path inside the bundle"):
            check_rows(bundle, [msgspec.structs.replace(row, codes=bad)])


def _checkpoint(run_dir: Path) -> Path:
    cursor = Cursor(epoch=0, position=1, seed=0, batch_size=2, world_size=1, rows=8)
    return save_checkpoint(run_dir, 3, {"model": {"w": torch.ones(2)}},
                           {"cursor": cursor, "spec": "{}", "bundle_fingerprint": "f"})


@pytest.mark.parametrize("kind", ["fifo", "symlink", "oversized"])
def test_checkpoint_meta_refuses_special_linked_and_oversized_files(tmp_path: Path, kind: str) -> None:
    ckpt = _checkpoint(tmp_path / "run")
    assert verify_checkpoint(ckpt).step == 3
    make_hostile(ckpt / META_FILE, kind, tmp_path / "meta.json", META_LIMIT)
    expected = {"fifo": "a FIFO", "symlink": "a symlink", "oversized": "-byte bound"}[kind]
    for reader in (read_meta, verify_checkpoint):
        with pytest.raises(CheckpointError, match=expected) as caught:
            reader(ckpt)
        assert str(ckpt) in str(caught.value)


@pytest.mark.parametrize("kind", ["fifo", "symlink", "device"])
def test_checkpoint_state_must_be_a_regular_file_before_it_is_hashed_or_loaded(tmp_path: Path, kind: str) -> None:
    ckpt = _checkpoint(tmp_path / "run")
    assert torch.equal(load_state(ckpt)["model"]["w"], torch.ones(2))
    make_hostile(ckpt / STATE_FILE, kind, tmp_path / "state.pt", 1)
    expected = "not a regular file" if kind == "fifo" else "a symlink"
    for reader in (verify_checkpoint, load_state):
        with pytest.raises(CheckpointError, match=expected):
            reader(ckpt)


class _RunsCode:
    """Unpickles into a call: what a state.pt from an untrusted run dir could carry."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.mkdir, (str(self.marker),))


def test_a_checkpoint_state_that_would_run_code_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    ckpt = _checkpoint(tmp_path / "run")
    marker = tmp_path / "ran"
    torch.save({"model": {"w": torch.ones(2)}, "payload": _RunsCode(marker)}, ckpt / STATE_FILE)
    refused = "holds more than tensors and plain values.*move step-00000003 out of checkpoints/"
    with pytest.raises(CheckpointError, match=refused):
        load_state(ckpt)
    assert not marker.exists()


def test_an_older_checkpoints_numpy_rng_state_and_eval_records_still_load(tmp_path: Path) -> None:
    """Checkpoints written before the state held only plain values: NumPy's own ndarray and the status records,
    allowed by name, nothing more."""
    ckpt = _checkpoint(tmp_path / "run")
    state = np.random.get_state()
    evals = [EvalResult(step=2, losses=Losses(1.0, 0.5, 0.5), rows=4, per_speaker={"a": Losses(1.0, 0.5, 0.5)})]
    torch.save({"model": {"w": torch.ones(2)}, "rng": [{"numpy": state}], "evals": evals}, ckpt / STATE_FILE)
    loaded = load_state(ckpt)
    numpy_state = loaded["rng"][0]["numpy"]
    assert numpy_state[0] == state[0] and np.array_equal(numpy_state[1], state[1]) and numpy_state[2:] == state[2:]
    assert loaded["evals"] == evals


def test_checkpoint_names_and_dirs_that_lead_out_are_refused(tmp_path: Path) -> None:
    ckpt = _checkpoint(tmp_path / "run")
    meta = read_meta(ckpt)
    outside = tmp_path / "x"
    outside.write_bytes(b"x")
    entry = msgspec.structs.replace(meta.files[STATE_FILE], size=1)
    (ckpt / META_FILE).write_bytes(msgspec.json.encode(msgspec.structs.replace(meta, files={"../../x": entry})))
    with pytest.raises(CheckpointError, match="not a file name inside it"):
        verify_checkpoint(ckpt)
    other = _checkpoint(tmp_path / "other")
    (tmp_path / "run" / "checkpoints" / "step-00000009").symlink_to(other, target_is_directory=True)
    assert [c.name for c in list_checkpoints(tmp_path / "run")] == [ckpt.name]  # the link is not a checkpoint


@pytest.mark.parametrize("kind", ["fifo", "symlink"])
def test_run_and_work_dir_logs_read_back_on_resume_are_refused_by_name(tmp_path: Path, kind: str) -> None:
    """The loss log (cut back on resume) and prepare's journal: neither may block the resume or be followed."""
    (tmp_path / "run").mkdir()
    log = tmp_path / "run" / LOSSES_FILE
    log.write_bytes(b'{"step": 1, "total": 1.0, "talker": 1.0, "code_predictor": 1.0}\n')
    truncate_losses(tmp_path / "run", 1)
    make_hostile(log, kind, tmp_path / "losses.copy", 1)
    with pytest.raises(CheckpointError, match="a FIFO" if kind == "fifo" else "a symlink") as caught:
        truncate_losses(tmp_path / "run", 0)
    assert str(log) in str(caught.value)
    (tmp_path / "work").mkdir()
    journal = tmp_path / "work" / JOURNAL
    journal.write_bytes(b"")
    make_hostile(journal, kind, tmp_path / "journal.copy", 1)
    with pytest.raises(UnsafeFile, match=str(journal)):
        read_journal(tmp_path / "work")


def _window(tmp: Path, source: SourceSpec) -> dict[str, tuple[str | None, str]]:
    spec = validate_prepare_spec(PrepareSpec(name="t", out=str(tmp / "out"), model="unused", sources=[source],
                                             work_dir=str(tmp / "work")))
    journal = Journal(tmp / "work")
    assert run_window(spec, journal, count_rows(spec)).complete
    journal.close()
    return {e.orig_id: (e.reason, e.detail) for e in journal.state.entries}


def test_corpus_manifests_that_are_fifos_are_refused_by_name(tmp_path: Path, demo_root: Path) -> None:
    jsonl = tmp_path / "up" / "train.jsonl"
    jsonl.parent.mkdir()
    os.mkfifo(jsonl)
    with pytest.raises(UnsafeFile, match="a FIFO") as caught:
        count_rows(validate_prepare_spec(PrepareSpec(name="t", out=str(tmp_path / "o"), model="m", sources=[
            SourceSpec(kind="upstream_jsonl", path=str(jsonl))])))
    assert str(jsonl) in str(caught.value)
    tsv = tmp_path / "fleurs" / "data" / "sv_se" / "dev.tsv"
    tsv.parent.mkdir(parents=True)
    os.mkfifo(tsv)
    with pytest.raises(UnsafeFile, match=f"{tsv}.*(a FIFO)"):
        count_rows(validate_prepare_spec(PrepareSpec(name="t", out=str(tmp_path / "o"), model="m", sources=[
            SourceSpec(kind="fleurs", path=str(tmp_path / "fleurs"))])))
    corpus = tmp_path / "corpus.jsonl"
    os.mkfifo(corpus)
    with pytest.raises(CorpusError, match="a FIFO"):
        read_corpus(corpus)
    assert len(read_corpus(demo_root / "corpus" / "corpus.jsonl")) > 0


def test_corpus_rows_whose_audio_or_label_is_a_fifo_are_rejected_by_name(tmp_path: Path, demo_root: Path) -> None:
    up = tmp_path / "up"
    up.mkdir()
    os.mkfifo(up / "a.wav")
    (up / "train.jsonl").write_text('{"id": "a", "audio": "a.wav", "text": "Hej på dig du.", "speaker": "s"}\n')
    assert _window(tmp_path / "w1", SourceSpec(kind="upstream_jsonl", path=str(up / "train.jsonl")))["a"] == (
        "decode_error", "audio file a.wav is not a regular file (a FIFO): refused")
    wax = tmp_path / "wax" / "fp2001"
    wax.mkdir(parents=True)
    (wax / "fp2001.1.00.smp").write_bytes(smp_bytes(np.zeros(16000, dtype=np.int16)))
    os.mkfifo(wax / "fp2001.1.00.smp.mix")
    os.mkfifo(wax / "fp2001.1.01.smp")
    (wax / "fp2001.1.01.smp.mix").write_text("TEXT:\nhej p} dig\n", encoding="latin-1")
    rows = _window(tmp_path / "w2", SourceSpec(kind="waxholm", path=str(tmp_path / "wax"), role="benchmark"))
    assert rows["fp2001.1.00"][0] == "bad_metadata" and "a FIFO" in rows["fp2001.1.00"][1]
    assert rows["fp2001.1.01"][0] == "decode_error" and "a FIFO" in rows["fp2001.1.01"][1]
    shard = tmp_path / "rix" / "data" / "train"
    shard.mkdir(parents=True)
    os.mkfifo(shard / "0000.parquet")
    rows = _window(tmp_path / "w3", SourceSpec(kind="rixvox", path=str(tmp_path / "rix" / "data")))
    assert rows == {"train/0000.parquet": ("bad_metadata", "train/0000.parquet: 0000.parquet is not a regular "
                                           "file: refused")}


def test_prepare_cli_on_a_fifo_manifest_fails_naming_it(tmp_path: Path) -> None:
    jsonl = tmp_path / "train.jsonl"
    os.mkfifo(jsonl)
    spec = PrepareSpec(name="fifo", out=str(tmp_path / "b"), model=str(tmp_path / "m"),
                       sources=[SourceSpec(kind="upstream_jsonl", path=str(jsonl))])
    (tmp_path / "spec.json").write_bytes(encode_prepare_spec(spec))
    proc = subprocess.run([sys.executable, "-m", "qwen_train", "prepare", str(tmp_path / "spec.json"), "--run-dir",
                           str(tmp_path / "run")], capture_output=True, text=True, env=python_env(), cwd=REPO,
                          timeout=60)
    assert proc.returncode == exitcodes.FAILED, proc.stderr[-2000:]
    assert f"{jsonl} is not a regular file (a FIFO)" in proc.stderr and "Traceback" not in proc.stderr
    assert read_status(tmp_path / "run" / "status.json").state == "failed"


def _train(demo_root: Path, tmp_path: Path, bundle: Path, *extra: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    spec = RunSpec(name="hostile", lane="language-expansion", model=str(demo_root / "model"), bundle=str(bundle),
                   train=TrainConfig(batch_size=2, max_steps=2))
    (tmp_path / "spec.json").write_bytes(encode_spec(spec))
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "qwen_train", "run", str(tmp_path / "spec.json"), "--run-dir", str(run_dir), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, env=python_env(), cwd=REPO, timeout=600), run_dir


def test_trainer_refuses_a_bundle_root_whose_codes_link_out(demo_root: Path, tmp_path: Path, bundle: Path) -> None:
    """Every codes file a symlink to an identical copy outside: the hash would follow the links and match, so
    verify refuses the links themselves, and the trainer given that bundle root refuses to train on it."""
    outside = tmp_path / "outside"
    shutil.copytree(bundle / "codes", outside)
    for path in sorted((bundle / "codes").rglob("*.npy")):
        path.unlink()
        path.symlink_to(outside / path.relative_to(bundle / "codes"))
    with pytest.raises(BundleError, match="is a symlink: a bundle holds regular files only"):
        verify_bundle(bundle)
    proc, run_dir = _train(demo_root, tmp_path, demo_root / "bundle", "--bundle-root", str(bundle))
    assert proc.returncode in (exitcodes.FAILED, exitcodes.USAGE), proc.stderr[-3000:]
    assert "symlink" in proc.stderr and str(bundle / "codes") in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (run_dir / "checkpoints").exists() or list_checkpoints(run_dir) == []


@pytest.mark.parametrize("field", ["codes", "ref_audio", "audio"])
def test_loading_a_split_refuses_a_row_that_climbs_out(bundle: Path, field: str) -> None:
    """Checked for every row when a split is loaded, before a step: a tampered manifest fails the start."""
    from qwen_train.train.data.batches import BundleData

    rows = (bundle / MANIFEST).read_bytes().splitlines()
    first = msgspec.json.decode(rows[-1])
    first[field] = "../../" + first[field]
    (bundle / MANIFEST).write_bytes(b"\n".join([*rows[:-1], msgspec.json.encode(first)]) + b"\n")
    with pytest.raises(BundleError, match=f"row {first['id']} has {field} '../../"):
        BundleData(bundle, None, None, None, first["split"])  # type: ignore[arg-type]
    other = "train" if first["split"] == "eval" else "eval"
    assert len(BundleData(bundle, None, None, None, other)) > 0  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["fifo", "symlink", "device"])
def test_verify_refuses_a_bundle_holding_anything_but_regular_files(bundle: Path, tmp_path: Path, kind: str) -> None:
    """A symlink to an identical copy would verify (the hash follows it) and feed the trainer a host file at
    will; a FIFO would hang the hash. Verify names the path instead, for codes and audio alike."""
    verify_bundle(bundle)
    victim = sorted(p for p in bundle.rglob("*") if p.is_file() and p.suffix in (".npy", ".wav"))[0]
    make_hostile(victim, kind, tmp_path / "elsewhere", 0)
    expected = {"fifo": "a FIFO", "symlink": "a symlink", "device": "a symlink"}[kind]
    with pytest.raises(BundleError, match=f"{victim} is {expected}: a bundle holds regular files only"):
        verify_bundle(bundle)


def test_the_gate_reads_a_clone_reference_by_the_bundle_rule(bundle: Path, tmp_path: Path) -> None:
    """A reference that leads out of the bundle makes that clone a recorded failure naming why, not a read."""
    from qwen_train.scores.clones import generate
    from qwen_train.scores.listening import ListeningRow

    row = next(r for r in read_manifest(bundle) if r.ref_audio)
    make_hostile(bundle / row.ref_audio, "symlink", tmp_path / "elsewhere.wav", 0)
    listening = ListeningRow(index=0, row_id=row.id, speaker_id=row.speaker_id, kind="held_out_speaker", text=row.text,
                             audio=row.audio, ref_audio=row.ref_audio, duration_s=row.duration_s, frames=row.frames,
                             seed=0, max_new_tokens=8)
    clone = generate(object(), bundle, listening, "swedish")  # the listening scores clone (and the gate reads them)
    assert clone.wave.size == 0 and clone.error is not None and "BundleError" in clone.error
