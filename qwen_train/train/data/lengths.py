"""The train rows' lengths, as the batch plans read them: hashable for the plan caches, digestible for the cursor.

Length buckets (cursor.py) and frame-budget micro-batches (budget.py) are pure
functions of these lengths, so a checkpoint's cursor records their digest: a
resume whose rows measure differently (another tokenizer, a changed layout, a
new packing rule) would draw other batches at the same position, and is refused
instead.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch


class Lengths:
    """Row lengths, hashed once so the plan caches can key on them cheaply."""

    def __init__(self, values: list[int]) -> None:
        self.values = torch.tensor(values, dtype=torch.long)
        self._hash = hash(tuple(values))

    def __len__(self) -> int:
        return int(self.values.numel())

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Lengths) and self._hash == other._hash and torch.equal(self.values, other.values)

    def digest(self, rule: str) -> str:
        """`rule:hex` naming the plan's rule and these exact lengths (the cursor's `plan`)."""
        data = rule.encode() + b"\0" + np.asarray(self.values.tolist(), dtype="<i8").tobytes()
        return f"{rule}:{hashlib.sha256(data).hexdigest()[:16]}"
