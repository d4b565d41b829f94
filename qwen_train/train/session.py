"""Everything a training run holds, built from a spec; and what a checkpoint stores of it.

Kept apart from the loop so the loop reads as a plain sequence of steps. The
same code runs on one CPU, one GPU, or several processes under
`accelerate launch`: the objective is wrapped by accelerate (DDP when
distributed), each rank draws its own slice of the global batch, and only the
main process writes status, reports and checkpoints.
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
from accelerate.utils import gather_object

from qwen_train.bundle.fingerprint import verify_bundle
from qwen_train.spec import RunSpec, encode_spec
from qwen_train.status import EvalResult
from qwen_train.train.checkpoint import rng_state, save_checkpoint
from qwen_train.train.cursor import Cursor
from qwen_train.train.data import BundleData
from qwen_train.train.faults import install_fault
from qwen_train.train.heartbeat import Heartbeat
from qwen_train.train.language import ensure_language
from qwen_train.train.layout import SpecialIds
from qwen_train.train.objective import forward_losses, speaker_embeddings


class Objective(torch.nn.Module):
    """The model plus its loss, as one module so DDP sees the whole forward."""

    def __init__(self, model: torch.nn.Module, sub_weight: float) -> None:
        super().__init__()
        self.model = model
        self.sub_weight = sub_weight

    def forward(self, batch: dict[str, torch.Tensor], mels: list[torch.Tensor]) -> torch.Tensor:
        spk = speaker_embeddings(self.model, mels)
        losses = forward_losses(self.model, batch, spk, self.sub_weight)
        return torch.stack([losses.total, losses.talker, losses.code_predictor])


@dataclass
class Session:
    spec: RunSpec
    run_dir: Path
    bundle: Path
    accelerator: Accelerator
    objective: Any
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
    # Non-finite guard state: batches to skip, a temporary LR scale, retries used (all checkpointed).
    skip: set[tuple[int, int]] = field(default_factory=set)
    lr_scale: float = 1.0
    lr_scale_until: int = 0
    retries: int = 0
    last_step_cursor: Cursor | None = None
    drawn: list[list[int]] = field(default_factory=list)
    injector: Any = None
    initial_scheduler: dict[str, Any] = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    @property
    def model(self) -> Any:
        """The bare Qwen3-TTS model (no DDP wrapper): for eval, export and state dicts."""
        return self.accelerator.unwrap_model(self.objective).model

    @property
    def is_main(self) -> bool:
        return bool(self.accelerator.is_main_process)


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
    # Gradient accumulation is done by the loop itself (no_sync on all but the last micro-batch),
    # so the guard can look at the accumulated step before anything is applied.
    return Accelerator(cpu=cpu, mixed_precision=mixed)


def load_base_model(spec: RunSpec) -> tuple[Any, Any]:
    """The model and processor through the real qwen-tts loader, with the language tag if asked."""
    from qwen_tts import Qwen3TTSModel

    wrapper = Qwen3TTSModel.from_pretrained(spec.model, dtype=torch.float32)
    model = wrapper.model
    if model.config.tts_model_type != "base" or model.speaker_encoder is None:
        raise ValueError(f"{spec.model}: not a base model with a speaker encoder; multi-speaker training needs one")
    ensure_language(model, spec.language)
    return model, wrapper.processor


def build_session(spec: RunSpec, run_dir: Path, heartbeat: Heartbeat, bundle: Path | None = None) -> Session:
    """`bundle` overrides the spec's bundle path (--bundle-root); its content is verified either way."""
    seed_everything(spec.train.seed, spec.train.deterministic)
    bundle = bundle or Path(spec.bundle)
    fingerprint = verify_bundle(bundle)
    accelerator = make_accelerator(spec)
    heartbeat.enabled = bool(accelerator.is_main_process)
    model, processor = load_base_model(spec)
    model.speaker_encoder.requires_grad_(False)
    ids = SpecialIds.from_config(model.config)
    lang = ensure_language(model, spec.language)
    train_data = BundleData(bundle, processor, ids, lang, "train")
    eval_data = BundleData(bundle, processor, ids, lang, "eval")
    global_batch = spec.train.batch_size * accelerator.num_processes
    if len(train_data) < global_batch:
        raise ValueError(f"bundle {bundle} has {len(train_data)} train rows, fewer than one batch ({global_batch})")
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=spec.train.lr, weight_decay=spec.train.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(spec.train.warmup_steps, spec.train.max_steps))
    objective, optimizer = accelerator.prepare(Objective(model, spec.train.sub_talker_weight), optimizer)
    objective.train()
    model.speaker_encoder.eval()
    cursor = Cursor(epoch=0, position=0, seed=spec.train.seed, batch_size=spec.train.batch_size,
                    world_size=accelerator.num_processes, rows=len(train_data))
    session = Session(spec, run_dir, bundle, accelerator, objective, optimizer, scheduler, train_data, eval_data,
                      cursor, fingerprint, heartbeat)
    session.initial_scheduler = scheduler.state_dict()
    session.injector = install_fault(model)
    return session


def checkpoint_state(s: Session) -> dict[str, Any]:
    """Model (speaker encoder included), optimizer, scheduler, scaler, every rank's RNG, counters."""
    scaler = s.accelerator.scaler
    return {
        "model": s.model.state_dict(),
        "optimizer": s.optimizer.state_dict(),
        "scheduler": s.scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "rng": gather_object([rng_state()]) if s.accelerator.num_processes > 1 else [rng_state()],
        "step": s.step,
        "micro_steps": s.micro_steps,
        "evals": list(s.evals),
        "guard": {"skip": sorted(s.skip), "lr_scale": s.lr_scale, "lr_scale_until": s.lr_scale_until,
                  "retries": s.retries},
    }


def write_checkpoint(s: Session) -> Path | None:
    """Every rank contributes its RNG state; the main process writes. Returns the path on main."""
    state = checkpoint_state(s)
    path = None
    if s.is_main:
        path = save_checkpoint(
            s.run_dir,
            s.step,
            state,
            {"cursor": s.cursor, "spec": encode_spec(s.spec).decode(), "bundle_fingerprint": s.fingerprint,
             "micro_steps": s.micro_steps},
        )
    s.accelerator.wait_for_everyone()
    return path
