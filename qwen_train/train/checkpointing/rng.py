"""Every random number generator a run draws from: seeded once, saved with each checkpoint, restored with it.

Exact resume needs all of them (Python, NumPy, torch on the CPU and on every
CUDA device) to continue where they were; a rollback to the base weights
needs them seeded again as at step 0.

NumPy's state is kept as plain values and a tensor, not the ndarray NumPy
hands out, so a checkpoint holds nothing that `torch.load(weights_only=True)`
would have to trust (checkpoint.py).
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": _numpy_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _numpy_state() -> tuple[str, torch.Tensor, int, int, float]:
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return str(name), torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), float(gauss)


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    name, keys, pos, has_gauss, gauss = state["numpy"]  # keys: a tensor, or an ndarray in older checkpoints
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
