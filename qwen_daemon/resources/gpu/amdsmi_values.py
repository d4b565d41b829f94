"""What amdsmi's answers mean: its "not applicable" values, and when its arch string can be believed.

amdsmi writes the string "N/A" for a value a GPU does not report, and
passes through the firmware's own not-supported marks (0xFFFF in
gpu_metrics: an ASRock BC-250's gfx activity reads so); neither is a
reading. Its arch string comes from the same KFD target version the
topology holds, formatted by amdsmi itself, which released versions get
wrong (kfd.py): the topology's answer is taken whenever it is readable, and
amdsmi's only when it has the shape of a target name, so a malformed one is
named in the note and never shown as the arch.
"""

from __future__ import annotations

from collections.abc import Callable

from qwen_daemon.resources.gpu.kfd import KfdNode, plausible_arch
from qwen_daemon.resources.gpu.readings import Reading


def _number(value: object) -> int | float | None:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def percent(value: object, what: str) -> Reading[float]:
    """A busy percentage from amdsmi: a number in 0..100, else unread with what amdsmi gave."""
    number = _number(value)
    if number is None:
        return None, f"amdsmi gives {what} as {value!r} (not reported for this GPU)"
    if not 0 <= number <= 100:
        shown = f"{number} (0x{int(number):x})" if isinstance(number, int) else str(number)
        return None, f"amdsmi gives {what} as {shown}, the mark of a value the GPU does not report"
    return float(number), None


def size(value: object, what: str) -> Reading[int]:
    """A byte count from amdsmi: a non-negative integer, else unread with what amdsmi gave."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value, None
    return None, f"amdsmi gives {what} as {value!r}"


def ask(call: Callable[[], object], what: str) -> tuple[object, str | None]:
    """One amdsmi call; its exception (AmdSmiLibraryException, or a broken install) becomes the reason."""
    try:
        return call(), None
    except Exception as exc:  # amdsmi's own exception types, whatever the release names them
        return None, f"amdsmi cannot read {what}: {exc}"


def choose_arch(index: int, node: KfdNode | None, reported: str) -> tuple[str | None, str | None]:
    """(the arch to show, a remark for the note or None): the KFD topology's, else amdsmi's if well-formed."""
    kfd = node.arch if node is not None else None
    if kfd is not None:
        if reported and reported != kfd:
            shape = "" if plausible_arch(reported) else ", which is no gfx target name"
            return kfd, f"GPU {index}: amdsmi reports the arch as {reported!r}{shape}; shown as {kfd}, from KFD"
        return kfd, None
    if plausible_arch(reported):
        return reported, None
    if reported:
        return None, f"GPU {index}: amdsmi reports the arch as {reported!r}, which is no gfx target name; not shown"
    return None, None
