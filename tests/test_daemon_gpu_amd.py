"""The AMD readers over recorded sysfs and /proc trees: cards, per-process VRAM and engine time, runs, a lost card.

The trees (tests/gpu_trees.py) follow the kernel's documented layouts and
formats; no AMD hardware is involved, here or anywhere this project runs.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from qwen_daemon.jobs import cgroups
from qwen_daemon.protocol import GpuSample
from qwen_daemon.protocol.resources import PRESENT_BUT_UNREAD
from qwen_daemon.resources.gpu.backend import run_engine_percent
from qwen_daemon.resources.gpu.choose import choose_backend
from qwen_daemon.resources.gpu.engines import EngineTracker
from qwen_daemon.resources.gpu.fdinfo import parse_fdinfo, scan_clients
from qwen_daemon.resources.gpu.kfd import gfx_name
from qwen_daemon.resources.gpu.sysfs import SysfsBackend
from qwen_daemon.resources.sampler import Sampler, journal_fields
from qwen_daemon.resources.summary import Window, summarize
from tests.gpu_trees import GIB, R9700_VRAM, card, cgroup, counters, fdinfo_text, open_fd
from tests.test_daemon_sampler import ListSink

SLOT = "0000:03:00.0"
RENDER = "/dev/dri/renderD128"
CONTAINER = "4f" * 32


class Clock:
    """A monotonic clock the test moves: engine shares are exact."""

    def __init__(self) -> None:
        self.ns = 1_000_000_000

    def __call__(self) -> int:
        return self.ns


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """An Intel iGPU as card0 (i915: not counted) and the R9700 as card1."""
    card(tmp_path, number=0, slot="0000:00:02.0", render=129, driver="i915", pci_id="8086:a780", product=None,
         gfx_target_version=None)
    card(tmp_path)
    return tmp_path


@pytest.fixture
def sleeper() -> Iterator[int]:
    """A real process to stand for a run's trainer (the usage meter reads its CPU and RSS through psutil)."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        yield child.pid
    finally:
        child.kill()
        child.wait()


def test_an_r9700_reads_from_sysfs_and_other_drivers_cards_do_not_count(host: Path) -> None:
    backend = choose_backend(host, try_nvml=False)
    assert backend.name == "sysfs" and backend.present and backend.note is None
    gpus, note = backend.read()
    assert note is None
    assert gpus == [GpuSample(index=0, name="AMD Radeon AI PRO R9700", busy_percent=37.0,
                              vram_used_bytes=6 * GIB, vram_total_bytes=R9700_VRAM, arch="gfx1201")]
    assert gpus[0].vram_total_bytes == 32 * 2**30


def test_without_a_product_name_the_card_is_named_by_its_pci_id(tmp_path: Path) -> None:
    card(tmp_path, product=None, gfx_target_version=None)
    gpus, _ = SysfsBackend(tmp_path).read()
    assert gpus[0].name == "AMD GPU [1002:7551]" and gpus[0].arch is None


def test_gfx_target_versions_read_as_llvm_names_them() -> None:
    assert (gfx_name(120001), gfx_name(110000), gfx_name(90010), gfx_name(0)) == ("gfx1201", "gfx1100", "gfx90a", None)


def test_fdinfo_keys_as_the_usage_stats_document_defines_them() -> None:
    legacy = parse_fdinfo(fdinfo_text(SLOT, 7, vram_kib=2048, engines={"gfx": 5_000, "compute": 9}), pid=10)
    assert legacy is not None and legacy.driver == "amdgpu" and legacy.pdev == SLOT and legacy.client_id == 7
    assert legacy.resident["vram"] == 2048 * 1024 and legacy.resident["gtt"] == 2048 * 1024
    assert legacy.engines == {"gfx": 5_000, "compute": 9}
    # the standard drm-resident-* wins over amdgpu's older drm-memory-* alias; MiB and bare bytes both count
    both = parse_fdinfo(fdinfo_text(SLOT, 8, vram_kib=1, resident="3 MiB"), pid=10)
    assert both is not None and both.resident["vram"] == 3 * 2**20
    bare = parse_fdinfo("drm-driver: amdgpu\ndrm-resident-vram:   4096\ndrm-engine-capacity-dec:\t2\n", pid=1)
    assert bare is not None and bare.resident == {"vram": 4096} and bare.capacity == {"dec": 2}
    odd = parse_fdinfo("drm-driver:\tamdgpu\ndrm-memory-vram:\t5 GB\ndrm-engine-gfx:\t12 ms\n", pid=1)
    assert odd is not None and odd.resident == {} and odd.engines == {}  # units the document does not define
    assert parse_fdinfo("pos:\t0\nflags:\t02\nmnt_id:\t3\n", pid=1) is None  # not a DRM file


def test_a_second_process_holding_vram_is_attributed_and_a_shared_client_counts_once(host: Path) -> None:
    trainer, child, sidecar = 2101, 2102, 3300
    open_fd(host, trainer, 5, RENDER, fdinfo_text(SLOT, 41, vram_kib=20 * 2**20))
    open_fd(host, trainer, 9, RENDER, fdinfo_text(SLOT, 41, vram_kib=20 * 2**20))  # the same client, dup'ed
    open_fd(host, child, 5, RENDER, fdinfo_text(SLOT, 41, vram_kib=20 * 2**20))  # ... and inherited by a child
    open_fd(host, sidecar, 12, RENDER, fdinfo_text(SLOT, 57, vram_kib=3 * 2**20))  # the PDF sidecar's own client
    open_fd(host, sidecar, 3, "socket:[88123]")  # not a DRM file: its fdinfo is never read
    open_fd(host, 4000, 4, "/dev/dri/renderD129", fdinfo_text("0000:00:02.0", 3, vram_kib=512, driver="i915"))
    assert len(scan_clients(host)) == 2
    assert SysfsBackend(host).processes() == {trainer: {0: 20 * GIB}, sidecar: {0: 3 * GIB}}


def test_engine_time_becomes_each_processes_busy_share(host: Path) -> None:
    clock = Clock()
    open_fd(host, 2101, 5, RENDER, fdinfo_text(SLOT, 41, vram_kib=1024, engines={"gfx": 10_000_000_000}))
    backend = SysfsBackend(host, tracker=EngineTracker(clock))
    assert backend.process_usage()[1] == {}  # one reading is no share yet, and not a share of zero
    clock.ns += 2_000_000_000
    fdinfo = host / "proc/2101/fdinfo/5"
    fdinfo.write_text(fdinfo_text(SLOT, 41, vram_kib=1024, engines={"gfx": 11_000_000_000, "dma": 200_000_000}))
    memory, shares = backend.process_usage()
    assert memory == {2101: {0: 2**20}}
    assert shares == {2101: {0: {"gfx": pytest.approx(50.0), "dma": pytest.approx(10.0)}}}
    clock.ns += 1_000_000_000  # the counter steps back: hold the larger previous value (drm-usage-stats.rst)
    fdinfo.write_text(fdinfo_text(SLOT, 41, vram_kib=1024, engines={"gfx": 10_500_000_000, "dma": 200_000_000}))
    assert backend.process_usage()[1] == {2101: {0: {"gfx": 0.0, "dma": 0.0}}}


def test_a_containers_process_is_matched_to_its_run_through_cgroups(host: Path, sleeper: int) -> None:
    """As for NVIDIA: the docker runner's pids come from the container's cgroup; the reader keys VRAM by host pid."""
    clock = Clock()
    cgroup(host, sleeper, CONTAINER)
    open_fd(host, sleeper, 7, RENDER, fdinfo_text(SLOT, 41, vram_kib=18 * 2**20, engines={"gfx": 0}))
    open_fd(host, 999_999, 3, RENDER, fdinfo_text(SLOT, 57, vram_kib=4 * 2**20))  # another service's VRAM
    pids = cgroups.container_pids(CONTAINER, proc=str(host / "proc"))
    assert pids == [sleeper]
    backend = SysfsBackend(host, tracker=EngineTracker(clock))
    sink = ListSink()
    sampler = Sampler(1.0, sink, lambda: ["story31"], probe=backend, run_pids=lambda run: pids)
    first = sampler.sample_once()
    clock.ns += 1_000_000_000
    (host / f"proc/{sleeper}/fdinfo/7").write_text(
        fdinfo_text(SLOT, 41, vram_kib=18 * 2**20, engines={"gfx": 800_000_000}))
    second = sampler.sample_once()
    usage = second.runs["story31"]
    assert usage.gpu_memory_bytes == 18 * GIB and usage.gpu_processes == 1
    assert usage.gpu_memory_per_gpu == {"0": 18 * GIB}  # the sidecar's 4 GiB are not the run's
    assert usage.gpu_engine_percent_per_gpu == {"0": pytest.approx(80.0)}
    assert first.runs["story31"].gpu_engine_percent_per_gpu == {}
    assert (second.gpu_backend, second.gpu_present) == ("sysfs", True)
    summary = summarize([Window(first.time - 0.5, second.time + 0.5, [first, second])], period_s=1.0,
                        run="story31")
    assert summary.metrics["run_gpu0_memory_bytes"].max == 18 * GIB
    assert summary.metrics["run_gpu0_engine_percent"].count == 1
    assert summary.metrics["gpu0_vram_used_bytes"].median == 6 * GIB
    assert (summary.gpu_backend, summary.gpu_present) == ("sysfs", True)
    fields = journal_fields(second, "story31")
    assert fields["QWEN_GPU_BACKEND"] == "sysfs" and fields["QWEN_GPU0_BUSY_PERCENT"] == "37.0"
    assert fields["QWEN_RUN_GPU0_MEMORY_BYTES"] == 18 * GIB and fields["QWEN_RUN_GPU0_ENGINE_PERCENT"] == "80.0"
    assert sampler.health(second.time).gpu_backend == "sysfs" and sampler.backend is backend


def test_a_runs_engine_share_sums_its_processes_per_engine_then_takes_the_busiest() -> None:
    shares = {1: {0: {"gfx": 30.0, "dma": 20.0}}, 2: {0: {"gfx": 25.0, "dma": 40.0}, 1: {"compute": 70.0}},
              3: {0: {"gfx": 99.0}}}
    assert run_engine_percent([1, 2], shares) == {"0": 60.0, "1": 70.0}  # dma 60 beats gfx 55; pid 3 is not ours
    assert run_engine_percent([2, 3], {2: {0: {"gfx": 80.0}}, 3: {0: {"gfx": 70.0}}}) == {"0": 100.0}
    assert run_engine_percent([9], shares) == {}


def test_a_card_that_disappears_mid_run_is_a_note_and_the_other_card_goes_on(host: Path, sleeper: int) -> None:
    second = card(host, number=2, slot="0000:43:00.0", render=130, busy=90, used=30 * GIB, kfd_node=2)
    first = host / "sys/devices/pci0000:00/0000:00:01.1" / SLOT
    open_fd(host, sleeper, 5, RENDER, fdinfo_text(SLOT, 41, vram_kib=2**20))
    backend = SysfsBackend(host)
    sampler = Sampler(1.0, ListSink(), lambda: ["run"], probe=backend, run_pids=lambda run: [sleeper])
    before = sampler.sample_once()
    assert [g.index for g in before.gpus] == [0, 1] and before.gpu_note is None
    for name in ("gpu_busy_percent", "mem_info_vram_used", "mem_info_vram_total"):
        (first / name).unlink()  # the card fell off the bus between two ticks
    shutil.rmtree(host / f"proc/{sleeper}")  # and its process's DRM file went with it
    during = sampler.sample_once()
    assert [g.index for g in during.gpus] == [0, 1] and during.gpus[1].vram_used_bytes == 30 * GIB
    lost = during.gpus[0]  # kept, every reading unread with its reason: not dropped, and read again next tick
    assert (lost.busy_percent, lost.vram_used_bytes, lost.vram_total_bytes) == (None, None, None)
    assert lost.unread["busy_percent"] == "cannot read gpu_busy_percent: No such file or directory"
    assert during.gpu_note is not None and during.gpu_note.startswith(
        f"{PRESENT_BUT_UNREAD}: GPU 0 (card1 (0000:03:00.0)): busy: cannot read gpu_busy_percent")
    assert during.gpu_present is True
    assert during.runs["run"].gpu_memory_bytes == 0  # read, and holding nothing now: not unknown
    counters(first, busy=5, used=GIB, total=R9700_VRAM)  # it came back after a reset
    after = sampler.sample_once()
    assert [g.index for g in after.gpus] == [0, 1] and after.gpu_note is None
    assert second.is_dir()
