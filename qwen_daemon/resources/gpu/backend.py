"""What every GPU reader offers the sampler, and the reader for a host where none applies.

The sampler chooses one reader at its start (choose.py) and asks it the same
same things every tick, whatever the vendor: the per-GPU readings with a note
on what could not be read, which host processes hold how much memory on which
GPU (the shape NVML gave first: host pid -> {GPU index: bytes}, which GPU
admission builds on too) and, from the same pass, how busy each process kept
each GPU's engines where the reader can tell; and it lets go of the device at
the end. A reader never
raises from these calls: what it cannot read is a note, and sampling goes on;
a GPU it cannot read in full is still a sample, its unread metrics None with
their reasons (protocol GpuSample).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Literal, Protocol

from qwen_daemon.protocol import GpuSample

BackendName = Literal["nvml", "amdsmi", "sysfs", "none"]

ProcessMemory = dict[int, dict[int, int]]
"""Host pid -> {GPU index: memory bytes}."""

EngineShares = dict[int, dict[int, dict[str, float]]]
"""Host pid -> {GPU index: {engine name: percent of the time since the previous reading}}."""


class GpuBackend(Protocol):
    """One way of reading the host's GPUs.

    `name` is recorded in every sample, summary and journal entry, so evidence
    says how it was gathered. `present` is whether the host has a GPU device
    at all, read or not: the promotion gate must tell "no GPU" from "a GPU no
    reader could read". `note` is the standing reason readings are missing
    (None while the reader works).
    """

    @property
    def name(self) -> BackendName: ...

    @property
    def note(self) -> str | None: ...

    @property
    def present(self) -> bool: ...

    def read(self, wake: bool = False) -> tuple[list[GpuSample], str | None]:
        """One reading per GPU, each metric read or not on its own, and a note naming what could not be read
        this time (None: all read). A sleeping (runtime-suspended) GPU is left asleep unless `wake`:
        admission, about to start work on it, may wake it; the sampler never does."""
        ...

    def processes(self) -> ProcessMemory | None:
        """Host pid -> {GPU index: bytes} for every process seen holding GPU memory; None: not knowable."""
        ...

    def process_usage(self) -> tuple[ProcessMemory | None, EngineShares]:
        """processes() and, from the same pass, each engine's busy share per process and GPU since the
        previous pass (empty where the reader cannot tell): the sampler's one question per tick."""
        ...

    def close(self) -> None: ...


class NoGpu:
    """No reader applies. `present` says whether that is because there is no GPU, or because none could read it."""

    name: BackendName = "none"

    def __init__(self, note: str, present: bool) -> None:
        self.note: str | None = note
        self.present = present

    def read(self, wake: bool = False) -> tuple[list[GpuSample], str | None]:
        return [], self.note

    def processes(self) -> ProcessMemory | None:
        return None

    def process_usage(self) -> tuple[ProcessMemory | None, EngineShares]:
        return None, {}

    def close(self) -> None:
        return None


def run_engine_percent(pids: Iterable[int], shares: EngineShares) -> dict[str, float]:
    """A run's share of each GPU: per engine the sum over its processes, then the busiest engine.

    Summed per engine first because two processes of one run take turns on
    the same engine; the busiest engine then says how much of the GPU the run
    kept occupied (a copy engine busy beside the graphics engine is not more
    than all of the GPU). Keyed by GPU index as text, like gpu_memory_per_gpu.
    """
    per_gpu: dict[int, dict[str, float]] = {}
    for pid in pids:
        for index, engines in shares.get(pid, {}).items():
            totals = per_gpu.setdefault(index, {})
            for engine, percent in engines.items():
                totals[engine] = totals.get(engine, 0.0) + percent
    return {str(index): min(100.0, max(totals.values())) for index, totals in sorted(per_gpu.items()) if totals}


def join_problems(problems: Iterable[str], standing: str | None = None) -> str | None:
    """The tick's problems as one note, or the reader's standing note when there are none."""
    listed = list(problems)
    return "; ".join(listed) if listed else standing


def merge_memory(into: ProcessMemory, pid: int, index: int, used: int) -> None:
    per_gpu = into.setdefault(pid, {})
    per_gpu[index] = per_gpu.get(index, 0) + used


def only_ints(values: Mapping[str, object]) -> dict[str, int]:
    """The integer entries of a reader's dict (amdsmi writes "N/A" where a value is not applicable)."""
    return {key: value for key, value in values.items() if isinstance(value, int) and not isinstance(value, bool)}
