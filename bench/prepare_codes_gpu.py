"""Code extraction clips/s through the pipeline's `extract_codes`: GPU against CPU in the same run.

The real Qwen3-TTS-Tokenizer-12Hz weights cannot be downloaded here, so the
speech tokenizer has the real encoder's shape (Mimi defaults at 12.5 Hz, 16 of
32 quantizers kept, the V2 decoder's default size) with random weights and
filled codebooks; encode cost depends on the shape, not the values. Clips are
synthetic 24 kHz audio of 2-15 s. Prints clips/s and audio-seconds/s for each
device and the GPU/CPU ratio; with --json also writes them.

    python bench/prepare_codes_gpu.py [--clips 256] [--cpu-clips 16] [--batch 16] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from qwen_tts.core.tokenizer_12hz.configuration_qwen3_tts_tokenizer_v2 import Qwen3TTSTokenizerV2Config
from qwen_tts.core.tokenizer_12hz.modeling_qwen3_tts_tokenizer_v2 import Qwen3TTSTokenizerV2Model
from transformers import EncodecFeatureExtractor

from qwen_train.prepare.codes import CodeCache, extract_codes
from qwen_train.tiny.speech_tokenizer import FRAME_SAMPLES, SAMPLE_RATE, fill_codebooks


def real_shape_tokenizer(model_dir: Path) -> None:
    config = Qwen3TTSTokenizerV2Config(
        encoder_config={"frame_rate": 12.5, "num_quantizers": 32, "upsample_groups": 512, "use_cache": False},
        decoder_config={"codebook_dim": 512},
        encoder_valid_num_quantizers=16, decode_upsample_rate=FRAME_SAMPLES, encode_downsample_rate=FRAME_SAMPLES,
    )
    model = Qwen3TTSTokenizerV2Model(config)
    with torch.no_grad():
        fill_codebooks(model, torch.Generator().manual_seed(0))
    out = model_dir / "speech_tokenizer"
    model.save_pretrained(out)
    EncodecFeatureExtractor(feature_size=1, sampling_rate=SAMPLE_RATE, padding_value=0.0,
                            return_attention_mask=True).save_pretrained(out)


def clips(where: Path, count: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    out: dict[str, float] = {}
    for i in range(count):
        seconds = float(rng.uniform(2, 15))
        t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
        wav = 0.1 * np.sin(2 * np.pi * rng.uniform(100, 300) * t) + 0.02 * rng.standard_normal(t.size)
        sf.write(where / f"{i:05d}.wav", wav.astype(np.float32), SAMPLE_RATE)
        out[f"{i:05d}"] = seconds
    return out


def measure(model_dir: Path, wavs: Path, subset: dict[str, float], device: str, batch: int) -> dict[str, float]:
    cache = CodeCache(Path(tempfile.mkdtemp(prefix=f"codes-{device}-")), model_dir)
    start = time.perf_counter()
    assert extract_codes(subset, lambda sha: wavs / f"{sha}.wav", cache, model_dir, batch_size=batch, device=device)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    return {"clips": len(subset), "seconds": elapsed, "clips_per_s": len(subset) / elapsed,
            "audio_s_per_s": sum(subset.values()) / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", type=int, default=256)
    parser.add_argument("--cpu-clips", type=int, default=16)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="qh-codes-bench-"))
    real_shape_tokenizer(work / "model")
    (work / "wavs").mkdir()
    every = clips(work / "wavs", max(args.clips, args.cpu_clips))
    warm = dict(list(every.items())[: args.batch])
    results: dict[str, object] = {"batch": args.batch}
    if torch.cuda.is_available():
        measure(work / "model", work / "wavs", warm, "cuda", args.batch)  # load + kernel warm-up
        results["gpu"] = measure(work / "model", work / "wavs", every, "cuda", args.batch)
        results["device"] = torch.cuda.get_device_name(0)
    results["cpu"] = measure(work / "model", work / "wavs", dict(list(every.items())[: args.cpu_clips]), "cpu",
                             args.batch)
    for name in ("gpu", "cpu"):
        if name in results:
            r = results[name]
            assert isinstance(r, dict)
            print(f"{name}: {r['clips_per_s']:.1f} clips/s, {r['audio_s_per_s']:.0f} audio-s/s over {r['clips']} clips")
    if "gpu" in results:
        gpu, cpu = results["gpu"], results["cpu"]
        assert isinstance(gpu, dict) and isinstance(cpu, dict)
        results["gpu_over_cpu"] = gpu["clips_per_s"] / cpu["clips_per_s"]
        print(f"ratio GPU/CPU clips/s: {results['gpu_over_cpu']:.1f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
