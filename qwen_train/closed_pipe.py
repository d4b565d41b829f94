"""CLIs end quietly when their reader goes away (`qwen-daemon show NAME | head`).

Python turns SIGPIPE into BrokenPipeError at the next write, and again when the
interpreter flushes stdout at exit, so catching it once is not enough: stdout is
pointed at /dev/null first, then the process exits with the shell's code for a
death by SIGPIPE (128 + 13), which `set -o pipefail` scripts recognise.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

EXIT_CLOSED_PIPE = 141


def quiet_on_closed_pipe(main: Callable[P, R]) -> Callable[P, R]:
    """Wrap a console entry point so a closed stdout ends it without a traceback."""

    @functools.wraps(main)
    def wrapped(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            try:
                return main(*args, **kwargs)
            finally:  # also when main exits (argparse's --help): a flush at interpreter exit cannot be caught
                sys.stdout.flush()
        except BrokenPipeError:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
            raise SystemExit(EXIT_CLOSED_PIPE) from None

    return wrapped
