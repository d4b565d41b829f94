"""The memory plan: predicted GPU peak by part for a spec, torch-free (the daemon's admission reads it too)."""

from qwen_train.plan.for_spec import plan_for_spec, resolve_recipe
from qwen_train.plan.memory import RECIPES, MemoryPlan, parse_size, plan_memory, read_config
from qwen_train.plan.params import ParamCounts, count_params

__all__ = ["RECIPES", "MemoryPlan", "ParamCounts", "count_params", "parse_size", "plan_for_spec", "plan_memory",
           "read_config", "resolve_recipe"]
