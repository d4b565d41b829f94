"""Model directories as qwen-tts loads them: the base model a run starts from, and the fixes every saved one needs.

Loading and saving live together, below both the trainer and the exporter
(which each load the base model), so neither has to import the other.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from qwen_train.atomic import atomic_write_text


def load_base_model(model_dir: str, language: str | None) -> tuple[Any, Any]:
    """The model and processor through the real qwen-tts loader, with the language tag if asked.

    Untyped (Any) because qwen-tts ships no types; torch and qwen-tts are imported here, not at the
    top, so the torch-free callers of this module (the tiny model's saver aside) stay torch-free.
    """
    import torch
    from qwen_tts import Qwen3TTSModel

    from qwen_train.train.language import ensure_language

    wrapper = Qwen3TTSModel.from_pretrained(model_dir, dtype=torch.float32)
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
