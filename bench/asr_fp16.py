"""The gate's Whisper judge in float16 on the GPU against float32 on the CPU: same tiny model, same clips.

    python3 -m bench.asr_fp16 bench/results/gpu-asr-fp16-h200.json

The gate transcribes on the GPU in float16 when there is one (qwen_train/gate/asr.py) and on the CPU in float32,
which is all CI has. This runs the same random tiny Whisper (gate/tiny_whisper.py) over five noise clips of 1-5 s
at 24 kHz both ways and records the judges, the transcripts, whether they agree, and the seconds (the GPU's include
its first kernels). It checks the float16 path loads, generates and decodes; a random model's transcripts say
nothing of accuracy.
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qwen_train.gate.asr import load_asr
from qwen_train.gate.tiny_whisper import build_tiny_whisper

RATE = 24000


def noise_clips(seconds: tuple[int, ...] = (1, 2, 3, 4, 5)) -> list[tuple[np.ndarray, int]]:
    rng = np.random.default_rng(0)
    return [((0.1 * rng.standard_normal(RATE * s)).astype(np.float32), RATE) for s in seconds]


def transcribe_on(model_dir: Path, device: str, clips: list[tuple[np.ndarray, int]]) -> dict[str, Any]:
    asr = load_asr(model_dir, torch.device(device))
    start = time.perf_counter()
    texts = asr.transcribe(clips)
    return {"judge": asr.judge.detail, "texts": texts, "seconds": time.perf_counter() - start}


def main() -> None:
    clips = noise_clips()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_tiny_whisper(Path(tmp) / "w")
        out: dict[str, Any] = {dev: transcribe_on(model_dir, dev, clips) for dev in ("cpu", "cuda")}
    out["same_texts"] = out["cpu"]["texts"] == out["cuda"]["texts"]
    out["agree"] = sum(a == b for a, b in zip(out["cpu"]["texts"], out["cuda"]["texts"], strict=True))
    text = json.dumps(out, ensure_ascii=False, indent=1)
    print(text)
    Path(sys.argv[1]).write_text(text)


if __name__ == "__main__":
    main()
