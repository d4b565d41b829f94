"""Fault hooks: a test stops the daemon at one exact instant, through its environment.

Killing a daemon "somewhere during a launch" finds a window by luck; a crash
test must hit it every time. `QWEN_DAEMON_FAULT=pause-after-spawn:SECONDS`
makes every launch sleep right after the job's process exists and before its
pid is recorded, the window in which a daemon that dies leaves a trainer the
registry does not know. Unset (always, outside tests) it costs one dict lookup.
"""

from __future__ import annotations

import logging
import os
import time

FAULT_ENV = "QWEN_DAEMON_FAULT"
log = logging.getLogger(__name__)


def pause(point: str) -> None:
    """Sleep here if the fault names this point; a malformed fault is logged, never fatal."""
    fault = os.environ.get(FAULT_ENV)
    if not fault:
        return
    name, _, seconds = fault.partition(":")
    if name != point:
        return
    try:
        delay = float(seconds)
    except ValueError:
        log.warning("%s=%r: expected %s:SECONDS; ignored", FAULT_ENV, fault, point)
        return
    log.warning("fault %s: pausing %.1f s", point, delay)
    time.sleep(delay)
