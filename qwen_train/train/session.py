"""Everything a training run holds, built from a spec; and what a checkpoint stores of it.

Kept apart from the loop so the loop reads as a plain sequence of steps. The
same code runs on one CPU, one GPU, or several processes under
`accelerate launch`: the objective is wrapped by accelerate (DDP when
distributed), each rank draws its own slice of the global batch, and only the
main process writes status, reports and checkpoints.

`assemble_session` is the part that does not care where the weights and rows
come from: the real path (`build_session`: weights through the qwen-tts
loader, rows from a verified bundle) and the full-size GPU benchmark (random
weights built on the GPU, synthetic rows) both go through it, so the benchmark
measures the code real runs use. How fast it runs is `Perf`'s business
(perf.py); what it trains is the spec's.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import gather_object

from qwen_train.bundle.fingerprint import verify_bundle
from qwen_train.modeldir import load_base_model
from qwen_train.revision import code_revision
from qwen_train.spec import RunSpec, encode_spec
from qwen_train.status import CheckpointRef, EvalResult
from qwen_train.train.checkpoint import prune, rng_state, save_checkpoint
from qwen_train.train.ckpt_async import BackgroundCheckpointer
from qwen_train.train.cursor import Cursor, Lengths
from qwen_train.train.data import BundleData
from qwen_train.train.faults import install_fault, pause
from qwen_train.train.heartbeat import Heartbeat
from qwen_train.train.language import ensure_language
from qwen_train.train.layout import SpecialIds
from qwen_train.train.objective import SpeakerCache, forward_losses
from qwen_train.train.perf import Perf, make_optimizer, speed_up_model
from qwen_train.train.prefetch import Prefetcher


class Objective(torch.nn.Module):
    """The model plus its loss, as one module so DDP sees the whole forward."""

    def __init__(self, model: torch.nn.Module, sub_weight: float, speaker_cache: bool = False) -> None:
        super().__init__()
        self.model = model
        self.sub_weight = sub_weight
        self.speakers = SpeakerCache(speaker_cache)

    def forward(self, batch: dict[str, torch.Tensor], mels: list[torch.Tensor],
                refs: list[int] | None = None) -> torch.Tensor:
        spk = self.speakers.embed(self.model, mels, refs)
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
    train_data: Any  # BundleData, or anything with len(), batch(indices) and lengths()
    eval_data: Any
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
    perf: Perf = field(default_factory=Perf)
    lengths: Lengths | None = None
    prefetcher: Prefetcher | None = None
    checkpointer: BackgroundCheckpointer | None = None
    # Graceful stop: `stop_asked` is this rank's signal (set by the loop's StopFlag); `stop_agreed` is
    # whether any rank asked, learnt in the step's one reduce, so every rank stops after the same step.
    stop_asked: Any = None
    stop_agreed: bool = False
    # The code this session trains with, read once (a git call per checkpoint would be waste), and
    # recorded in every checkpoint's meta: the provenance an export and the gate carry forward.
    code_revision: str = ""

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

    def weights_changed(self) -> None:
        """Weights were loaded (resume, rollback): cached x-vectors may no longer hold."""
        self.accelerator.unwrap_model(self.objective).speakers.clear()


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


def resolve_precision(spec: RunSpec, cpu: bool) -> str:
    """`auto` is the design's default: bf16 autocast with fp32 master weights where the GPU does bf16,
    plain fp32 elsewhere (CPU runs are the exact reference the resume and alignment tests compare)."""
    if spec.train.precision != "auto":
        return spec.train.precision
    return "bf16" if not cpu and torch.cuda.is_bf16_supported() else "fp32"


def make_accelerator(spec: RunSpec) -> Accelerator:
    device = spec.train.device
    cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available())
    mixed = "bf16" if resolve_precision(spec, cpu) == "bf16" else "no"
    # Gradient accumulation is done by the loop itself (no_sync on all but the last micro-batch),
    # so the guard can look at the accumulated step before anything is applied.
    return Accelerator(cpu=cpu, mixed_precision=mixed)


def build_session(spec: RunSpec, run_dir: Path, heartbeat: Heartbeat, bundle: Path | None = None,
                  perf: Perf | None = None) -> Session:
    """`bundle` overrides the spec's bundle path (--bundle-root); its content is verified either way."""
    seed_everything(spec.train.seed, spec.train.deterministic)
    bundle = bundle or Path(spec.bundle)
    fingerprint = verify_bundle(bundle)
    accelerator = make_accelerator(spec)
    model, processor = load_base_model(spec.model, spec.language)
    ids = SpecialIds.from_config(model.config)
    lang = ensure_language(model, spec.language)
    train_data = BundleData(bundle, processor, ids, lang, "train")
    eval_data = BundleData(bundle, processor, ids, lang, "eval")
    return assemble_session(spec, run_dir, heartbeat, accelerator, model, train_data, eval_data, bundle,
                            fingerprint, perf)


def assemble_session(spec: RunSpec, run_dir: Path, heartbeat: Heartbeat, accelerator: Accelerator, model: Any,
                     train_data: Any, eval_data: Any, bundle: Path, fingerprint: str,
                     perf: Perf | None = None) -> Session:
    """Optimizer, schedule, accelerate wrapping, cursor and the speed settings around a loaded model."""
    perf = perf or Perf.resolve(accelerator.device)
    heartbeat.enabled = bool(accelerator.is_main_process)
    model.speaker_encoder.requires_grad_(False)
    global_batch = spec.train.batch_size * accelerator.num_processes
    if len(train_data) < global_batch:
        raise ValueError(f"bundle {bundle} has {len(train_data)} train rows, fewer than one batch ({global_batch})")
    model.to(accelerator.device)
    speed_up_model(model, perf)
    for data in (train_data, eval_data):
        if hasattr(data, "pad_multiple"):
            data.pad_multiple = perf.pad_multiple
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, spec.train.lr, spec.train.weight_decay, perf, accelerator.device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(spec.train.warmup_steps, spec.train.max_steps))
    injector = install_fault(model)
    cache = perf.speaker_cache and injector is None  # an injected fault must meet every encoder call
    objective, optimizer = accelerator.prepare(Objective(model, spec.train.sub_talker_weight, cache), optimizer)
    objective.train()
    model.speaker_encoder.eval()
    cursor = Cursor(epoch=0, position=0, seed=spec.train.seed, batch_size=spec.train.batch_size,
                    world_size=accelerator.num_processes, rows=len(train_data), bucket=perf.bucket)
    session = Session(spec, run_dir, bundle, accelerator, objective, optimizer, scheduler, train_data, eval_data,
                      cursor, fingerprint, heartbeat, perf=perf)
    session.lengths = Lengths(list(train_data.lengths()))
    if perf.prefetch > 0:
        session.prefetcher = Prefetcher(train_data, perf.prefetch, perf.workers, accelerator.device.type == "cuda",
                                        accelerator.process_index, session.lengths)
    if perf.async_checkpoint:
        session.checkpointer = BackgroundCheckpointer(pin=accelerator.device.type == "cuda")
    session.initial_scheduler = scheduler.state_dict()
    session.injector = injector
    session.code_revision = code_revision() if session.is_main else ""  # only main writes checkpoints
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


def write_checkpoint(s: Session, background: bool = False) -> Path | None:
    """Every rank contributes its RNG state; the main process writes.

    Returns the durable path on main, or None when the write went to the
    background (`finish_background` reports it once durable) or on other ranks.
    """
    state = checkpoint_state(s)
    path = None
    if s.is_main:
        meta = {"cursor": s.cursor, "spec": encode_spec(s.spec).decode(), "bundle_fingerprint": s.fingerprint,
                "micro_steps": s.micro_steps, "code_revision": s.code_revision}
        if background and s.checkpointer is not None:
            s.checkpointer.submit(s.run_dir, s.step, state, meta)
        else:
            path = save_checkpoint(s.run_dir, s.step, state, meta)
    s.accelerator.wait_for_everyone()
    return path


def checkpoint_done(s: Session, path: Path) -> None:
    """Bookkeeping once a checkpoint is durable: retention, then the status that names it."""
    step = int(path.name.split("-")[1])
    pause("checkpoint-before-prune", step)
    prune(s.run_dir, s.spec.posture.keep_last, protect=s.resumed_from)
    ref = CheckpointRef(step=step, path=str(path), written_at=time.time())
    s.heartbeat.update(last_checkpoint=ref)
    s.heartbeat.event("checkpoint", f"durable checkpoint {path.name}", step)


def reserve_background(s: Session) -> None:
    """Once the optimizer state exists, pin the checkpoint buffers in the background (main process only)."""
    if s.checkpointer is None or s.checkpointer.reserved or not s.is_main:
        return
    s.checkpointer.reserve({"model": s.model.state_dict(), "optimizer": s.optimizer.state_dict()})


def finish_background(s: Session, wait: bool) -> None:
    """Collect a finished background write (or, with `wait`, the one in flight) and do its bookkeeping."""
    if s.checkpointer is None:
        return
    path = s.checkpointer.wait() if wait else s.checkpointer.poll()
    if path is not None:
        checkpoint_done(s, path)
