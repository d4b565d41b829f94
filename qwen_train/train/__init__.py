"""The trainer. Here, where a reader of the loop looks first: session (what a run holds), loop, step, objective
(the aligned losses), evaluate, heartbeat, progress, board (TensorBoard) and the optional language tag.

Rooms: data/ (rows to batches at the cursor), checkpointing/ (durable state and going back to it), guard/ (the
non-finite guard, its diagnosis and retry), recipes/ (dtypes, optimizers, LoRA), device/ (speed, compile, ranks,
and the ends a device or its disk can force).
"""
