"""Argument types the client commands share.

A run or surface name is checked here as the daemon and the trainer check it (`qwen_train.spec.check_name`,
matched in full), so `qwen-daemon show $'nl\\n'` is a usage error naming the rule before any request is made.
"""

from __future__ import annotations

import argparse

from qwen_train.spec import SpecError, check_name


def name_arg(text: str) -> str:
    """argparse type for NAME and SURFACE: the name itself, or argparse's usage error (exit 2) with the rule."""
    try:
        return check_name(text)
    except SpecError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def surface_arg(text: str) -> str:
    """argparse type for SURFACE: surfaces follow the run-name rule (governance checks it the same way)."""
    try:
        return check_name(text)
    except SpecError as exc:
        raise argparse.ArgumentTypeError(str(exc).replace("run name", "surface name", 1)) from None
