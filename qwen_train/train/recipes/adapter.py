"""LoRA adapters as a training mode: peft's LoRA layers on the talker, trained by the same loop.

`train.adapter` in the spec (qwen_train/spec.py) turns a run from a full
fine-tune into an adapter run. peft's LoRA layers are injected in place
(`LoraModel` over the bare Qwen3-TTS model, no `PeftModel` wrapper), so every
module keeps its name: the objective, the fault injector and the diagnosis
see `talker.model.layers.15.mlp` as before, with the adapter's `lora_A` and
`lora_B` inside each adapted projection. peft freezes everything else; what
trains is the adapters and, when the run has a language tag, that tag's row
of the codec embedding (`LanguageRow`: a delta on one row, so the tag the
run teaches is learned, not only the layers' answer to it).

A checkpoint of an adapter run holds what trains and its optimizer state,
not the 1.7 B frozen weights: those are re-read from the base model dir on
every resume and export, so the checkpoint records the base's digest
(`base_digest`) and a resume or export over other base weights is refused.

Under either recipe the adapters and their AdamW moments stay fp32 (plain
AdamW; a few tens of MB at full size, where bf16 moments would save nothing
that matters); the recipe decides the frozen base's dtype: fp32 under
fp32-master, bf16 under lean.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from pathlib import Path
from typing import Any

import torch

from qwen_train.digest import file_sha256
from qwen_train.spec import Adapter, RunSpec

ADAPTER_NAME = "default"
LANGUAGE_ROW = "language_row"  # the LanguageRow module's attribute on the model, and its parameters' prefix
CODEC_EMBEDDING = "talker.model.codec_embedding"
SCOPES = {"talker": r"talker\.model\.layers", "code_predictor": r"talker\.code_predictor\.model\.layers"}
WEIGHT_FILES = ("config.json", "*.safetensors", "*.bin")


class AdapterError(ValueError):
    """An adapter that cannot be built or restored here; the message names the cause and the fix."""


def target_pattern(adapter: Adapter) -> str:
    """The regex (peft fullmatches it against module names) for the adapted projections of the chosen layers."""
    scopes = [SCOPES["talker"]] + ([SCOPES["code_predictor"]] if adapter.code_predictor else [])
    names = "|".join(re.escape(n) for n in adapter.target_modules)
    return rf"(?:{'|'.join(scopes)})\.\d+\.(?:[A-Za-z_][A-Za-z0-9_]*\.)*(?:{names})"


def lora_config(adapter: Adapter) -> Any:
    """The peft LoraConfig for the spec's adapter (peft imported here: only adapter runs need it)."""
    from peft import LoraConfig

    return LoraConfig(r=adapter.rank, lora_alpha=adapter.alpha, lora_dropout=adapter.dropout,
                      target_modules=target_pattern(adapter), bias="none")


class LanguageRow(torch.nn.Module):
    """A trainable delta on one row of the codec embedding: the run's language tag, learned.

    Added to the embedding's output wherever the tag's id is looked up (a forward hook), so the rest of the
    table stays frozen and untouched by weight decay; `merge` writes it into the row for the export.
    """

    def __init__(self, embedding: torch.nn.Embedding, row: int) -> None:
        super().__init__()
        self.row = row
        self.delta = torch.nn.Parameter(torch.zeros(embedding.embedding_dim, dtype=torch.float32))
        self._hook = embedding.register_forward_hook(self._add)

    def _add(self, module: torch.nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor:
        hit = (args[0] == self.row).unsqueeze(-1).to(output.dtype)
        return output + hit * self.delta.to(output.dtype)

    def merge(self, embedding: torch.nn.Embedding) -> None:
        """Write the delta into the row and stop adding it."""
        self._hook.remove()
        with torch.no_grad():
            embedding.weight[self.row] += self.delta.to(embedding.weight.dtype)


def codec_embedding(model: torch.nn.Module) -> torch.nn.Embedding:
    """The talker's codec embedding, whose row a language tag is."""
    embedding = model.get_submodule(CODEC_EMBEDDING)
    if not isinstance(embedding, torch.nn.Embedding):
        raise AdapterError(f"{CODEC_EMBEDDING} is a {type(embedding).__name__}, not an embedding: not Qwen3-TTS")
    return embedding


def attach_adapter(model: torch.nn.Module, adapter: Adapter, language_id: int | None) -> Any:
    """Inject the spec's LoRA layers into `model` in place (and the language row); return peft's LoraModel.

    Everything else is frozen by peft. Raises AdapterError when a named projection matches no module.
    """
    from peft.tuners.lora import LoraModel

    tuner = LoraModel(model, lora_config(adapter), ADAPTER_NAME)
    adapted = {name.rsplit(".", 1)[-1] for name in tuner.targeted_module_names}
    missing = [name for name in adapter.target_modules if name not in adapted]
    if missing:
        raise AdapterError(f"train.adapter.target_modules: {', '.join(missing)} match no module of the "
                           f"{'talker or code predictor' if adapter.code_predictor else 'talker'}'s decoder layers")
    if language_id is not None:
        model.add_module(LANGUAGE_ROW, LanguageRow(codec_embedding(model), language_id))
    return tuner


def adapt_for_spec(model: Any, spec: RunSpec) -> Any | None:
    """For an adapter run, attach its adapter, with a row for the spec's language tag (ensure_language has
    placed it); None for a full fine-tune, which this leaves as it is."""
    if spec.train.adapter is None:
        return None
    table = getattr(model.config.talker_config, "codec_language_id", None) or {}
    language_id = table.get(spec.language) if spec.language is not None else None
    return attach_adapter(model, spec.train.adapter, None if language_id is None else int(language_id))


def trained_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """What an adapter run checkpoints: the parameters that train (adapters, the language row), by name."""
    return {name: param.detach() for name, param in model.named_parameters() if param.requires_grad}


def model_state(model: torch.nn.Module, spec: RunSpec) -> dict[str, torch.Tensor]:
    """The weights a checkpoint of this run holds: all of them for a full fine-tune, the trained ones else."""
    return model.state_dict() if spec.train.adapter is None else trained_state(model)


def load_model_state(model: torch.nn.Module, state: dict[str, torch.Tensor], spec: RunSpec) -> None:
    """Load a checkpoint's weights; for an adapter run, exactly the trained parameters must be there."""
    if spec.train.adapter is None:
        model.load_state_dict(state)
        return
    expected = set(trained_state(model))
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise AdapterError(f"the checkpoint's adapter does not fit this run's: missing {missing[:3]}, "
                           f"unexpected {unexpected[:3]} (was it written with another train.adapter?)")
    model.load_state_dict(state, strict=False)


def base_digest(model_dir: Path) -> str:
    """A digest of the base model's config and weight files: what an adapter checkpoint applies to."""
    digest = hashlib.sha256()
    files = sorted({p for pattern in WEIGHT_FILES for p in Path(model_dir).glob(pattern) if p.is_file()})
    for path in files:
        digest.update(f"{path.name}:{file_sha256(path)}\n".encode())
    return digest.hexdigest()


def base_mismatch(what: str, recorded: str, model_dir: Path) -> str | None:
    """Why an adapter written over `recorded` base weights cannot be applied to `model_dir`'s, or None."""
    now = base_digest(model_dir)
    if recorded == now:
        return None
    return (f"{what} holds an adapter trained over other base weights than {model_dir} holds now (base digest "
            f"{recorded[:12] or 'not recorded'}, the dir's {now[:12]}): point spec.model at the base it was "
            "trained on")


def adapter_mismatch(what: str, recorded_spec: str, live: RunSpec) -> str | None:
    """Why a checkpoint of one mode (or adapter shape) cannot continue as this run, or None if they agree."""
    import msgspec

    from qwen_train.spec import TrainConfig

    train = msgspec.json.decode(recorded_spec).get("train", {})
    recorded = msgspec.convert(train.get("adapter"), Adapter | None)
    now = live.train.adapter
    if recorded == now:
        return None
    was = TrainConfig(adapter=recorded).mode
    if was != live.train.mode:
        fix = (f"set train.adapter to {msgspec.json.encode(recorded).decode()}" if recorded is not None
               else "remove train.adapter")
        return (f"{what} was trained as a {was} run and this spec asks for a {live.train.mode} one: "
                f"{fix} in the spec to continue it, or start a new run dir")
    return (f"{what} was trained with adapter {msgspec.json.encode(recorded).decode()} and this spec asks for "
            f"{msgspec.json.encode(now).decode()}: the adapter's shape must stay the run's; restore train.adapter")


def merge_adapter(model: torch.nn.Module, tuner: Any) -> torch.nn.Module:
    """The adapter (and language row) folded into the base weights: a plain Qwen3-TTS model again."""
    row = getattr(model, LANGUAGE_ROW, None)
    merged: torch.nn.Module = tuner.merge_and_unload()
    if isinstance(row, LanguageRow):
        row.merge(codec_embedding(merged))
        delattr(merged, LANGUAGE_ROW)
    with contextlib.suppress(AttributeError):
        delattr(merged, "peft_config")
    return merged



ADAPTER_WEIGHTS = "adapter_model.safetensors"  # peft's file names: PeftModel.from_pretrained reads this dir
LANGUAGE_ROW_FILE = "language_row.safetensors"
PEFT_PREFIX = "base_model.model."  # how a PeftModel names the model it wraps, in the files it saves


def save_adapter_dir(model: torch.nn.Module, tuner: Any, out: Path, base: Path) -> None:
    """The adapter alone, in peft's format (and the language row beside it): applied to `base` by
    `load_adapter_dir`, or by peft's own `PeftModel.from_pretrained` (which leaves the language row out)."""
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    out.mkdir(parents=True)
    config = tuner.peft_config[ADAPTER_NAME]
    config.base_model_name_or_path = str(base)
    config.save_pretrained(str(out))
    weights = get_peft_model_state_dict(model, adapter_name=ADAPTER_NAME)
    save_file({PEFT_PREFIX + k: v.detach().contiguous() for k, v in weights.items()}, str(out / ADAPTER_WEIGHTS))
    row = getattr(model, LANGUAGE_ROW, None)
    if isinstance(row, LanguageRow):
        save_file({"delta": row.delta.detach().contiguous()}, str(out / LANGUAGE_ROW_FILE),
                  metadata={"row": str(row.row)})


def load_adapter_dir(model: torch.nn.Module, adapter_dir: Path) -> torch.nn.Module:
    """Apply an adapter-only export to its base model (loaded with the run's language), unmerged, in place."""
    from peft import PeftModel
    from safetensors import safe_open

    PeftModel.from_pretrained(model, str(adapter_dir))  # injects into `model` itself
    path = adapter_dir / LANGUAGE_ROW_FILE
    if path.is_file():
        with safe_open(str(path), framework="pt") as handle:
            row = LanguageRow(codec_embedding(model), int(handle.metadata()["row"]))
            with torch.no_grad():
                row.delta.copy_(handle.get_tensor("delta"))
        model.add_module(LANGUAGE_ROW, row)
    return model
