"""Export a run's checkpoint as a model directory that `Qwen3TTSModel.from_pretrained` loads.

The export keeps the speaker encoder and `tts_model_type = "base"` (the result
still clones any voice from reference audio), carries the Swedish language tag
when the run used it, and records its provenance (run, step, spec, bundle
fingerprint, the code revision the checkpoint was trained with, and the
exporter's own) in `export.json`. Written to a temp dir and
renamed, so a failed export never leaves a half-written model behind, nor
the space one held when the disk filled.

An adapter run (train.adapter) exports the same kind of model dir, its LoRA
adapter and language row merged into the base weights, so the gate and the
sidecar take it like any other; `adapter_only` writes the adapter alone
instead, as peft saves one (adapter_config.json, adapter_model.safetensors)
plus the language row and export.json: small, and applied to the base it was
trained on (qwen_train.train.recipes.adapter.load_adapter_dir).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import msgspec

from qwen_train.atomic import atomic_write_bytes
from qwen_train.disk import DiskFull, disk_writes
from qwen_train.revision import code_revision


class ExportError(RuntimeError):
    """An export that cannot be made; the message names the run or checkpoint."""


class ExportDiskFull(ExportError):
    """The export's disk could not take it; its half-written temp dir is already gone (exit FAILED_DISK_FULL)."""


class ExportProvenance(msgspec.Struct, frozen=True):
    run_dir: str
    step: int
    checkpoint: str
    spec: str
    bundle_fingerprint: str
    base_model: str
    code_revision: str  # the code the checkpoint was trained with, from its meta ("" when it records none)
    exported_at: float
    # the code that made this export; None in an export.json written before the two were told apart,
    # whose `code_revision` is then the exporter's, not the training code's
    export_code_revision: str | None = None
    # what the dir holds: "full" (a full fine-tune's weights), "lora-merged" (base + adapter, merged),
    # "lora-adapter" (the adapter alone: apply it to `base_model`)
    contents: str = "full"


def _pick(run_dir: Path, step: int | None) -> Path:
    from qwen_train.checkpoint_files import CheckpointError, list_checkpoints, pick_checkpoint

    ckpts = list_checkpoints(run_dir)
    if not ckpts:
        raise ExportError(f"{run_dir}: no durable checkpoint to export (is this a run directory?)")
    try:
        return pick_checkpoint(run_dir, step, ckpts)
    except CheckpointError as exc:
        raise ExportError(str(exc)) from None


def trained_model(spec: Any, ckpt: Path, meta: Any, adapter_only: bool) -> tuple[Any, Any, str]:
    """The base model with the checkpoint's weights in (an adapter merged, unless `adapter_only`), its processor,
    and what the export holds; ExportError when the checkpoint cannot be applied."""
    from qwen_train.modeldir import load_base_model
    from qwen_train.train.checkpointing.checkpoint import load_state
    from qwen_train.train.recipes.adapter import (
        AdapterError,
        adapt_for_spec,
        base_mismatch,
        load_model_state,
        merge_adapter,
    )

    if spec.train.adapter is None:
        if adapter_only:
            raise ExportError(f"{ckpt}: a full fine-tune has no adapter to write alone; export it without --adapter")
        model, processor = load_base_model(spec.model, spec.language)
        model.load_state_dict(load_state(ckpt)["model"])
        return model, processor, "full"
    mismatch = base_mismatch(str(ckpt), meta.base_model_digest, Path(spec.model))
    if mismatch is not None:
        raise ExportError(mismatch)
    model, processor = load_base_model(spec.model, spec.language)
    try:
        tuner = adapt_for_spec(model, spec)
        load_model_state(model, load_state(ckpt)["model"], spec)
    except AdapterError as exc:
        raise ExportError(f"{ckpt}: {exc}") from None
    if adapter_only:
        return model, tuner, "lora-adapter"
    return merge_adapter(model, tuner), processor, "lora-merged"


def export_run(run_dir: Path, step: int | None = None, out: Path | None = None, adapter_only: bool = False) -> Path:
    """Export a checkpoint (the newest, or `step`'s) to `out`; `adapter_only` for an adapter run's adapter alone."""
    from qwen_train.spec import decode_spec
    from qwen_train.train.checkpointing.checkpoint import CheckpointError, verify_checkpoint

    ckpt = _pick(run_dir, step)
    try:
        meta = verify_checkpoint(ckpt)
    except CheckpointError as exc:
        raise ExportError(str(exc)) from None
    spec = decode_spec(meta.spec, source=f"{ckpt}/meta.json")
    out = out or run_dir / "export" / (f"{ckpt.name}-adapter" if adapter_only else ckpt.name)
    if out.exists():
        raise ExportError(f"{out} already exists; choose another --out or remove it")
    try:
        model, extra, contents = trained_model(spec, ckpt, meta, adapter_only)
    except CheckpointError as exc:
        raise ExportError(str(exc)) from None
    provenance = ExportProvenance(
        run_dir=str(run_dir.resolve()), step=meta.step, checkpoint=ckpt.name, spec=meta.spec,
        bundle_fingerprint=meta.bundle_fingerprint, base_model=str(Path(spec.model)), code_revision=meta.code_revision,
        exported_at=time.time(), export_code_revision=code_revision(), contents=contents,
    )
    tmp = out.with_name(f".{out.name}.exporting")
    try:
        with disk_writes(f"export {out.name}", out.parent):
            _write_dir(tmp, model, extra, Path(spec.model), adapter_only, provenance)
            tmp.rename(out)
    except DiskFull as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ExportDiskFull(f"{exc}; the half-written export was removed: free some space there (or pick --out "
                             "on another disk) and export again") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _write_dir(tmp: Path, model: Any, extra: Any, base: Path, adapter_only: bool,
               provenance: ExportProvenance) -> None:
    """The export's files, into `tmp`, which the caller renames into place."""
    from qwen_train.modeldir import save_model_dir
    from qwen_train.train.recipes.adapter import save_adapter_dir

    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    if adapter_only:
        save_adapter_dir(model, extra, tmp, base)
    else:
        save_model_dir(model, tmp)
        extra.save_pretrained(tmp)  # the processor
        shutil.copyfile(base / "generation_config.json", tmp / "generation_config.json")
        shutil.copytree(base / "speech_tokenizer", tmp / "speech_tokenizer")
    atomic_write_bytes(tmp / "export.json", msgspec.json.format(msgspec.json.encode(provenance), indent=2))
