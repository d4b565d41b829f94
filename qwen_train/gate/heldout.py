"""Loading the judged and the base model, and the held-out eval loss of each.

Both models are loaded through the public qwen-tts loader and scored by the
trainer's own `evaluate` over the bundle's eval split, read by the same
`BundleData` the trainer uses: same rows, same layout, same language tag, so
the only difference between the two numbers is the weights. The base model
gets the language tag the way a run's step 0 does (ensure_language), which is
the honest "before training" baseline for a tag the base never had.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from qwen_train.gate.verdict import Criterion
from qwen_train.spec import RunSpec
from qwen_train.status import EvalResult
from qwen_train.train.data.batches import BundleData
from qwen_train.train.data.layout import SpecialIds
from qwen_train.train.evaluate import evaluate
from qwen_train.train.language import ensure_language


def gate_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_tts(path: Path, language: str | None, device: torch.device) -> Any:
    """A Qwen3TTSModel (model, processor, speech tokenizer) on `device`, fp32, with the run's language tag."""
    from qwen_tts import Qwen3TTSModel

    wrapper = Qwen3TTSModel.from_pretrained(str(path), dtype=torch.float32, device_map=str(device))
    model = wrapper.model
    if model.config.tts_model_type != "base" or model.speaker_encoder is None:
        raise ValueError(f"{path}: not a base model with a speaker encoder; it cannot clone held-out voices")
    ensure_language(model, language)
    model.eval()
    return wrapper


def eval_loss(wrapper: Any, spec: RunSpec, max_rows: int, device: torch.device) -> EvalResult:
    model = wrapper.model
    language = ensure_language(model, spec.language)
    data = BundleData(Path(spec.bundle), wrapper.processor, SpecialIds.from_config(model.config), language, "eval")
    if len(data) == 0:
        raise ValueError(f"bundle {spec.bundle} has no eval rows")
    return evaluate(model, data, 0, spec.train.sub_talker_weight, max_rows, device)


def _splits(trained: EvalResult, base: EvalResult) -> str:
    parts = []
    for kind, losses in trained.per_split.items():
        other = base.per_split.get(kind)
        theirs = f"{other.total:.4f}" if other is not None else "n/a"
        parts.append(f"{kind} {losses.total:.4f} vs {theirs}")
    return "; ".join(parts)


def eval_criterion(trained: EvalResult | str, base: EvalResult | str) -> Criterion:
    """Pass when the trained total is strictly below the base total on the same rows."""
    if isinstance(trained, str) or isinstance(base, str):
        why = "; ".join(f"{who}: {e}" for who, e in (("trained", trained), ("base", base)) if isinstance(e, str))
        return Criterion(name="eval_beats_base", passed=False, detail=f"not measured: {why}",
                         measured=None if isinstance(trained, str) else trained.losses.total,
                         threshold=None if isinstance(base, str) else base.losses.total)
    mine, theirs = trained.losses.total, base.losses.total
    finite = math.isfinite(mine) and math.isfinite(theirs)
    passed = finite and mine < theirs
    verdict = "better than" if passed else ("not finite vs" if not finite else "not better than")
    detail = (f"trained eval loss {mine:.4f} {verdict} base {theirs:.4f} on {trained.rows} held-out rows "
              f"(talker {trained.losses.talker:.4f} vs {base.losses.talker:.4f}, code predictor "
              f"{trained.losses.code_predictor:.4f} vs {base.losses.code_predictor:.4f}; {_splits(trained, base)})")
    return Criterion(name="eval_beats_base", passed=passed, detail=detail, measured=mine, threshold=theirs)
