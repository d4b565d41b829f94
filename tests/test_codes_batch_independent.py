"""A clip's codes are the codes it has alone, whatever it is extracted with (issue #15 part 7).

Real espeak-ng Swedish clips of different lengths (most not a multiple of the
1920-sample hop, one that is, one shorter than a hop) on the tiny model's real
Mimi speech tokenizer; bundles from before the extraction was versioned still
verify with the fingerprint they were built with.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import msgspec
import numpy as np
import pytest
import soundfile as sf
import torch

from qwen_train.bundle.codes import encode_alone, exact_fp32, load_speech_tokenizer, read_mono_24k
from qwen_train.bundle.fingerprint import CODES_EXTRACTION, fingerprint_of, hash_tree, verify_bundle
from qwen_train.bundle.manifest import BUNDLE_JSON, BundleError, read_bundle_info, read_manifest, write_json
from qwen_train.corpus.espeak import VOICES, synthesize
from qwen_train.corpus.sentences import SENTENCES
from qwen_train.prepare.codes import EXTRACTION_VERSION, CodeCache, extract_codes, tokenizer_key
from tests.conftest import MakeDir

HOP = 1920


@pytest.fixture(scope="module")
def clips(module_dir: MakeDir) -> dict[str, Path]:
    """name -> 24 kHz wav: five spoken sentences, plus one cut to 20 hops and one cut under a hop."""
    root = module_dir("clips")
    out: dict[str, Path] = {}
    for k in range(5):
        out[f"s{k}"] = root / f"s{k}.wav"
        synthesize(SENTENCES[3 * k], VOICES[k], out[f"s{k}"])
    audio, rate = sf.read(str(out["s0"]), dtype="int16")
    for name, length in (("hops20", 20 * HOP), ("sub_hop", HOP - 421)):
        out[name] = root / f"{name}.wav"
        sf.write(str(out[name]), audio[:length], rate, subtype="PCM_16")
    lengths = {name: sf.info(str(p)).frames for name, p in out.items()}
    assert len(set(lengths.values())) == len(lengths)
    assert sum(n % HOP != 0 for n in lengths.values()) >= 5 and lengths["hops20"] % HOP == 0
    return out


def _extract(clips: dict[str, Path], names: list[str], durations: list[float], work: Path, model: Path,
             batch_size: int) -> dict[str, np.ndarray]:
    """Codes for `names` extracted together into a fresh cache (durations set the extraction order)."""
    cache = CodeCache(work, model)
    assert extract_codes(dict(zip(names, durations, strict=True)), lambda name: clips[name], cache, model,
                         batch_size=batch_size, device="cpu")
    return {name: cache.load(name) for name in names}


def test_a_padded_batch_changes_a_clips_last_frame(demo_root: Path, clips: dict[str, Path]) -> None:
    """Why extraction does not batch: the tokenizer's own batch call gives shorter clips other last frames."""
    tok = load_speech_tokenizer(demo_root / "model", "cpu")
    wavs = {name: read_mono_24k(p) for name, p in clips.items()}
    batched = tok.encode(list(wavs.values()), sr=24000).audio_codes
    changed: dict[str, set[int]] = {}
    for (name, wav), codes in zip(wavs.items(), batched, strict=True):
        alone = encode_alone(tok, wav)
        assert codes.shape == alone.shape
        frames = set(np.flatnonzero((codes.numpy() != alone).any(axis=1)).tolist())
        if frames:
            changed[name] = frames
    assert any(len(wavs[n]) // HOP in f for n, f in changed.items()), \
        f"no clip's last frame changed in a padded batch ({changed}); extraction could batch again"


def test_codes_alone_equal_codes_in_mixed_batches(demo_root: Path, clips: dict[str, Path], tmp_path: Path) -> None:
    model = demo_root / "model"
    tok = load_speech_tokenizer(model, "cpu")
    names = list(clips)
    alone = {n: _extract(clips, [n], [1.0], tmp_path / f"alone-{n}", model, batch_size=1)[n] for n in names}
    for n in names:
        samples = sf.info(str(clips[n])).frames
        assert alone[n].shape == (-(-samples // HOP), 16)
        assert np.array_equal(alone[n], encode_alone(tok, read_mono_24k(clips[n])))
    mixes = [
        (names, [float(sf.info(str(clips[n])).duration) for n in names], 8),
        (names, [float(i) for i in range(len(names))], 3),  # shortest first
        (names[::-1], [float(i % 3) for i in range(len(names))], 2),
        (["sub_hop", "s3", "hops20", "s1"], [4.0, 1.0, 3.0, 2.0], 4),
    ]
    for k, (mix, durations, batch_size) in enumerate(mixes):
        together = _extract(clips, mix, durations, tmp_path / f"mix-{k}", model, batch_size)
        for n in mix:
            assert together[n].shape == alone[n].shape, (k, n)
            differing = np.argwhere(together[n] != alone[n])
            assert differing.size == 0, f"mix {k}: clip {n} differs at (frame, group) {differing[:5].tolist()}"


def test_the_encode_runs_in_plain_fp32_and_gives_the_flags_back() -> None:
    """TF32 convolutions (cuDNN's default) moved GPU codes off the CPU's; a timed algorithm choice varies by run."""
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = (cudnn.allow_tf32, cudnn.benchmark, matmul.allow_tf32)
    try:
        cudnn.allow_tf32, cudnn.benchmark, matmul.allow_tf32 = True, True, True
        with exact_fp32():
            assert (cudnn.allow_tf32, cudnn.benchmark, matmul.allow_tf32) == (False, False, False)
        assert (cudnn.allow_tf32, cudnn.benchmark, matmul.allow_tf32) == (True, True, True)
    finally:
        cudnn.allow_tf32, cudnn.benchmark, matmul.allow_tf32 = saved


def test_codes_of_the_unversioned_cache_are_not_served(demo_root: Path, clips: dict[str, Path],
                                                       tmp_path: Path) -> None:
    """Version 1 cached codes under the bare tokenizer key: a version 2 extraction encodes the clip again."""
    model = demo_root / "model"
    old_dir = tmp_path / "codes" / tokenizer_key(model)
    old_dir.mkdir(parents=True)
    stale = np.zeros((3, 16), dtype=np.int16)
    np.save(old_dir / "s2.npy", stale)
    codes = _extract(clips, ["s2"], [1.0], tmp_path, model, batch_size=8)["s2"]
    tok = load_speech_tokenizer(model, "cpu")
    assert np.array_equal(codes, encode_alone(tok, read_mono_24k(clips["s2"])))
    assert CodeCache(tmp_path, model).dir.name == f"{tokenizer_key(model)}-v{EXTRACTION_VERSION}"
    assert np.array_equal(np.load(old_dir / "s2.npy"), stale)


def test_a_built_bundle_holds_each_clips_alone_codes(demo_root: Path) -> None:
    bundle = demo_root / "bundle"
    tok = load_speech_tokenizer(demo_root / "model", "cpu")
    for row in read_manifest(bundle):
        assert np.array_equal(np.load(bundle / row.codes), encode_alone(tok, read_mono_24k(bundle / row.audio))), row.id
    info = read_bundle_info(bundle)
    assert info.provenance[CODES_EXTRACTION] == EXTRACTION_VERSION == 2
    assert verify_bundle(bundle) == info.fingerprint
    assert info.fingerprint != _version1_fingerprint(info.files)  # the version is in it, not just the files


def _version1_fingerprint(files: dict[str, str]) -> str:
    """The fingerprint as bundles were sealed before the extraction version: the file lines, nothing else."""
    lines = b"".join(rel.encode() + b"\0" + files[rel].encode() + b"\n" for rel in sorted(files))
    return hashlib.sha256(lines).hexdigest()


def _writable_copy(bundle: Path, where: Path) -> Path:
    shutil.copytree(bundle, where)
    for p in [where, *where.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    return where


@pytest.fixture
def version1_bundle(demo_root: Path, tmp_path: Path) -> Path:
    """The demo bundle made the old way: codes from padded batches of 8, sealed in the unversioned form."""
    bundle = _writable_copy(demo_root / "bundle", tmp_path / "v1")
    tok = load_speech_tokenizer(demo_root / "model", "cpu")
    rows = sorted(read_manifest(bundle), key=lambda r: (-r.duration_s, r.id))
    for i in range(0, len(rows), 8):
        batch = rows[i : i + 8]
        encoded = tok.encode([read_mono_24k(bundle / r.audio) for r in batch], sr=24000).audio_codes
        for r, codes in zip(batch, encoded, strict=True):
            np.save(bundle / r.codes, codes.numpy().astype(np.int16))
    info = read_bundle_info(bundle)
    files = hash_tree(bundle)
    assert files != info.files, "batched codes equal alone codes here: the fixture would not be the old way"
    provenance = {k: v for k, v in info.provenance.items() if k != CODES_EXTRACTION}
    write_json(bundle / BUNDLE_JSON, msgspec.structs.replace(info, files=files, provenance=provenance,
                                                             fingerprint=_version1_fingerprint(files)))
    return bundle


def test_a_version1_bundle_verifies_as_it_was_built(version1_bundle: Path) -> None:
    info = read_bundle_info(version1_bundle)
    assert verify_bundle(version1_bundle) == info.fingerprint == fingerprint_of(info.files)


def test_a_version1_bundle_claiming_version2_fails_verification(version1_bundle: Path) -> None:
    info = read_bundle_info(version1_bundle)
    claimed = msgspec.structs.replace(info, provenance={**info.provenance, CODES_EXTRACTION: 2})
    write_json(version1_bundle / BUNDLE_JSON, claimed)
    with pytest.raises(BundleError, match="does not match its own file list and codes extraction version"):
        verify_bundle(version1_bundle)


def test_a_version2_bundle_stripped_of_its_version_fails_verification(demo_root: Path, tmp_path: Path) -> None:
    bundle = _writable_copy(demo_root / "bundle", tmp_path / "v2")
    info = read_bundle_info(bundle)
    stripped = {k: v for k, v in info.provenance.items() if k != CODES_EXTRACTION}
    write_json(bundle / BUNDLE_JSON, msgspec.structs.replace(info, provenance=stripped))
    with pytest.raises(BundleError, match="does not match its own file list"):
        verify_bundle(bundle)


@pytest.mark.parametrize("bad", ["2", 0, True, 2.0])
def test_a_version_that_is_not_a_version_number_is_named(demo_root: Path, tmp_path: Path, bad: object) -> None:
    bundle = _writable_copy(demo_root / "bundle", tmp_path / "bad")
    info = read_bundle_info(bundle)
    write_json(bundle / BUNDLE_JSON, msgspec.structs.replace(info, provenance={**info.provenance,
                                                                               CODES_EXTRACTION: bad}))
    with pytest.raises(BundleError, match=r"bundle.json: provenance.codes_extraction is .* not a version number"):
        verify_bundle(bundle)
