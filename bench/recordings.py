"""Long recordings: how fast they are sliced (Silero VAD + acoustics) and transcribed (Whisper), in audio hours
per wall hour.

Why: an operator's own audio comes in hours (issue 30), and the `recordings` source scans every file once
and transcribes every slice without a transcript of the user's. This measures, on one long recording of
espeak-ng speech with pauses and the stretches the slicer refuses (noise, music, a long silence, two voices):
* the scan (decode, mono, soxr to 16 kHz, Silero VAD through onnxruntime on one thread, level/peak/pitch),
  with the VAD and the acoustics also timed alone on the 16 kHz signal;
* the cut (slicing.vad_segments), from the scan;
* transcription of every slice through the ASR judge's Whisper path (prepare/transcribe.py: the gate's
  WhisperAsr, batches of 8, plus the teacher-forced confidence pass), with the tiny random Whisper or a
  full-size one of KB-Whisper large's shape (Whisper large-v3: 32+32 layers, d_model 1280, 128 mel bins)
  with random weights. Random weights never say <|endoftext|>, so every batch decodes to the model's
  448-position limit; that worst case is timed on the first batches, and the whole recording is timed
  with each batch's new tokens capped at TOKENS_PER_S per second of its longest slice (+4), about what a
  Swedish transcript of read speech takes (2.5 words/s, about 1.5 BPE tokens a word, rounded up).

    .venv/bin/python bench/recordings.py --build .bench-rec --minutes 10       # here: espeak-ng makes the audio
    python3 bench/recordings.py --audio .bench-rec/long.flac --whisper full --device cuda --out r.json
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

from qwen_train.prepare.acoustics import Acoustics  # noqa: E402
from qwen_train.prepare.audio import read_span  # noqa: E402
from qwen_train.prepare.resample import resample, to_mono  # noqa: E402
from qwen_train.prepare.scan import scan_file  # noqa: E402
from qwen_train.prepare.slicing import vad_segments  # noqa: E402
from qwen_train.prepare.vad import RATE, SileroVad, model_path  # noqa: E402

TOKENS_PER_S = 4.0
LARGE = {"d_model": 1280, "encoder_layers": 32, "decoder_layers": 32, "encoder_attention_heads": 20,
         "decoder_attention_heads": 20, "encoder_ffn_dim": 5120, "decoder_ffn_dim": 5120, "num_mel_bins": 128,
         "max_target_positions": 448}  # Whisper large-v3's shape, which KB-Whisper large keeps
WORST_BATCHES = 1


def build(out: Path, minutes: float) -> Path:
    """`out`/long.flac: espeak-ng clips of six voices with pauses, and every 2 minutes a stretch to refuse."""
    from tests.layouts_recordings import Composer, melody, noise, overlapped
    from tests.prepare_layouts import speak_clips

    clips = speak_clips(out / "clips", per_speaker=8)
    c = Composer("long.flac", "x")
    events = [lambda: c.add("noise", noise(4.0, 7)), lambda: c.add("music", melody(8)),
              lambda: c.add("silence", np.zeros(6 * RATE, np.float32)),
              lambda: c.add("overlap", overlapped(clips[0], clips[9]))]
    k = 0
    while c.at < minutes * 60 * RATE:
        c.speech(clips[k % len(clips)])
        c.pause(0.6 + 0.4 * (k % 3))
        k += 1
        if k % 30 == 0:
            events[(k // 30) % len(events)]()
            c.pause()
    path = out / "long.flac"
    sf.write(str(path), c.signal(), RATE, format="FLAC", subtype="PCM_16")
    shutil.copyfile(model_path(), out / "silero_vad.onnx")  # for a machine without the silero-vad wheel
    shutil.rmtree(out / "clips")
    return path


def timed_scan(path: Path, vad_model: Path | None) -> dict[str, Any]:
    vad = SileroVad(vad_model)
    start = time.perf_counter()
    scan = scan_file(path, vad, show=False)
    scan_s = time.perf_counter() - start
    start = time.perf_counter()
    segments = vad_segments(scan, 0.5, 20.0)
    cut_s = time.perf_counter() - start
    mono, rate = sf.read(str(path), dtype="float32")
    at16 = resample(to_mono(mono), rate, RATE)
    vad.reset()
    start = time.perf_counter()
    vad.feed(at16, last=True)
    vad_s = time.perf_counter() - start
    start = time.perf_counter()
    Acoustics().feed(at16, last=True)
    acoustics_s = time.perf_counter() - start
    audio_s = scan.duration_s
    reasons: dict[str, int] = {}
    for s in segments:
        reasons[s.reason or "slice"] = reasons.get(s.reason or "slice", 0) + 1
    return {"audio_s": round(audio_s, 1), "scan_s": round(scan_s, 2), "cut_s": round(cut_s, 3),
            "vad_alone_s": round(vad_s, 2), "acoustics_alone_s": round(acoustics_s, 2),
            "scan_audio_h_per_wall_h": round(audio_s / scan_s), "segments": reasons,
            "_segments": segments, "_rate": scan.rate}


def full_whisper(out: Path) -> Path:
    """A Whisper directory of KB-Whisper large's shape with random weights (the tiny one's tokenizer)."""
    import torch
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    from qwen_train.gate.tiny_whisper import build_tiny_whisper

    build_tiny_whisper(out)
    config = WhisperConfig.from_pretrained(str(out))
    for key, value in LARGE.items():
        setattr(config, key, value)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        model = WhisperForConditionalGeneration(config).half()
    model.generation_config = WhisperForConditionalGeneration.from_pretrained(str(out)).generation_config
    model.generation_config.max_length = 448
    model.save_pretrained(str(out))
    WhisperFeatureExtractor(feature_size=128, sampling_rate=16000).save_pretrained(str(out))
    return out


def timed_asr(path: Path, scan: dict[str, Any], model_dir: Path, device: str,
              save: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    from qwen_train.prepare.transcribe import WhisperTranscriber

    start = time.perf_counter()
    asr = WhisperTranscriber(model_dir, device)
    load_s = time.perf_counter() - start
    slices = [s for s in scan["_segments"] if s.reason is None]
    full_tokens = asr.asr.max_new_tokens
    batches = [slices[i:i + asr.batch] for i in range(0, len(slices), asr.batch)]
    out: dict[str, Any] = {"judge": asr.asr.judge.detail, "load_s": round(load_s, 1), "slices": len(slices),
                           "slice_audio_s": round(sum((s.end - s.start) for s in slices) / scan["_rate"], 1)}
    save(out)
    for mode, chosen in (("worst_case", batches[:WORST_BATCHES]), ("capped", batches)):
        spent, heard = 0.0, 0.0
        for batch in chosen:
            audios = [resample(to_mono(read_span(path, s.start, s.end - s.start)[0]), scan["_rate"], asr.rate)
                      for s in batch]
            longest = max(len(a) for a in audios) / asr.rate
            asr.asr.max_new_tokens = full_tokens if mode == "worst_case" else math.ceil(TOKENS_PER_S * longest) + 4
            start = time.perf_counter()
            asr.transcribe(audios)
            spent += time.perf_counter() - start
            heard += sum(len(a) for a in audios) / asr.rate
        out[mode] = {"batches": len(chosen), "slice_audio_s": round(heard, 1), "wall_s": round(spent, 2),
                     "audio_h_per_wall_h": round(heard / spent, 1),
                     "new_tokens": "up to " + str(full_tokens) if mode == "worst_case"
                     else f"{TOKENS_PER_S}/s of the longest slice + 4"}
        save(out)
    asr.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build", type=Path, help="make DIR/long.flac (needs espeak-ng) and stop")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--audio", type=Path)
    parser.add_argument("--whisper", choices=("tiny", "full"), default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-recordings"))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.build:
        print(build(args.build, args.minutes))
        return
    vad_model = args.audio.parent / "silero_vad.onnx"
    scan = timed_scan(args.audio, vad_model if vad_model.is_file() else None)
    import torch

    report: dict[str, Any] = {"machine": platform.processor() or platform.machine(), "whisper": args.whisper,
                              "device": args.device,
                              "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None,
                              **{k: v for k, v in scan.items() if not k.startswith("_")}}

    def save(asr: dict[str, Any]) -> None:
        """Written after each step: a run cut short by its time limit still leaves what it measured."""
        text = json.dumps(report | {"asr": asr}, indent=1)
        print(text, flush=True)
        if args.out:
            args.out.write_text(text + "\n")

    save({})

    if args.device == "cpu":
        torch.set_num_threads(1)  # as the tests do: one core, what a shared two-core machine gives a job
    model_dir = full_whisper(args.work / "full") if args.whisper == "full" else None
    if model_dir is None:
        from qwen_train.gate.tiny_whisper import build_tiny_whisper

        model_dir = build_tiny_whisper(args.work / "tiny")
    timed_asr(args.audio, scan, model_dir, args.device, save)


if __name__ == "__main__":
    main()
