"""Durable checkpoints and going back to them: the format and its weights-only loading, the
checkpointer (when, what to keep), background writes, every RNG's state, the loss log.
"""
