"""Everything a training run holds, built from a spec; and its save/restore.

Kept apart from the loop so the loop reads as a plain sequence of steps.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator

from qwen_train.bundle.fingerprint import verify_bundle
from qwen_train.spec import RunSpec, encode_spec
from qwen_train.status import EvalResult
from qwen_train.train.checkpoint import rng_state, save_checkpoint
from qwen_train.train.data import BundleData, Cursor
from qwen_train.train.heartbeat import Heartbeat
from qwen_train.train.layout import SpecialIds


@dataclass
class Session:
    spec: RunSpec
    run_dir: Path
    accelerator: Accelerator
    model: Any
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    train_data: BundleData
    eval_data: BundleData
    cursor: Cursor
    fingerprint: str
    heartbeat: Heartbeat
    step: int = 0
    micro_steps: int = 0
    resumed_from: Path | None = None
    evals: list[EvalResult] = field(default_factory=list)

    @property
    def device(self) -> torch.device:
        return self.accelerator.device


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)


def lr_lambda(warmup: int, total: int):
    """Linear warmup, then cosine decay to 10% at `total`."""

    def factor(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def make_accelerator(spec: RunSpec) -> Accelerator:
    device = spec.train.device
    cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available())
    mixed = "bf16" if spec.train.precision == "bf16" else "no"
    return Accelerator(cpu=cpu, mixed_precision=mixed, gradient_accumulation_steps=spec.train.grad_accum)


def language_id(model, language: str | None) -> int | None:
    if language is None:
        return None
    table = model.config.talker_config.codec_language_id
    if language not in table:
        raise ValueError(f"language {language!r} is not in the model's codec_language_id ({sorted(table)})")
    return int(table[language])


def build_session(spec: RunSpec, run_dir: Path, heartbeat: Heartbeat) -> Session:
    from qwen_tts import Qwen3TTSModel

    seed_everything(spec.train.seed, spec.train.deterministic)
    bundle = Path(spec.bundle)
    fingerprint = verify_bundle(bundle)
    accelerator = make_accelerator(spec)
    wrapper = Qwen3TTSModel.from_pretrained(spec.model, dtype=torch.float32)
    model = wrapper.model
    if model.config.tts_model_type != "base" or model.speaker_encoder is None:
        raise ValueError(f"{spec.model}: not a base model with a speaker encoder; multi-speaker training needs one")
    model.speaker_encoder.requires_grad_(False)
    ids = SpecialIds.from_config(model.config)
    lang = language_id(model, spec.language)
    train_data = BundleData(bundle, wrapper.processor, ids, lang, "train")
    eval_data = BundleData(bundle, wrapper.processor, ids, lang, "eval")
    if len(train_data) < spec.train.batch_size:
        raise ValueError(f"bundle {bundle} has {len(train_data)} train rows, fewer than one batch")
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=spec.train.lr, weight_decay=spec.train.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(spec.train.warmup_steps, spec.train.max_steps))
    model, optimizer = accelerator.prepare(model, optimizer)
    model.train()
    accelerator.unwrap_model(model).speaker_encoder.eval()
    cursor = Cursor(
        epoch=0,
        position=0,
        seed=spec.train.seed,
        batch_size=spec.train.batch_size,
        world_size=accelerator.num_processes,
        rows=len(train_data),
    )
    return Session(spec, run_dir, accelerator, model, optimizer, scheduler, train_data, eval_data, cursor,
                   fingerprint, heartbeat)


def checkpoint_state(s: Session) -> dict[str, Any]:
    return {
        "model": s.accelerator.unwrap_model(s.model).state_dict(),
        "optimizer": s.optimizer.state_dict(),
        "scheduler": s.scheduler.state_dict(),
        "rng": rng_state(),
        "step": s.step,
        "micro_steps": s.micro_steps,
        "evals": [e for e in s.evals],
    }


def write_checkpoint(s: Session) -> Path:
    return save_checkpoint(
        s.run_dir,
        s.step,
        checkpoint_state(s),
        {
            "cursor": s.cursor,
            "spec": encode_spec(s.spec).decode(),
            "bundle_fingerprint": s.fingerprint,
            "micro_steps": s.micro_steps,
        },
    )
