"""Everything a training run holds, built from a spec: each part from its own slice of it.

Kept apart from the loop so the loop reads as a plain sequence of steps. The
same code runs on one CPU, one GPU, or several processes under
`accelerate launch`: the objective is wrapped by accelerate (DDP when
distributed), each rank draws its own slice of the global batch, and only the
main process writes status, reports and checkpoints.

`assemble_session` is the part that does not care where the weights and rows
come from: the real path (`build_session`: weights through the qwen-tts
loader, rows from a verified bundle) and the full-size GPU benchmark (random
weights built on the GPU, synthetic rows) both go through it, so the benchmark
measures the code real runs use. Each part takes its slice: the optimizer,
schedule and cursor `spec.train`, the checkpointer `spec.posture`, the step's
guard `spec.guard`; how fast it all runs is `Perf`'s business (perf.py).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator

from qwen_train.bundle.fingerprint import verify_bundle
from qwen_train.modeldir import load_base_model
from qwen_train.revision import code_revision
from qwen_train.spec import RunSpec, TrainConfig
from qwen_train.train.checkpointing.background import BackgroundCheckpointer
from qwen_train.train.checkpointing.checkpointer import Checkpointer, Live, Origin
from qwen_train.train.checkpointing.rng import seed_everything
from qwen_train.train.data.batches import BundleData, RunData, require_held_out_speakers
from qwen_train.train.data.cursor import Cursor, Lengths, start_cursor
from qwen_train.train.data.layout import SpecialIds
from qwen_train.train.data.prefetch import Prefetcher
from qwen_train.train.device.auto_budget import batching_text, pin_budget, record_choice, resolve_budget, smallest
from qwen_train.train.device.perf import Perf, make_optimizer, speed_up_model
from qwen_train.train.guard.faults import FaultInjector, cap_gpu, install_fault
from qwen_train.train.heartbeat import Heartbeat
from qwen_train.train.language import ensure_language
from qwen_train.train.objective import Objective, unwrap
from qwen_train.train.progress import Progress
from qwen_train.train.recipes.adapter import adapt_for_spec, base_digest
from qwen_train.train.recipes.lean_adamw import LeanAdamW
from qwen_train.train.recipes.recipe import Recipe, apply_recipe, forces_bf16, pin_recipe, resolve_recipe
from qwen_train.train.startup import Startup


@dataclass(frozen=True)
class Runtime:
    """Where the run computes and how fast: the accelerator, and the speed settings for its device."""

    accelerator: Accelerator
    perf: Perf
    # In which dtypes weights and optimizer state live (recipe.py), resolved for this device and its autocast.
    recipe: Recipe = Recipe("fp32-master", "the default")

    @classmethod
    def for_spec(cls, spec: RunSpec, perf_overrides: dict[str, Any] | None = None) -> Runtime:
        """The accelerator `spec.train` asks for, its device's Perf defaults with any overrides on top, and
        the recipe `train.recipe` resolves to there."""
        accelerator = make_accelerator(spec)
        cap_gpu(accelerator.device)
        recipe = resolve_recipe(spec.train, accelerator.device, str(accelerator.mixed_precision))
        return cls(accelerator, Perf.resolve(accelerator.device, perf_overrides), recipe)


@dataclass
class Session:
    """One run's parts, wired once by `assemble_session`; the loop, the step and the retry policy read them.

    What moves while training lives in `progress`; how the run is saved and restored, in `ckpt`, which
    holds the same model, optimizer, schedule and progress objects (`Live`) so both always see one state.
    """

    spec: RunSpec
    run_dir: Path
    heartbeat: Heartbeat
    accelerator: Accelerator
    perf: Perf
    objective: torch.nn.Module  # the Objective, wrapped by accelerate (DDP when distributed)
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    data: RunData
    lengths: Lengths  # the train rows' lengths, for the bucketed and the frame-budget cursor
    progress: Progress  # where training stands: the one record the step, checkpointer and retry write
    ckpt: Checkpointer
    prefetcher: Prefetcher | None = None
    injector: FaultInjector | None = None
    recipe: Recipe = Recipe("fp32-master", "the default")  # as Runtime resolved it; spec.train.recipe names it
    startup: Startup | None = None  # the launch's phases, closed by the first step (startup.py)

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    @property
    def model(self) -> torch.nn.Module:
        """The bare Qwen3-TTS model (no DDP wrapper): for eval, export and state dicts."""
        return unwrap(self.accelerator, self.objective).model

    @property
    def is_main(self) -> bool:
        return bool(self.accelerator.is_main_process)


def lr_lambda(warmup: int, total: int) -> Callable[[int], float]:
    """Linear warmup, then cosine decay to 10% at `total`."""

    def factor(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def resolve_precision(spec: RunSpec, cpu: bool) -> str:
    """`auto` is the design's default: bf16 autocast with fp32 master weights where the GPU does bf16,
    plain fp32 elsewhere (CPU runs are the exact reference the resume and alignment tests compare). An
    explicit lean recipe computes in bf16 everywhere."""
    if forces_bf16(spec.train):
        return "bf16"
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


def make_optimization(model: torch.nn.Module, train: TrainConfig,
                      runtime: Runtime) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over the trainable parameters, and its warmup-then-cosine schedule over `max_steps`.

    An adapter run's parameters are fp32 under either recipe (adapter.py), so it takes plain AdamW.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    device = runtime.accelerator.device
    optimizer: torch.optim.Optimizer
    if runtime.recipe.name == "lean" and train.adapter is None:
        optimizer = LeanAdamW(params, train.lr, train.weight_decay, train.seed, device,
                              fused=runtime.perf.compile_layers and device.type == "cuda")
    else:
        optimizer = make_optimizer(params, train.lr, train.weight_decay, runtime.perf, device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(train.warmup_steps, train.max_steps))
    return optimizer, scheduler


def first_cursor(train: TrainConfig, world_size: int, data: RunData, lengths: Lengths, perf: Perf) -> Cursor:
    """Step 0's cursor: the first batch of epoch 0, in the order the seed and these settings give.

    Checked before the model moves to the device: too few rows for one batch, or (with a frame budget) a row
    wider than the budget, fails the start naming the bundle or the row, not a step hours later.
    """
    budget = train.frame_budget
    if isinstance(budget, str):
        raise ValueError(f'train.frame_budget "{budget}" reached the cursor unresolved (see budget_for_run)')
    global_batch = train.batch_size * world_size
    if budget is None and len(data.train) < global_batch:
        raise ValueError(f"bundle {data.bundle} has {len(data.train)} train rows, fewer than one batch "
                         f"({global_batch})")
    return start_cursor(train.seed, train.batch_size, budget, world_size, lengths, perf.bucket,
                        perf.pad_multiple, data.train.row_name)


def budget_for_run(spec: RunSpec, run_dir: Path, heartbeat: Heartbeat, accelerator: Accelerator, lengths: Lengths,
                   perf: Perf) -> RunSpec:
    """The spec with its frame budget a number (or none), "auto" resolved and recorded; status says which."""
    choice = resolve_budget(spec, run_dir, accelerator.device, lengths.values.tolist(), perf.pad_multiple,
                            accelerator.num_processes)
    if choice is None:
        budget = spec.train.frame_budget
        heartbeat.update(batching=f"frame budget {budget} padded positions" if budget is not None
                         else f"{spec.train.batch_size} rows a micro-batch")
        return spec
    if accelerator.num_processes > 1 and not choice.kept and choice.frame_budget is not None:
        mine = torch.tensor([choice.frame_budget], device=accelerator.device)
        choice = smallest(choice, [int(b) for b in accelerator.gather(mine).tolist()])
    if accelerator.is_main_process and not choice.kept:
        record_choice(run_dir, choice)
    text = batching_text(choice)
    heartbeat.update(batching=text)
    heartbeat.event("budget", text)
    if accelerator.is_main_process:
        print(f"qwen-train: {text}", file=sys.stderr, flush=True)
    return pin_budget(spec, choice)


def build_session(spec: RunSpec, run_dir: Path, heartbeat: Heartbeat, bundle: Path | None = None,
                  startup: Startup | None = None) -> Session:
    """`bundle` overrides the spec's bundle path (--bundle-root); its content is verified either way.

    A full fine-tune under the lean recipe loads bf16-stored weights as bf16 (modeldir.py: the same values
    as fp32 and a cast, in half the time and memory); an adapter run loads fp32 and casts its frozen base after,
    so its adapters are made fp32."""
    seed_everything(spec.train.seed, spec.train.deterministic)
    bundle = bundle or Path(spec.bundle)
    runtime = Runtime.for_spec(spec)
    heartbeat.enabled = heartbeat.enabled and bool(runtime.accelerator.is_main_process)  # before any phase writes
    startup = startup or Startup(heartbeat)
    with startup.phase("verifying the bundle"):
        fingerprint = verify_bundle(bundle)
    with startup.phase("loading weights"):
        lean = runtime.recipe.name == "lean" and spec.train.adapter is None
        model, processor = load_base_model(spec.model, spec.language, bf16=lean)
    with startup.phase("reading rows"):
        ids = SpecialIds.from_config(model.config)
        lang = ensure_language(model, spec.language)
        held_out = BundleData(bundle, processor, ids, lang, "eval")
        require_held_out_speakers(spec.lane, held_out)
        data = RunData(train=BundleData(bundle, processor, ids, lang, "train"), eval=held_out, bundle=bundle,
                       fingerprint=fingerprint)
    return assemble_session(spec, run_dir, heartbeat, runtime, model, data, startup)


def assemble_session(spec: RunSpec, run_dir: Path, heartbeat: Heartbeat, runtime: Runtime, model: torch.nn.Module,
                     data: RunData, startup: Startup | None = None) -> Session:
    """Optimizer, schedule, accelerate wrapping, cursor, checkpointer and the speed settings around a loaded model."""
    startup = startup or Startup(heartbeat)
    accelerator, perf = runtime.accelerator, runtime.perf
    spec = pin_recipe(spec, runtime.recipe)  # checkpoints record the recipe trained, not "auto"
    heartbeat.enabled = heartbeat.enabled and bool(accelerator.is_main_process)  # a replay's stays off
    encoder = model.get_submodule("speaker_encoder")
    encoder.requires_grad_(False)
    lengths = Lengths(list(data.train.lengths()))
    spec = budget_for_run(spec, run_dir, heartbeat, accelerator, lengths, perf)
    cursor = first_cursor(spec.train, accelerator.num_processes, data, lengths, perf)
    with startup.phase("placing the model on the device"):
        adapt_for_spec(model, spec)
        model.to(accelerator.device)
        apply_recipe(model, runtime.recipe, spec.train.freeze_text_embedding, adapter=spec.train.adapter is not None)
        speed_up_model(model, perf)
    data.train.pad_multiple = data.eval.pad_multiple = perf.pad_multiple
    with startup.phase("building the optimizer"):
        optimizer, scheduler = make_optimization(model, spec.train, runtime)
        injector = install_fault(model)
        cache = perf.speaker_cache and injector is None  # an injected fault must meet every encoder call
        objective, optimizer = accelerator.prepare(Objective(model, spec.train.sub_talker_weight, cache), optimizer)
    objective.train()
    encoder.eval()
    progress = Progress(cursor)
    cuda = accelerator.device.type == "cuda"
    prefetcher = None
    if perf.prefetch > 0:
        prefetcher = Prefetcher(data.train, perf.prefetch, perf.workers, cuda, accelerator.process_index, lengths)
    main = bool(accelerator.is_main_process)
    writer = BackgroundCheckpointer(pin=cuda) if perf.async_checkpoint and main else None
    origin = Origin(spec, data.bundle, data.fingerprint, code_revision() if main else "",  # only main writes
                    base_digest(Path(spec.model)) if spec.train.adapter is not None else "")
    ckpt = Checkpointer(run_dir, spec.posture, Live(accelerator, objective, optimizer, scheduler, progress), origin,
                        heartbeat, writer)
    return Session(spec, run_dir, heartbeat, accelerator, perf, objective, optimizer, scheduler, data, lengths,
                   progress, ckpt, prefetcher, injector, recipe=runtime.recipe, startup=startup)
