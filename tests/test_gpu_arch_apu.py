"""The arch from the KFD topology, amdsmi's string only when well-formed; an APU's GTT counted (issue 26, 2 and 4).

Trees in the kernel's formats (tests/gpu_trees.py): KFD nodes matched to their card by PCI address
(domain and location_id), the memory bank by which the kernel says a GPU's local memory is GTT, and
an APU client's fdinfo as a Radeon 890M printed it (25258000 KiB of GTT against 5348 KiB of VRAM).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from qwen_daemon.resources.gpu.amdsmi_backend import AmdSmiBackend
from qwen_daemon.resources.gpu.kfd import KfdNode, is_apu, plausible_arch
from qwen_daemon.resources.gpu.sysfs import SysfsBackend
from qwen_daemon.resources.sampler import Sampler
from qwen_daemon.resources.summary import Window, summarize
from tests.gpu_trees import APU_CARVE_OUT, APU_SLOT, GIB, MIB, R9700_VRAM, apu, card, fdinfo_text, kfd, open_fd
from tests.test_daemon_gpu_choice import FakeAmdSmi, proc
from tests.test_daemon_sampler import ListSink

SLOT = "0000:03:00.0"
LLAMA_GTT_KIB, LLAMA_VRAM_KIB = 25258000, 5348  # nvtop PR 492: llama-server on a Radeon 890M


def test_target_names_are_told_from_amdsmis_malformed_ones() -> None:
    for name in ("gfx900", "gfx90a", "gfx942", "gfx1013", "gfx1100", "gfx1151", "gfx1201"):
        assert plausible_arch(name), name
    for name in ("gfx12001", "gfx11000", "gfxffffffffffffffff", "gfx", "N/A", "gfx1201x", "gfx9010", "GFX1201"):
        assert not plausible_arch(name), name


@pytest.mark.parametrize(("target_version", "reported", "shown", "note"), [
    (120001, "gfx12001", "gfx1201",  # amdsmi 6.x formats 120001 so
     "GPU 0: amdsmi reports the arch as 'gfx12001', which is no gfx target name; shown as gfx1201, from KFD"),
    (110000, "gfx11000", "gfx1100",
     "GPU 0: amdsmi reports the arch as 'gfx11000', which is no gfx target name; shown as gfx1100, from KFD"),
    (None, "gfxffffffffffffffff", None,  # amdsmi 7.x's not-supported value, with no topology to ask
     "GPU 0: amdsmi reports the arch as 'gfxffffffffffffffff', which is no gfx target name; not shown"),
    (None, "gfx1201", "gfx1201", None),  # well-formed, and nothing better to ask
    (120001, "gfx1201", "gfx1201", None),
])
def test_the_arch_comes_from_kfd_and_a_malformed_amdsmi_one_is_named_not_shown(
        tmp_path: Path, target_version: int | None, reported: str, shown: str | None, note: str | None) -> None:
    card(tmp_path, gfx_target_version=target_version)
    smi = FakeAmdSmi()
    smi.target = reported
    (gpu,), said = AmdSmiBackend(smi, tmp_path).read()
    assert gpu.arch == shown and said == note
    assert gpu.busy_percent == 61.0  # the remark does not cost a reading


def test_each_card_gets_its_own_nodes_arch_even_when_kfd_comes_up_late(tmp_path: Path) -> None:
    card(tmp_path, gfx_target_version=None)  # amdgpu bound, KFD not (yet) up
    card(tmp_path, number=2, slot="0000:43:00.0", render=129, pci_id="1002:744c", product="Radeon RX 7900 XTX",
         gfx_target_version=110000, kfd_node=2, total=24 * GIB)
    backend = SysfsBackend(tmp_path)
    assert [gpu.arch for gpu in backend.read()[0]] == [None, "gfx1100"]
    kfd(tmp_path, 1, 120001, 128, SLOT, memory=R9700_VRAM)
    assert [gpu.arch for gpu in backend.read()[0]] == ["gfx1201", "gfx1100"]


def test_an_apu_counts_gtt_per_process_and_a_discrete_card_beside_it_does_not(tmp_path: Path) -> None:
    apu(tmp_path)  # card0, the 890M
    card(tmp_path, number=1, render=129, kfd_node=2)  # card1, an R9700 in the same box
    open_fd(tmp_path, 4100, 7, "/dev/dri/renderD128",
            fdinfo_text(APU_SLOT, 12, vram_kib=LLAMA_VRAM_KIB, gtt_kib=LLAMA_GTT_KIB))
    open_fd(tmp_path, 4200, 5, "/dev/dri/renderD129", fdinfo_text(SLOT, 41, vram_kib=2 * 2**20, gtt_kib=2048))
    backend = SysfsBackend(tmp_path)
    sampler = Sampler(1.0, ListSink(), lambda: ["llama", "train"], probe=backend,
                      run_pids={"llama": [4100], "train": [4200]}.__getitem__)
    sample = sampler.sample_once()
    integrated, discrete = sample.gpus
    assert (integrated.name, integrated.arch, integrated.vram_total_bytes) == (
        "AMD GPU [1002:150e]", "gfx1150", APU_CARVE_OUT)
    assert (integrated.process_memory, discrete.process_memory) == ("vram+gtt", "vram")
    assert backend.processes() == {4100: {0: (LLAMA_VRAM_KIB + LLAMA_GTT_KIB) * 1024}, 4200: {1: 2 * GIB}}
    summary = summarize([Window(sample.time - 0.5, sample.time + 0.5, [sample])], period_s=1.0, run="llama")
    assert summary.gpu_process_memory == {"0": "vram+gtt"}  # the run's GPU memory there is not VRAM alone


def test_an_apu_is_told_by_its_topology_and_its_vram_total() -> None:
    discrete = KfdNode("1", 120001, SLOT, local_memory_bytes=R9700_VRAM)
    assert not is_apu(discrete, R9700_VRAM) and not is_apu(None, APU_CARVE_OUT)
    handed_gtt = KfdNode("1", 110500, APU_SLOT, local_memory_bytes=48 * GIB)  # the kernel lends GTT as local
    assert is_apu(handed_gtt, APU_CARVE_OUT)
    older = KfdNode("1", 110500, APU_SLOT, local_memory_bytes=APU_CARVE_OUT)  # a kernel before that: the carve-out
    assert is_apu(older, APU_CARVE_OUT) and not is_apu(older, 2 * GIB)
    assert is_apu(KfdNode("1", 80001, None, cpu_cores=4, local_memory_bytes=GIB), GIB)  # Kaveri's combined node
    assert is_apu(KfdNode("1", 90402, None, system_heap=True), 128 * GIB)  # an APU whose GPU heap is system memory


def test_an_older_kernels_apu_is_an_apu_by_its_carve_out(tmp_path: Path) -> None:
    apu(tmp_path, kfd_memory=APU_CARVE_OUT)
    open_fd(tmp_path, 4100, 7, "/dev/dri/renderD128", fdinfo_text(APU_SLOT, 12, vram_kib=1024, gtt_kib=4096))
    backend = SysfsBackend(tmp_path)
    assert backend.read()[0][0].process_memory == "vram+gtt"
    assert backend.processes() == {4100: {0: 5 * MIB}}


def test_amdsmi_counts_an_apus_gtt_mem_too(tmp_path: Path) -> None:
    apu(tmp_path)
    smi = FakeAmdSmi(processes=[proc(4100, LLAMA_VRAM_KIB * 1024, gtt=LLAMA_GTT_KIB * 1024)])
    smi.bdf, smi.total, smi.target = APU_SLOT, APU_CARVE_OUT, "gfx11500"
    backend = AmdSmiBackend(smi, tmp_path)
    (gpu,), note = backend.read()
    assert (gpu.arch, gpu.process_memory) == ("gfx1150", "vram+gtt") and note is not None and "gfx11500" in note
    assert backend.processes() == {4100: {0: (LLAMA_VRAM_KIB + LLAMA_GTT_KIB) * 1024}}


def test_a_discrete_cards_gtt_stays_out_of_its_holders_memory(tmp_path: Path) -> None:
    card(tmp_path)
    smi = FakeAmdSmi(processes=[proc(2101, 20 * GIB, gtt=3 * GIB)])
    backend = AmdSmiBackend(smi, tmp_path)
    assert backend.read()[0][0].process_memory == "vram"
    assert backend.processes() == {2101: {0: 20 * GIB}}
