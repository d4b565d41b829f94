"""What is scored, and how it is loaded: the base model, a durable checkpoint or an exported model dir.

A checkpoint is scored without exporting it (an export writes the whole model to disk, 7 GB at full size):
the base is loaded and the checkpoint's weights applied in memory exactly as `qwen-train export` applies
them (export.trained_model: a full fine-tune's state, or an adapter merged), then moved to the scoring
device and dtype. The base model is scored as it was published, zero-shot: no language tag added (its
clones use "auto"), which is the reference a fine-tune has to beat; a checkpoint with the run's Swedish tag
clones with it.

Every subject has a digest, which keys its cached scores: a checkpoint's is its manifest's file hashes
(already in meta.json, so nothing is re-read), a model dir's is adapter.base_digest (config and weights).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from qwen_train.checkpoint_files import read_meta, step_of
from qwen_train.scores.identity import checkpoint_digest
from qwen_train.scores.record import BASE_FILE, step_file
from qwen_train.spec import RunSpec, ScoresSpec, decode_spec

SubjectKind = Literal["base", "checkpoint", "export"]


@dataclass(frozen=True)
class Subject:
    name: str  # "base", or the checkpoint's dir name
    kind: SubjectKind
    path: Path  # the model dir, or the checkpoint dir
    step: int | None
    digest: str
    language: str | None  # the tag its clones are generated with (None: "auto")
    file_name: str = ""  # where its scores go, when not the usual name (`file`)

    @property
    def file(self) -> str:
        """Its scores' file name under RUN_DIR/scores: base.json, step-N.json for a checkpoint, export-DIGEST.json
        for an exported model dir (never a step's name: the checkpoint's scores are the checkpoint's)."""
        if self.file_name:
            return self.file_name
        if self.kind == "export":
            return f"{self.name}.json"
        return BASE_FILE if self.step is None else step_file(self.step)


def dir_digest(model_dir: Path) -> str:
    from qwen_train.train.recipes.adapter import base_digest

    return base_digest(model_dir)


def base_subject(spec: RunSpec) -> Subject:
    path = Path(spec.model)
    return Subject(name="base", kind="base", path=path, step=None, digest=dir_digest(path), language=None)


def checkpoint_subject(ckpt: Path, spec: RunSpec) -> Subject:
    """From meta.json alone (CheckpointError when unreadable): the files' hashes are the digest."""
    step = step_of(ckpt.name)
    return Subject(name=ckpt.name, kind="checkpoint", path=ckpt, step=read_meta(ckpt).step if step is None else step,
                   digest=checkpoint_digest(ckpt), language=spec.language)


def export_subject(export_dir: Path, spec: RunSpec) -> Subject:
    """An exported model dir, named by its digest (its clones never share a folder with a checkpoint's)."""
    digest = dir_digest(export_dir)
    return Subject(name=f"export-{digest[:12]}", kind="export", path=export_dir, step=None, digest=digest,
                   language=spec.language)


def scoring_dtype(scores: ScoresSpec, device: torch.device) -> torch.dtype:
    """bf16 on a GPU that computes in it (half the memory beside a training run), fp32 elsewhere."""
    if scores.dtype == "fp32" or (scores.dtype == "auto" and device.type == "cpu"):
        return torch.float32
    if scores.dtype == "auto" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float32
    return torch.bfloat16


def _wrap(model: Any, processor: Any, device: torch.device, dtype: torch.dtype) -> Any:
    from qwen_tts import Qwen3TTSModel

    model.to(device=device, dtype=dtype).eval()
    return Qwen3TTSModel(model=model, processor=processor, generate_defaults=getattr(model, "generate_config", {}))


def _checkpoint_model(ckpt: Path) -> tuple[Any, Any]:
    from qwen_train.export import trained_model
    from qwen_train.train.checkpointing.checkpoint import verify_checkpoint

    meta = verify_checkpoint(ckpt)
    spec = decode_spec(meta.spec, source=f"{ckpt}/meta.json")
    model, processor, _contents = trained_model(spec, ckpt, meta, adapter_only=False)
    return model, processor


def load_subject(subject: Subject, device: torch.device, dtype: torch.dtype) -> Any:
    """A Qwen3TTSModel wrapper on `device` in `dtype`; the base without a language tag."""
    from qwen_train.modeldir import load_base_model

    if subject.kind == "checkpoint":
        model, processor = _checkpoint_model(subject.path)
    else:
        model, processor = load_base_model(str(subject.path), subject.language if subject.kind == "export" else None)
    if model.config.tts_model_type != "base" or model.speaker_encoder is None:
        raise ValueError(f"{subject.path}: not a base model with a speaker encoder; it cannot clone voices")
    return _wrap(model, processor, device, dtype)
