"""Launch to first step at full size, this code against an older checkout, and what "auto" sizes on a real card.

Why: an operator waited 80 s at full size on an H100 (35 s on a resume) before a
run's first step, with no word of where it went. This builds a model dir of the
1.7B architecture (bench/train_model_config.json's sizes, the demo's tokenizers,
random weights stored as bf16 like the released model), then, on the demo
bundle, times `qwen-train run` from process start until status.json reports
step 1, under a per-process cap emulating a 32 GB card:
* this code with `frame_budget: "auto"` (its startup account and the budget it
  chose, read back from status.json and the run dir);
* the older code in `--old` (a checkout of qwen_train from before, with the
  budget this code chose, since it has no "auto") as the baseline, same card;
* this code resuming its own run from a durable checkpoint.

    python3 -m bench.startup --old .bench-old --demo .bench-demo --out $OUT [--cap-gib 32]

Writes OUT/startup.json and prints a markdown section for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parent.parent
REFERENCE = REPO / "bench" / "train_model_config.json"
ARCH_KEYS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
             "head_dim", "max_position_embeddings", "rope_scaling", "text_hidden_size", "text_vocab_size")


def full_config(tiny: dict[str, Any]) -> dict[str, Any]:
    """The tiny model's config (its token ids, which its tokenizers produce) with the real model's sizes."""
    real = json.loads(REFERENCE.read_text())
    out = json.loads(json.dumps(tiny))
    talker, real_talker = out["talker_config"], real["talker_config"]
    for key in ARCH_KEYS:
        if key in real_talker:
            talker[key] = real_talker[key]
    talker["code_predictor_config"] = real_talker["code_predictor_config"]
    talker["vocab_size"] = real_talker["vocab_size"]
    out["speaker_encoder_config"] = real["speaker_encoder_config"]
    return out


def build_full_model(demo_model: Path, out: Path) -> Path:
    """Random weights of the full architecture, made on the GPU and saved as bf16, beside the demo's tokenizers."""
    from qwen_tts.core.models.configuration_qwen3_tts import Qwen3TTSConfig
    from qwen_tts.core.models.modeling_qwen3_tts import Qwen3TTSForConditionalGeneration

    from qwen_train.modeldir import save_model_dir

    config = Qwen3TTSConfig(**full_config(json.loads((demo_model / "config.json").read_text())))
    with torch.device("cuda"):
        model = Qwen3TTSForConditionalGeneration(config).to(torch.bfloat16)
    save_model_dir(model, out)
    for part in demo_model.iterdir():
        if not (out / part.name).exists():
            (shutil.copytree if part.is_dir() else shutil.copyfile)(part, out / part.name)
    del model
    torch.cuda.empty_cache()
    return out


def write_spec(where: Path, model: Path, bundle: Path, budget: int | str, steps: int) -> Path:
    spec = {"name": "startup", "lane": "language-expansion", "model": str(model), "bundle": str(bundle),
            "language": "swedish", "posture": {"checkpoint_every": 1, "eval_every": 1000, "keep_last": 1},
            "train": {"frame_budget": budget, "recipe": "lean", "max_steps": steps, "lr": 1e-5, "eval_max_rows": 4}}
    path = where / f"spec-{budget}.json"
    path.write_text(json.dumps(spec))
    return path


def status(run_dir: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((run_dir / "status.json").read_text()))
    except (OSError, ValueError):
        return {}


def launch(code: Path, spec: Path, run_dir: Path, cap_gib: float, until_step: int, *extra: str,
           cache: Path | None = None) -> dict[str, Any]:
    """Seconds from process start to status.json's step `until_step`, as this process's own heartbeat says it.

    `cache`: torch.compile's caches (inductor, triton) for this launch; a fresh dir is a cold compile, as a
    first run on a machine has, and a shared one is what a resume on the same machine finds.
    """
    path = f"{code}:{os.environ.get('PYTHONPATH', '')}"
    cache = cache or run_dir.parent / f"cache-{run_dir.name}"
    env = {**os.environ, "QWEN_TEST_GPU_CAP_GIB": str(cap_gib), "PYTHONPATH": path,
           "TORCHINDUCTOR_CACHE_DIR": str(cache / "inductor"), "TRITON_CACHE_DIR": str(cache / "triton")}
    log = (run_dir.parent / f"{run_dir.name}.log").open("w")
    began = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "qwen_train", "run", str(spec), "--run-dir", str(run_dir), *extra],
                            cwd=code, env=env, stdout=log, stderr=subprocess.STDOUT)
    while status(run_dir).get("pid") != proc.pid or status(run_dir).get("step", 0) < until_step:
        if proc.poll() is not None:
            said = (run_dir.parent / f"{run_dir.name}.log").read_text()[-3000:]
            raise RuntimeError(f"{run_dir}: exited {proc.returncode}: {said}")
        time.sleep(0.1)
    seconds = time.perf_counter() - began
    said = status(run_dir)
    return {"seconds": seconds, "startup": said.get("startup"), "batching": said.get("batching"), "proc": proc}


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--old", type=Path, required=True, help="a checkout holding the older qwen_train/")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-startup"))
    parser.add_argument("--cap-gib", type=float, default=32.0)
    parser.add_argument("--demo", type=Path, help="a demo dir made by `qwen-train demo` (else one is made here)")
    args = parser.parse_args()
    from qwen_train.demo import build_demo

    work = args.work
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    if args.demo is not None:  # built elsewhere: the accelerator machine has no espeak-ng to speak the corpus
        shutil.copytree(args.demo, work / "demo", symlinks=True)
    build_demo(work / "demo", seed=0)  # reuses what is there
    demo = work / "demo"
    model = build_full_model(demo / "model", work / "full")
    new = launch(REPO, write_spec(work, model, demo / "bundle", "auto", 50), work / "new", args.cap_gib, 1)
    budget = json.loads((work / "new" / "frame_budget.json").read_text())["frame_budget"]
    while status(work / "new").get("last_checkpoint") is None:
        time.sleep(0.2)  # the first durable checkpoint, for the resume below
    stop(new.pop("proc"))
    resumed = launch(REPO, write_spec(work, model, demo / "bundle", "auto", 50), work / "new", args.cap_gib,
                     status(work / "new")["last_checkpoint"]["step"] + 1, "--resume", cache=work / "cache-new")
    stop(resumed.pop("proc"))
    old_spec = write_spec(work, model, demo / "bundle", budget, 50)
    old = launch(args.old.resolve(), old_spec, work / "old", args.cap_gib, 1)
    stop(old.pop("proc"))
    result = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "cap_gib": args.cap_gib,
              "budget": budget, "new": new, "resumed": resumed, "old": old}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "startup.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
