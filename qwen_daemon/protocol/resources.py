"""Resource evidence records: one host sample, and a run's summary of them.

Produced by the daemon's sampler; read by the API, the dashboard and the
promotion gate. A gap (no sample for longer than the sampler's period allows)
is recorded as a gap, never filled with zeros.
"""

from __future__ import annotations

from typing import Literal

import msgspec

GPU_BACKENDS = {
    "nvml": "NVIDIA NVML",
    "amdsmi": "AMD SMI",
    "sysfs": "amdgpu sysfs and DRM fdinfo",
    "none": "no GPU reader",
}
"""The sampler's GPU readers (qwen_daemon.resources.gpu), one chosen at its start, and what each reads."""


def gpu_backend_text(name: str | None) -> str:
    """A reader's name with what it reads, for people: 'sysfs (amdgpu sysfs and DRM fdinfo)'."""
    if name is None:
        return "not reported"
    words = GPU_BACKENDS.get(name)
    return f"{name} ({words})" if words else name


PRESENT_BUT_UNREAD = "GPU present but unread"
"""How a GPU note begins when the host has a GPU that no reader could read: an error, never "no GPU"."""


GpuMetric = Literal["busy_percent", "vram_used_bytes", "vram_total_bytes"]
"""A GPU sample's readings, each read or not on its own."""

GPU_METRIC_WORDS: dict[GpuMetric, str] = {
    "busy_percent": "busy", "vram_used_bytes": "VRAM used", "vram_total_bytes": "VRAM total"}
"""The readings in words, for notes and views."""

ProcessMemory = Literal["vram", "vram+gtt"]
"""What per-process GPU memory counts on a GPU: VRAM, or on an APU (whose VRAM is a small carve-out of
system memory, the working set living in GTT) VRAM and GTT together."""


class GpuSample(msgspec.Struct, frozen=True):
    """One GPU's reading, each metric read or not on its own.

    A metric that could not be read this time is None, and `unread` says why
    (e.g. {"busy_percent": "gpu_busy_percent: Operation not supported"}): a
    card whose busy figure cannot be read still has its VRAM, and admission
    still judges by it. `arch` is the ISA where the reader knows it (AMD:
    e.g. gfx1201, from the KFD topology). `sleeping`: the card was runtime-
    suspended and nothing was read, since reading would wake it; its VRAM
    fields then hold the last reading, taken at `vram_read_at`, or None if it
    was never read awake (`vram_read_at` is None whenever VRAM was read now).
    `process_memory` is what per-process memory on this GPU counts.
    """

    index: int
    name: str
    busy_percent: float | None
    vram_used_bytes: int | None
    vram_total_bytes: int | None
    arch: str | None = None
    unread: dict[GpuMetric, str] = {}
    sleeping: bool = False
    vram_read_at: float | None = None
    process_memory: ProcessMemory = "vram"

    @property
    def vram_free_bytes(self) -> int | None:
        """Total minus used, where both are known (a sleeping card's from its last reading)."""
        if self.vram_used_bytes is None or self.vram_total_bytes is None:
            return None
        return self.vram_total_bytes - self.vram_used_bytes

    @property
    def vram_read_now(self) -> bool:
        """VRAM was read in this sample (not a sleeping card's last reading): what a summary may count."""
        return self.vram_used_bytes is not None and self.vram_read_at is None


class RunUsage(msgspec.Struct, frozen=True):
    """One run's own share: its processes (for docker: its container's, found through cgroups).

    `cpu_percent` is of the whole machine, like the host's. `gpu_memory_bytes`
    sums the GPU memory the GPU reader (NVML, amdsmi or DRM fdinfo) attributes
    to the run's host pids; None when no reader attributes memory to
    processes. `gpu_memory_per_gpu` splits that sum by GPU index (as text: a
    JSON object key), so a run spread over several GPUs shows what it holds
    on each one. `gpu_engine_percent_per_gpu`: per GPU, the share of the time
    since the previous sample that the run kept the GPU's busiest engine busy,
    from per-process engine time (AMD: DRM fdinfo or amdsmi's process list;
    empty under NVML, and for a run's first sample). The kernel counts there the
    work submitted through the DRM file; ROCm's user-mode compute queues may
    not show in it, so the host's GPU busy % stays the evidence of load.
    """

    processes: int
    cpu_percent: float
    rss_bytes: int  # the processes' RSS summed: a page their forked workers share is counted once per process
    gpu_memory_bytes: int | None = None
    gpu_processes: int = 0
    gpu_memory_per_gpu: dict[str, int] = {}
    gpu_engine_percent_per_gpu: dict[str, float] = {}
    # The processes' proportional set size summed: a shared page split between its sharers, so the sum is the
    # run's real share of the host's RAM. None when the kernel would not show it (another user's process).
    pss_bytes: int | None = None

    @property
    def ram_bytes(self) -> int:
        """The run's RAM as an operator should read it: PSS where known, else the RSS sum (which overcounts)."""
        return self.pss_bytes if self.pss_bytes is not None else self.rss_bytes

    @property
    def ram_kind(self) -> str:
        return "PSS" if self.pss_bytes is not None else "RSS"


class ResourceSample(msgspec.Struct, frozen=True):
    """One tick of the sampler. `gpu_backend` names the GPU reader in use (GPU_BACKENDS); `gpu_present`
    says whether the host has a GPU device at all, read or not, so "no GPU" and "a GPU nobody could
    read" stay apart. Both None in samples taken before they were recorded."""

    time: float
    cpu_percent: float
    ram_used_bytes: int
    ram_total_bytes: int
    gpus: list[GpuSample] = []
    gpu_note: str | None = None
    runs: dict[str, RunUsage] = {}
    gpu_backend: str | None = None
    gpu_present: bool | None = None


class MetricStats(msgspec.Struct, frozen=True):
    count: int
    median: float
    min: float
    max: float
    p95: float


class Gap(msgspec.Struct, frozen=True):
    start: float
    end: float


class ResourceSummary(msgspec.Struct, frozen=True):
    """median/min/max/p95 per metric over a run's life (or a window).

    `span_s` is the time the run's launches covered (the sum of each launch's
    end - start), the time the gaps are a share of: a run stopped and resumed
    a week later was not in a gap in between. None in a summary written before
    it was recorded.

    `gpu_backend` is the GPU reader of the newest sample that names one.
    `gpu_present`: True if any sample saw a GPU device on the host (whether or
    not it could be read), False if every sample saw none, None where samples
    predate the field. The promotion gate passes "no GPU metrics" only on False.
    `gpu_process_memory`: per GPU (index as text) whose per-process memory
    counted more than VRAM, what it counted ("vram+gtt" on an APU), so the
    run's GPU memory there is read as what it is.
    """

    samples: int
    first: float | None
    last: float | None
    metrics: dict[str, MetricStats] = {}
    gaps: list[Gap] = []
    gpu_note: str | None = None
    span_s: float | None = None
    gpu_backend: str | None = None
    gpu_present: bool | None = None
    gpu_process_memory: dict[str, ProcessMemory] = {}


DEFAULT_POINTS = 120
MAX_POINTS = 1000



class ResourceBucket(msgspec.Struct, frozen=True):
    """One point of a resource series: the samples taken in [start, end) (the last bucket includes its end).

    `gap`: it overlaps a stretch without samples (longer than 3 sampler periods): drawn as a gap,
    and where it has no sample at all its values are None, never zero. `relaunch`: a later launch
    of the run (a resume) starts inside it; the time between launches is not on the axis.
    """

    start: float
    end: float
    samples: int
    gap: bool = False
    relaunch: bool = False


class MetricSeries(msgspec.Struct, frozen=True):
    """Per bucket, the median and the max of the metric's samples (None: no sample in that bucket);
    `last`: its value in the newest sample that has it."""

    median: list[float | None]
    max: list[float | None]
    last: float | None = None


class RunResources(msgspec.Struct, frozen=True):
    """A run's resources over its launches, downsampled to at most `points` buckets.

    `metrics` are those of `qwen_daemon.summary.metric_values` (host CPU/RAM, per GPU busy/VRAM,
    the run's own CPU, RSS and GPU memory), each list aligned with `buckets`. `gaps` are the
    summary's gaps (per launch, longer than 3 sampler periods without a sample).
    """

    name: str
    period_s: float
    points: int
    samples: int
    buckets: list[ResourceBucket] = []
    metrics: dict[str, MetricSeries] = {}
    gaps: list[Gap] = []
    gpu_note: str | None = None


class SamplerHealth(msgspec.Struct, frozen=True):
    """`gaps`: the recent stretches without a sample (the daemon's downtime included, and
    one still open if the sampler is not alive). `journal`: where samples go, or why not.
    `gpu_backend`: the GPU reader chosen at the sampler's start (GPU_BACKENDS)."""

    period_s: float
    last_sample: float | None
    alive: bool
    gpu_note: str | None = None
    gaps: list[Gap] = []
    journal: str | None = None
    gpu_backend: str | None = None


class HostView(msgspec.Struct, frozen=True):
    sampler: SamplerHealth
    sample: ResourceSample | None = None

