"""Recipes and optimizers: in which dtypes weights, gradients and moments live (fp32-master, lean),
the lean AdamW with stochastic rounding, and LoRA adapters as a mode of either.
"""
