"""The disk plan: what a run holds on its run dir's disk at its peak, beside the free space there (no torch).

The memory plan's sibling. A durable checkpoint holds every weight and, for
each trained one, two AdamW moments: at full size and fp32 master that is
21.5 GiB, half of it under lean (bf16 weights and moments), and a few tens of
MB for a LoRA adapter (fp32 adapters and moments; the frozen base is re-read
from the model dir). Retention deletes the oldest only after a newer one is
durable, so at its peak a run holds `posture.keep_last` checkpoints plus the
one being written, then an export (the model dir: fp32 weights plus the base
dir's tokenizers), and its logs. `qwen-train plan` prints it and the daemon's
launch check reads it; the trainer's own check before each checkpoint
(train/device/diskspace.py) measures the state it is about to write instead.

A scored run (scores.enabled) also keeps its best-scored checkpoint and one
waiting for its scores (scored_parts).

What is already on disk counts: a resume's kept checkpoints are part of the
peak, so what must still be free is the peak less those.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from qwen_train.checkpoint_files import CheckpointError, list_checkpoints, read_meta
from qwen_train.disk import free_space, size_text
from qwen_train.plan.for_spec import resolve_recipe
from qwen_train.plan.memory import read_config
from qwen_train.plan.params import adapter_params, count_params
from qwen_train.spec import Adapter, RunSpec

# Bytes an element of (weights, each AdamW moment) takes in a checkpoint, by recipe.
STORED: dict[str, tuple[int, int]] = {"fp32-master": (4, 4), "lean": (2, 2), "upstream": (2, 2)}
ADAPTER_STORED = (4, 4)  # LoRA adapters and their moments are fp32 under either recipe
EXPORT_WEIGHT_BYTES = 4  # an export loads the base in fp32 and saves what it holds
FRAMING = 0.005  # torch.save's zip records, alignment and pickled keys (measured ~0.3% on the tiny model)
SLACK = 1 << 20  # meta.json and the directory entries of a checkpoint
LOG_BYTES_PER_STEP = 512  # a losses.jsonl line (~90 bytes) and three TensorBoard records (~50 each), rounded up
LOG_BASE = 4 << 20  # status.json, report.json, the trainer's log
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
MAX_FILES = 100_000  # a model dir holds a few dozen; a walk that finds more stops counting
SCORED_PARTS = frozenset({"best-scored", "waiting for scores"})  # whole checkpoints a scored run keeps besides


class DiskPlan(msgspec.Struct, frozen=True):
    """Bytes by part at the run's peak on disk; with `run_dir`, the free space there and whether it fits."""

    recipe: str
    mode: str  # "full" or "lora"
    checkpoint_bytes: int  # one durable checkpoint of this run
    checkpoints: dict[str, int]  # one checkpoint of the same model as a full fp32-master, lean, or LoRA run
    keep_last: int
    parts: dict[str, int]  # kept checkpoints, the one in flight, the export, the logs
    peak_bytes: int
    run_dir: str | None = None
    kept: int = 0  # durable checkpoints already in the run dir (a resume)
    kept_bytes: int = 0
    need_bytes: int | None = None  # the peak less what is already there: what must still be free
    free_bytes: int | None = None
    total_bytes: int | None = None
    checked: str | None = None  # where the free space was read (the nearest existing dir)
    fits: bool | None = None


def framed(body: int) -> int:
    """A checkpoint's size on disk for `body` bytes of tensors."""
    return int(body * (1 + FRAMING)) + SLACK


def full_checkpoint(config: Mapping[str, Any], recipe: str, freeze_text_embedding: bool) -> int:
    """Every weight (speaker encoder included) and two moments for each trained one."""
    params = count_params(config)
    trained = params.total - params.speaker_encoder - (params.text_embedding if freeze_text_embedding else 0)
    weight, moment = STORED[recipe]
    return framed(params.total * weight + 2 * trained * moment)


def adapter_checkpoint(config: Mapping[str, Any], adapter: Adapter, language_row: bool) -> int:
    """The adapter (and the language row) with their two moments: the frozen base is not in it."""
    trained = adapter_params(config, adapter.rank, adapter.target_modules, adapter.code_predictor, language_row)
    weight, moment = ADAPTER_STORED
    return framed(trained * (weight + 2 * moment))


def _files_besides_weights(model_dir: Path) -> int:
    """Bytes of the model dir an export copies as they are (tokenizers, configs), its weight files aside."""
    total, seen = 0, 0
    for root, _dirs, files in os.walk(model_dir):
        for name in files:
            seen += 1
            if seen > MAX_FILES:
                return total
            if Path(root) == model_dir and name.endswith(WEIGHT_SUFFIXES):
                continue
            try:
                total += os.stat(Path(root) / name).st_size
            except OSError:
                continue
    return total


def export_bytes(config: Mapping[str, Any], model_dir: Path) -> int:
    return count_params(config).total * EXPORT_WEIGHT_BYTES + _files_besides_weights(model_dir) + SLACK


def kept_bytes(ckpt: Path) -> int:
    """What a durable checkpoint's listed files take, by its manifest (0 when it cannot be read)."""
    try:
        return sum(entry.size for entry in read_meta(ckpt).files.values())
    except CheckpointError:
        return 0


def _checkpoints(config: Mapping[str, Any], spec: RunSpec) -> dict[str, int]:
    """One checkpoint of this model trained in each way, for comparison: what the run's recipe, lean or an
    adapter would cost (the spec's adapter, else the default one)."""
    freeze, language = spec.train.freeze_text_embedding, spec.language is not None
    sizes = {name: full_checkpoint(config, name, freeze) for name in ("fp32-master", "lean")}
    sizes["lora"] = adapter_checkpoint(config, spec.train.adapter or Adapter(), language)
    return sizes


def scored_parts(spec: RunSpec, one: int) -> dict[str, int]:
    """A scored run (scores.enabled) keeps the best-scored checkpoint beside the newest ones, and checkpoints
    waiting for their scores (posture.keep_unscored): one of those is planned, as scoring keeps up within a
    checkpoint interval. More waiting than the disk holds are let go, oldest first, before the run would end
    disk full (qwen_train/scores/retention.py), so this plan is what the run needs, not a bound it can break."""
    if not spec.scores.enabled:
        return {}
    return {"best-scored": one, **({"waiting for scores": one} if spec.posture.keep_unscored else {})}


def plan_disk(spec: RunSpec, run_dir: Path | None = None, gpu_bytes: int | None = None,
              recipe: str | None = None) -> DiskPlan:
    """The run's disk plan; with `run_dir`, against its file system's free space. ValueError when the model's
    config cannot be read; OSError when the free space cannot be (no part of the path exists)."""
    config = read_config(Path(spec.model))
    chosen = recipe or resolve_recipe(spec, gpu_bytes)
    if chosen not in STORED:
        raise ValueError(f"unknown recipe {chosen!r}: one of {sorted(STORED)}")
    sizes = _checkpoints(config, spec)
    adapter = spec.train.adapter
    one = sizes["lora"] if adapter is not None else full_checkpoint(config, chosen, spec.train.freeze_text_embedding)
    keep = spec.posture.keep_last
    parts = {"kept checkpoints": keep * one, "one being written": one, **scored_parts(spec, one),
             "export": export_bytes(config, Path(spec.model)),
             "logs": LOG_BASE + spec.train.max_steps * LOG_BYTES_PER_STEP}
    plan = DiskPlan(recipe=chosen, mode="full" if adapter is None else "lora", checkpoint_bytes=one,
                    checkpoints=sizes, keep_last=keep, parts=parts, peak_bytes=sum(parts.values()))
    return plan if run_dir is None else against(plan, run_dir)


def against(plan: DiskPlan, run_dir: Path) -> DiskPlan:
    """The plan beside `run_dir`'s free space, counting the checkpoints it already holds."""
    try:
        kept = list_checkpoints(run_dir)
    except OSError:
        kept = []
    counted = min(len(kept), plan.keep_last + len(SCORED_PARTS.intersection(plan.parts)))
    need = max(0, plan.peak_bytes - counted * plan.checkpoint_bytes)
    space = free_space(run_dir)
    return msgspec.structs.replace(plan, run_dir=str(run_dir), kept=len(kept),
                                   kept_bytes=sum(kept_bytes(c) for c in kept), need_bytes=need,
                                   free_bytes=space.free_bytes, total_bytes=space.total_bytes,
                                   checked=space.checked, fits=space.free_bytes >= need)


def disk_text(plan: DiskPlan) -> str:
    """The plan as an operator reads it, beside the memory plan: one line per part, the peak, what is free."""
    mode = "a LoRA adapter" if plan.mode == "lora" else f"a full fine-tune, recipe {plan.recipe}"
    labels = {"lora": "a LoRA adapter"}
    others = ", ".join(f"{labels.get(name, name)} {size_text(size)}" for name, size in plan.checkpoints.items())
    lines = ["disk", f"  {'checkpoint':<18} {size_text(plan.checkpoint_bytes):>10}  (one durable checkpoint of {mode})",
             f"  {'':<18} {'':>10}  (this model's checkpoint as {others})"]
    lines += [f"  {name:<18} {size_text(value):>10}" for name, value in plan.parts.items()]
    extra = "".join(f" + {name}" for name in plan.parts if name in SCORED_PARTS)
    lines.append(f"  {'peak':<18} {size_text(plan.peak_bytes):>10}  ({plan.keep_last} kept + one being written{extra} "
                 "+ export + logs)")
    if plan.run_dir is None or plan.free_bytes is None or plan.need_bytes is None:
        return "\n".join(lines)
    if plan.kept:
        lines.append(f"  {plan.run_dir} already holds {plan.kept} durable checkpoint{'s' if plan.kept != 1 else ''} "
                     f"({size_text(plan.kept_bytes)}): {size_text(plan.need_bytes)} more at the peak")
    verdict = "fits" if plan.fits else "does NOT fit"
    lines.append(f"  free: {size_text(plan.free_bytes)} of {size_text(plan.total_bytes or 0)} on {plan.checked}'s file "
                 f"system (the run dir {plan.run_dir}): {verdict}")
    if not plan.fits:
        lines.append(f"  free space there, keep fewer checkpoints (posture.keep_last, now {plan.keep_last}: each is "
                     f"{size_text(plan.checkpoint_bytes)}), or put the run dir on another disk (--run-dir)")
    return "\n".join(lines)
