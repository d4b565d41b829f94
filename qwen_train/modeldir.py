"""Model directories as qwen-tts loads them: the base model a run starts from, and the fixes every saved one needs.

Loading and saving live together, below both the trainer and the exporter
(which each load the base model), so neither has to import the other.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from qwen_train.atomic import atomic_write_text
from qwen_train.safe_read import read_regular

HEADER_LIMIT = 64 * 2**20  # a safetensors header lists every tensor's name, dtype and offsets: a few MB at most


def stored_dtypes(model_dir: str | Path) -> set[str]:
    """The dtypes (safetensors' names: BF16, F32, ...) the model dir's weights are stored in; empty if unknown.

    Read from the headers only (8 bytes of length, then JSON), never the tensors: this decides how to load them.
    """
    root = Path(model_dir)
    index = root / "model.safetensors.index.json"
    try:
        shards = ({str(v) for v in json.loads(read_regular(index, HEADER_LIMIT, what="weights index"))["weight_map"]
                   .values()} if index.is_file() else {"model.safetensors"})
        found: set[str] = set()
        for shard in sorted(shards):
            with (root / shard).open("rb") as handle:
                size = int.from_bytes(handle.read(8), "little")
                if not 0 < size <= HEADER_LIMIT:
                    return set()
                header = json.loads(handle.read(size))
            found |= {str(v["dtype"]) for k, v in header.items() if k != "__metadata__"}
        return found
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return set()


def load_base_model(model_dir: str, language: str | None, bf16: bool = False) -> tuple[Any, Any]:
    """The model and processor through the real qwen-tts loader, with the language tag if asked.

    `bf16`: load the weights as bf16 when they are stored as bf16 (the released models are), instead of
    fp32 first and cast after: the same values (bf16 -> fp32 -> bf16 is exact), in half the memory and time.
    Weights stored in another dtype load as fp32 whatever is asked, since a cast there would change them.
    Untyped (Any) because qwen-tts ships no types; torch and qwen-tts are imported here, not at the
    top, so the torch-free callers of this module (the tiny model's saver aside) stay torch-free.
    """
    import torch
    from qwen_tts import Qwen3TTSModel

    from qwen_train.train.language import ensure_language

    dtype = torch.bfloat16 if bf16 and stored_dtypes(model_dir) == {"BF16"} else torch.float32
    wrapper = Qwen3TTSModel.from_pretrained(model_dir, dtype=dtype)
    model = wrapper.model
    if model.config.tts_model_type != "base" or model.speaker_encoder is None:
        raise ValueError(f"{model_dir}: not a base model with a speaker encoder; multi-speaker training needs one")
    ensure_language(model, language)
    return model, wrapper.processor


def fix_saved_config(model_dir: Path) -> None:
    """`save_pretrained` writes `speaker_encoder_config.model_type = ""`.

    The speaker encoder's config class takes no `model_type` argument, so any
    value there makes reload fail; drop the key, as the published config does.
    `tts_model_type` stays `base`: the model must keep cloning voices.
    """
    path = model_dir / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config.setdefault("speaker_encoder_config", {}).pop("model_type", None)
    config["tts_model_type"] = "base"
    atomic_write_text(path, json.dumps(config, indent=2, ensure_ascii=False))


def save_model_dir(model, out_dir: Path) -> None:
    """save_pretrained that works on a loaded model too.

    Loading sets `dtype` on every sub-config; the speaker encoder's config class
    never calls its parent's __init__, so its defaults lack that key and
    transformers' diffing raises KeyError('dtype'). Drop the loader's attribute
    from that one sub-config, save, then apply the config fix above.
    """
    vars(model.config.speaker_encoder_config).pop("dtype", None)
    model.save_pretrained(out_dir, safe_serialization=True)
    fix_saved_config(out_dir)
