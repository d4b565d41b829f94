"""Which GPU reader the sampler takes, "no GPU" against "a GPU nobody read", amdsmi through a fake module, and
the reader named on the host screen and in `qwen-daemon host`.

amdsmi is not installable here: FakeAmdSmi answers as amdsmi's documented Python API does
(py-interface/amdsmi_interface.py), and it is all the amdsmi reader is tested against.
"""

from __future__ import annotations

import sys
import time
import types
from pathlib import Path

import pytest

from qwen_daemon.cli import render
from qwen_daemon.protocol import GpuSample, HostView, ResourceSample, RunUsage, SamplerHealth
from qwen_daemon.protocol.display import SCREEN
from qwen_daemon.protocol.resources import PRESENT_BUT_UNREAD
from qwen_daemon.resources.gpu import choose
from qwen_daemon.resources.gpu.amdsmi_backend import AmdSmiBackend
from qwen_daemon.resources.gpu.choose import NO_DEVICE_NOTE, choose_backend
from qwen_daemon.resources.gpu.engines import EngineTracker
from qwen_daemon.resources.gpu.nvml import NO_NVML_NOTE
from qwen_daemon.resources.sampler import Sampler
from qwen_daemon.resources.summary import Window, summarize
from qwen_train.gate.criteria import resource_evidence
from qwen_tui.widgets.host_bar import host_text
from qwen_tui.widgets.host_view import run_usage_renderable, sampler_renderable
from tests.gate_fixtures import write_json
from tests.gpu_trees import GIB, R9700_VRAM, card, fdinfo_text, open_fd
from tests.test_daemon_sampler import ListSink
from tests.test_tui_format import plain

SLOT = "0000:03:00.0"


class NoNvml:
    """NVML as a machine without the NVIDIA library answers, on any machine (the GPU host's NVML would win)."""

    name = "nvml"
    note = NO_NVML_NOTE
    present = False

    def close(self) -> None:
        return None


@pytest.fixture
def no_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(choose, "NvmlBackend", NoNvml)


class SmiError(Exception):
    """Stands for amdsmi's AmdSmiLibraryException."""


class FakeAmdSmi(types.ModuleType):
    """amdsmi's Python API for one R9700, as its documentation describes the calls and their answers."""

    class AmdSmiInitFlags:
        INIT_AMD_GPUS = 2

    class AmdSmiMemoryType:
        VRAM = 0

    AmdSmiException = SmiError

    def __init__(self, processes: list[dict[str, object]] | None = None, refuse_processes: bool = False,
                 fail_init: bool = False) -> None:
        super().__init__("amdsmi")
        self.calls: list[str] = []
        self.processes = processes or []
        self.refuse_processes = refuse_processes
        self.fail_init = fail_init
        self.activity: object = 61
        self.target = "gfx1201"  # amdsmi's own arch string
        self.used: object = 9 * GIB  # a value, or an exception amdsmi raises
        self.total = R9700_VRAM
        self.bdf: str | Exception = SLOT
        self.asked: list[str] = []  # the metric calls made, each of which reads files that wake a sleeping GPU

    def amdsmi_init(self, flag: int) -> None:
        self.calls.append(f"init {flag}")
        if self.fail_init:
            raise SmiError("AMDSMI_STATUS_DRIVER_NOT_LOADED")

    def amdsmi_shut_down(self) -> None:
        self.calls.append("shut_down")

    def amdsmi_get_processor_handles(self) -> list[object]:
        return ["gpu0-handle"]

    def amdsmi_get_gpu_asic_info(self, handle: object) -> dict[str, object]:
        return {"market_name": "AMD Radeon AI PRO R9700", "vendor_id": "0x1002", "device_id": "0x7551",
                "target_graphics_version": self.target, "num_compute_units": 64}

    def amdsmi_get_gpu_device_bdf(self, handle: object) -> str:
        if isinstance(self.bdf, Exception):
            raise self.bdf
        return self.bdf

    def amdsmi_get_gpu_activity(self, handle: object) -> dict[str, object]:
        self.asked.append("activity")
        return {"gfx_activity": self.activity, "umc_activity": 12, "mm_activity": "N/A"}

    def amdsmi_get_gpu_memory_usage(self, handle: object, kind: int) -> object:
        assert kind == self.AmdSmiMemoryType.VRAM
        self.asked.append("memory_usage")
        if isinstance(self.used, Exception):
            raise self.used
        return self.used

    def amdsmi_get_gpu_memory_total(self, handle: object, kind: int) -> int:
        assert kind == self.AmdSmiMemoryType.VRAM
        self.asked.append("memory_total")
        return self.total

    def amdsmi_get_gpu_process_list(self, handle: object) -> list[dict[str, object]]:
        self.asked.append("process_list")
        if self.refuse_processes:
            raise SmiError("AMDSMI_STATUS_NO_PERM")
        return self.processes


def proc(pid: int, vram: int, gfx_ns: int = 0, gtt: int = 0) -> dict[str, object]:
    return {"name": "python3", "pid": pid, "mem": vram, "engine_usage": {"gfx": gfx_ns, "enc": 0},
            "memory_usage": {"gtt_mem": gtt, "cpu_mem": 0, "vram_mem": vram}, "cu_occupancy": "N/A"}


def test_no_gpu_anywhere_is_none_and_says_so(tmp_path: Path, no_nvml: None) -> None:
    backend = choose_backend(tmp_path)
    assert (backend.name, backend.present, backend.read()) == ("none", False, ([], NO_NVML_NOTE))
    assert not NO_NVML_NOTE.startswith(PRESENT_BUT_UNREAD)
    without = choose_backend(tmp_path, try_nvml=False)
    assert (without.name, without.present, without.note) == ("none", False, NO_DEVICE_NOTE)


def test_an_amdgpu_card_that_reads_nothing_is_an_error_not_no_gpu(tmp_path: Path, no_nvml: None) -> None:
    device = card(tmp_path)
    for name in ("gpu_busy_percent", "mem_info_vram_used", "mem_info_vram_total"):
        (device / name).unlink()  # a kernel without the counters, or a daemon not allowed to read them
    backend = choose_backend(tmp_path)
    assert (backend.name, backend.present) == ("sysfs", True)  # kept: its counters are tried at every tick
    sample = Sampler(1.0, ListSink(), list, probe=backend).sample_once()
    assert sample.gpus == [GpuSample(0, "AMD Radeon AI PRO R9700", None, None, None, arch="gfx1201", unread={
        "busy_percent": "cannot read gpu_busy_percent: No such file or directory",
        "vram_used_bytes": "cannot read mem_info_vram_used: No such file or directory",
        "vram_total_bytes": "cannot read mem_info_vram_total: No such file or directory"})]
    assert sample.gpu_note is not None and sample.gpu_note.startswith(
        f"{PRESENT_BUT_UNREAD}: GPU 0 (card1 ({SLOT})): busy: cannot read gpu_busy_percent")
    summary = summarize([Window(sample.time - 1, sample.time + 1, [sample])], period_s=1.0)
    assert summary.gpu_present is True and summary.gpu_note == sample.gpu_note and summary.metrics.keys() == {
        "cpu_percent", "ram_used_bytes"}  # nothing unread is counted as a reading
    verdict = resource_evidence(write_json(tmp_path / "summary.json", summary), 0.10)
    assert not verdict.passed and "a GPU the sampler could not read" in verdict.detail


@pytest.mark.parametrize("node", ["dev/nvidia0", "dev/kfd"])
def test_a_gpu_device_node_without_a_reader_is_present_but_unread(tmp_path: Path, no_nvml: None,
                                                                  node: str) -> None:
    (tmp_path / node).parent.mkdir(parents=True)
    (tmp_path / node).write_text("")  # a recorded tree holds a plain file where the host has the device node
    backend = choose_backend(tmp_path)
    assert backend.name == "none" and backend.present
    assert backend.note is not None and backend.note.startswith(PRESENT_BUT_UNREAD) and f"/{node}" in backend.note


def test_amdsmi_is_preferred_where_it_imports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    card(tmp_path)  # sysfs would read too: amdsmi comes first
    smi = FakeAmdSmi(processes=[proc(2101, 20 * GIB), proc(3300, 3 * GIB)])
    monkeypatch.setitem(sys.modules, "amdsmi", smi)
    backend = choose_backend(tmp_path, try_nvml=False)
    assert isinstance(backend, AmdSmiBackend) and backend.name == "amdsmi" and backend.present
    gpus, note = backend.read()
    assert note is None
    assert gpus == [GpuSample(0, "AMD Radeon AI PRO R9700", 61.0, 9 * GIB, R9700_VRAM, arch="gfx1201")]
    assert backend.processes() == {2101: {0: 20 * GIB}, 3300: {0: 3 * GIB}}
    smi.activity = "N/A"  # amdsmi's word for a value it does not have: busy unread, VRAM still read
    gpus, note = backend.read()
    assert (gpus[0].busy_percent, gpus[0].vram_used_bytes) == (None, 9 * GIB)
    assert note == f"GPU 0 (amdsmi {SLOT}) partly unread: busy: amdsmi gives gfx_activity as 'N/A' (not reported " \
                   "for this GPU)"
    backend.close()
    assert smi.calls == ["init 2", "shut_down"]


def test_amdsmi_engine_time_and_a_refused_process_list_falls_back_to_fdinfo(tmp_path: Path) -> None:
    smi = FakeAmdSmi(processes=[proc(2101, 20 * GIB, gfx_ns=1_000_000_000)])
    clock = [5_000_000_000]
    backend = AmdSmiBackend(smi, tmp_path, tracker=EngineTracker(lambda: clock[0]))
    assert backend.process_usage() == ({2101: {0: 20 * GIB}}, {})
    clock[0] += 2_000_000_000
    smi.processes = [proc(2101, 20 * GIB, gfx_ns=2_500_000_000)]  # amdsmi's engine_usage is time in ns
    assert backend.process_usage()[1] == {2101: {0: {"gfx": pytest.approx(75.0), "enc": 0.0}}}
    smi.refuse_processes = True  # the list can need privileges the daemon lacks: holders come from fdinfo
    open_fd(tmp_path, 2101, 5, "/dev/dri/renderD128", fdinfo_text(SLOT, 41, vram_kib=19 * 2**20))
    open_fd(tmp_path, 2200, 5, "/dev/dri/renderD129", fdinfo_text("0000:07:00.0", 3, vram_kib=2**20))
    assert backend.process_usage()[0] == {2101: {0: 19 * GIB}}  # a card amdsmi did not list is not GPU 0


def test_amdsmi_that_fails_to_start_leaves_the_choice_to_sysfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    card(tmp_path)
    monkeypatch.setitem(sys.modules, "amdsmi", FakeAmdSmi(fail_init=True))
    backend = choose_backend(tmp_path, try_nvml=False)
    assert backend.name == "sysfs" and backend.read()[0][0].arch == "gfx1201"


def test_the_host_screen_and_cli_name_the_reader(tmp_path: Path) -> None:
    now = time.time()
    gpu = GpuSample(0, "AMD Radeon AI PRO R9700", 61.0, 9 * GIB, R9700_VRAM, arch="gfx1201")
    sample = ResourceSample(now, 12.0, 8 * GIB, 64 * GIB, [gpu], gpu_backend="sysfs", gpu_present=True)
    health = SamplerHealth(5.0, now, True, gpu_backend="sysfs")
    text = render.host_view(HostView(health, sample))
    assert "gpu backend: sysfs (amdgpu sysfs and DRM fdinfo)" in text
    assert "gpu0 AMD Radeon AI PRO R9700 (gfx1201): 61.0% busy, 9.0 GiB of 32.0 GiB" in text
    bar = host_text(HostView(health, sample), now=now).plain
    assert "GPU0 AMD Radeon AI PRO R9700 gfx1201 61.0% 9.0 GiB/32.0 GiB via sysfs" in bar
    assert "GPU backend" in plain(sampler_renderable(health, now)) and "sysfs (amdgpu" in plain(
        sampler_renderable(health, now))
    unread = f"{PRESENT_BUT_UNREAD}: amdgpu card1 ({SLOT}): cannot read gpu_busy_percent"
    dark = HostView(SamplerHealth(5.0, now, True, unread, gpu_backend="none"),
                    ResourceSample(now, 1.0, GIB, 2 * GIB, gpu_note=unread, gpu_backend="none", gpu_present=True))
    rendered = host_text(dark, now=now)
    assert unread in rendered.plain
    assert any(span.style == "bold red" for span in rendered.spans)  # an error, not a yellow "no GPU"
    assert "gpu backend: none (no GPU reader)" in render.host_view(dark) and unread in render.host_view(dark)
    runs = {"story31": RunUsage(2, 40.0, 3 * GIB, 18 * GIB, 1, {"0": 18 * GIB}, {"0": 80.0}),
            "other": RunUsage(1, 1.0, GIB, None)}
    table = plain(run_usage_renderable(ResourceSample(now, 1.0, GIB, 2 * GIB, runs=runs)))
    rows = {line.split()[0]: line.strip() for line in table.splitlines() if line.strip()}
    assert "18.0 GiB" in rows["story31"] and rows["story31"].endswith("GPU0 80.0%")
    assert "not attributed" in rows["other"] and rows["other"].endswith(SCREEN.unknown)  # unknown, never 0
