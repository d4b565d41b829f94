"""Export a run's checkpoint as a model directory that `Qwen3TTSModel.from_pretrained` loads.

The export keeps the speaker encoder and `tts_model_type = "base"` (the result
still clones any voice from reference audio), carries the Swedish language tag
when the run used it, and records its provenance (run, step, spec, bundle
fingerprint, the code revision the checkpoint was trained with, and the
exporter's own) in `export.json`. Written to a temp dir and
renamed, so a failed export never leaves a half-written model behind.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import msgspec

from qwen_train.atomic import atomic_write_bytes
from qwen_train.revision import code_revision


class ExportError(RuntimeError):
    """An export that cannot be made; the message names the run or checkpoint."""


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


def _pick(run_dir: Path, step: int | None) -> Path:
    from qwen_train.checkpoint_files import CheckpointError, list_checkpoints, pick_checkpoint

    ckpts = list_checkpoints(run_dir)
    if not ckpts:
        raise ExportError(f"{run_dir}: no durable checkpoint to export (is this a run directory?)")
    try:
        return pick_checkpoint(run_dir, step, ckpts)
    except CheckpointError as exc:
        raise ExportError(str(exc)) from None


def export_run(run_dir: Path, step: int | None = None, out: Path | None = None) -> Path:
    from qwen_train.modeldir import load_base_model, save_model_dir
    from qwen_train.spec import decode_spec
    from qwen_train.train.checkpoint import CheckpointError, load_state, verify_checkpoint

    ckpt = _pick(run_dir, step)
    try:
        meta = verify_checkpoint(ckpt)
    except CheckpointError as exc:
        raise ExportError(str(exc)) from None
    spec = decode_spec(meta.spec, source=f"{ckpt}/meta.json")
    out = out or run_dir / "export" / ckpt.name
    if out.exists():
        raise ExportError(f"{out} already exists; choose another --out or remove it")
    model, processor = load_base_model(spec.model, spec.language)
    model.load_state_dict(load_state(ckpt)["model"])
    tmp = out.with_name(f".{out.name}.exporting")
    shutil.rmtree(tmp, ignore_errors=True)
    save_model_dir(model, tmp)
    processor.save_pretrained(tmp)
    base = Path(spec.model)
    shutil.copyfile(base / "generation_config.json", tmp / "generation_config.json")
    shutil.copytree(base / "speech_tokenizer", tmp / "speech_tokenizer")
    provenance = ExportProvenance(
        run_dir=str(run_dir.resolve()), step=meta.step, checkpoint=ckpt.name, spec=meta.spec,
        bundle_fingerprint=meta.bundle_fingerprint, base_model=str(base), code_revision=meta.code_revision,
        exported_at=time.time(), export_code_revision=code_revision(),
    )
    atomic_write_bytes(tmp / "export.json", msgspec.json.format(msgspec.json.encode(provenance), indent=2))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(out)
    return out
