"""The gate's Whisper judge: a tiny random-weight Whisper, built and saved here, through the real path.

The model dir is what build_tiny_whisper writes (the shape of KBLab's
KB-Whisper: config, weights, generation config with lang_to_id, processor);
the gate loads it with AutoProcessor + WhisperForConditionalGeneration and
decodes real espeak-ng Swedish with the real `generate`. Its transcripts are
noise, so what is tested is the path: the dir is recognised as Whisper (and a
CTC dir still as CTC), decoding is forced to Swedish transcription with no
timestamps, batches give what single clips give, a model that cannot be
forced to Swedish is an error rather than a silent language guess, and the
criterion fails the random model honestly, naming its judge.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from qwen_train.bundle.manifest import Row
from qwen_train.corpus.espeak import VOICES, synthesize
from qwen_train.corpus.sentences import SENTENCES
from qwen_train.gate import asr as asr_module
from qwen_train.gate.asr import CtcAsr, WhisperAsr, load_asr
from qwen_train.gate.clones import Clone
from qwen_train.gate.intelligibility import intelligibility_criterion, transcribe_clones
from qwen_train.gate.target import asr_family
from qwen_train.gate.tiny_whisper import build_tiny_whisper
from tests.conftest import MakeDir
from tests.gate_asr import build_tiny_asr

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def whisper_dir(module_dir: MakeDir) -> Path:
    return build_tiny_whisper(module_dir("asr") / "tiny-sv-whisper")


@pytest.fixture(scope="module")
def whisper(whisper_dir: Path) -> WhisperAsr:
    asr = load_asr(whisper_dir, CPU)
    assert isinstance(asr, WhisperAsr)
    return asr


@pytest.fixture(scope="module")
def clips(module_dir: MakeDir) -> list[tuple[Path, str]]:
    """Five real Swedish clips, 24 kHz, of different lengths: (wav, its text)."""
    where = module_dir("speech")
    out = []
    for i, voice in enumerate(VOICES):
        path = where / f"{voice.speaker}.wav"
        synthesize(SENTENCES[i], voice, path)
        out.append((path, SENTENCES[i]))
    return out


def _audio(path: Path) -> tuple[np.ndarray, int]:
    wave, rate = sf.read(str(path), dtype="float32")
    return wave, int(rate)


def test_a_whisper_dir_is_judged_as_whisper_and_a_ctc_dir_as_ctc(whisper_dir: Path, whisper: WhisperAsr,
                                                                tmp_path: Path) -> None:
    assert asr_family(whisper_dir) == "whisper"
    ctc_dir = build_tiny_asr(tmp_path / "ctc")
    assert asr_family(ctc_dir) == "ctc" and isinstance(load_asr(ctc_dir, CPU), CtcAsr)
    judge = whisper.judge
    assert (judge.role, judge.kind, judge.model) == ("asr", "whisper", str(whisper_dir))
    assert "greedy" in judge.detail and "forced language sv" in judge.detail and "cpu float32" in judge.detail
    assert whisper.rate == 16000 and whisper.max_new_tokens == whisper.model.config.max_target_positions - 4


def test_generate_is_forced_to_swedish_transcription_without_timestamps(whisper: WhisperAsr,
                                                                        clips: list[tuple[Path, str]]) -> None:
    tokens = whisper.processor.tokenizer.convert_tokens_to_ids
    prompt = [tokens(t) for t in ("<|startoftranscript|>", "<|sv|>", "<|transcribe|>", "<|notimestamps|>")]
    audios = [asr_module.resample(*_audio(path), 16000) for path, _ in clips[:3]]
    ids = whisper.generate(audios)
    assert ids.shape[0] == 3 and ids.shape[1] <= whisper.model.config.max_target_positions
    for row in ids.tolist():
        assert row[:4] == prompt, row[:6]  # Swedish, transcribe, no timestamps: forced, not detected
        assert tokens("<|en|>") not in row and tokens("<|translate|>") not in row


def test_batches_transcribe_as_single_clips_do(whisper: WhisperAsr, clips: list[tuple[Path, str]],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    audio = [_audio(path) for path, _ in clips]
    one_by_one = [whisper.transcribe([a])[0] for a in audio]
    monkeypatch.setattr(asr_module, "BATCH", 2)  # three generate calls: 2 + 2 + 1
    calls: list[int] = []
    real = whisper.generate

    def counted(audios: list[np.ndarray]) -> torch.Tensor:
        calls.append(len(audios))
        return real(audios)

    monkeypatch.setattr(whisper, "generate", counted)
    assert whisper.transcribe(audio) == one_by_one and calls == [2, 2, 1]
    assert any(text for text in one_by_one)  # the random weights do say something (bytes), not only specials


def test_a_whisper_that_cannot_be_forced_to_swedish_is_an_error(whisper_dir: Path, tmp_path: Path,
                                                                clips: list[tuple[Path, str]]) -> None:
    import shutil

    copy = tmp_path / "no-sv"
    shutil.copytree(whisper_dir, copy)
    config = json.loads((copy / "generation_config.json").read_text())
    del config["lang_to_id"]["<|sv|>"]
    (copy / "generation_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="sv"):
        load_asr(copy, CPU).transcribe([_audio(clips[0][0])])


def _clone(path: Path, text: str, speaker: str, error: str | None = None) -> Clone:
    row = Row(id=f"{speaker}-0", speaker_id=speaker, text=text, audio="", codes="", frames=1, duration_s=1.0,
              ref_audio="", source="demo", role="train", split="eval")
    wave, rate = _audio(path)
    return Clone(row=row, reference=path, wave=wave, rate=rate, error=error)


def test_intelligibility_through_whisper_fails_the_random_model_and_names_its_judge(
        whisper: WhisperAsr, clips: list[tuple[Path, str]]) -> None:
    clones = [_clone(path, text, f"demo:{i}") for i, (path, text) in enumerate(clips[:3])]
    clones.append(_clone(clips[3][0], clips[3][1], "demo:3", error="RuntimeError: generation broke"))
    transcribe_clones(whisper, clones)
    assert clones[-1].transcript == ""  # a failed clone is heard as nothing
    assert [c.transcript for c in clones[:3]] == whisper.transcribe([(c.wave, c.rate) for c in clones[:3]])
    verdict = intelligibility_criterion(clones, 0.25, whisper.judge)
    assert not verdict.passed and verdict.measured is not None and verdict.measured > 0.25
    assert verdict.threshold == 0.25 and "ASR: whisper" in verdict.detail
    assert "1 clone(s) empty, silent or failed" in verdict.detail
    (wer,) = verdict.figures
    assert wer.name == "wer" and wer.value is not None and wer.value >= 0.5 and wer.threshold is None
