"""qwen_train: corpus -> frozen bundle -> trainer -> checkpoints, eval, export.

Only the modules that train import torch; the contracts (spec, status) do not.
"""

__version__ = "0.1.0"
