"""Each GPU metric read or unread on its own, and a sleeping GPU left asleep (issue 26, points 1 and 3).

Over recorded trees (tests/gpu_trees.py) in the kernel's formats. The kernel's refusals are replayed
at the open boundary by an audit hook (gpu_trees.OpenAudit), which also records every file the readers
open: that is how these tests show which files a sleeping card's reading touched. amdsmi is its
documented API as the fake module in test_daemon_gpu_choice.py answers it.
"""

from __future__ import annotations

import errno
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from qwen_daemon.jobs.kinds import TRAIN
from qwen_daemon.protocol.resources import PRESENT_BUT_UNREAD
from qwen_daemon.resources.gpu.amdsmi_backend import AmdSmiBackend
from qwen_daemon.resources.gpu.choose import choose_backend
from qwen_daemon.resources.gpu.readings import ASLEEP
from qwen_daemon.resources.gpu.sysfs import SysfsBackend
from qwen_daemon.resources.sampler import Sampler, journal_fields
from qwen_daemon.resources.summary import Window, summarize
from qwen_daemon.runs.registry import Registry
from qwen_daemon.sharing.admission import RULE_ROOM, why_not
from qwen_daemon.sharing.gpu_sharing import GpuSharing
from qwen_daemon.sharing.reservations import Reservations
from qwen_train.gate.criteria import resource_evidence
from qwen_train.spec import RunSpec, TrainConfig
from tests.gate_fixtures import write_json
from tests.gpu_trees import EOPNOTSUPP, GIB, MIB, R9700_VRAM, OpenAudit, card, fdinfo_text, open_fd, sleep
from tests.test_daemon_gpu_choice import FakeAmdSmi, SmiError, proc
from tests.test_daemon_sampler import ListSink

SLOT, BC250_SLOT = "0000:03:00.0", "0000:01:00.0"
RENDER = "/dev/dri/renderD128"
REFERENCE = Path(__file__).resolve().parents[1] / "bench" / "train_model_config.json"
COUNTERS = ("gpu_busy_percent", "mem_info_vram_used", "mem_info_vram_total")


def bc250(root: Path) -> Path:
    """An ASRock BC-250 (Cyan Skillfish, 1002:13fe, gfx1013): gpu_busy_percent is there, reading it is refused."""
    return card(root, slot=BC250_SLOT, pci_id="1002:13fe", product=None, used=GIB, total=8 * GIB,
                gfx_target_version=100103)


@pytest.fixture
def sleeper() -> Iterator[int]:
    """A real process to stand for a run's trainer (the usage meter reads its CPU and RSS through psutil)."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        yield child.pid
    finally:
        child.kill()
        child.wait()


def spec_for(root: Path) -> RunSpec:
    (root / "model").mkdir(exist_ok=True)
    (root / "model" / "config.json").write_text(REFERENCE.read_text())
    return RunSpec(name="g", lane="benchmark", model=str(root / "model"), bundle=str(root),
                   train=TrainConfig(frame_budget=2000, recipe="lean"))


def test_a_busy_figure_refused_with_eopnotsupp_leaves_the_card_and_its_vram(tmp_path: Path, sleeper: int) -> None:
    device = bc250(tmp_path)
    open_fd(tmp_path, sleeper, 5, RENDER, fdinfo_text(BC250_SLOT, 9, vram_kib=512 * 1024))
    backend = choose_backend(tmp_path, try_nvml=False)
    sampler = Sampler(1.0, ListSink(), lambda: ["run"], probe=backend, run_pids=lambda run: [sleeper])
    with OpenAudit(tmp_path, refuse={device / "gpu_busy_percent": EOPNOTSUPP}):
        sample = sampler.sample_once()
    (gpu,) = sample.gpus
    assert (gpu.name, gpu.arch, gpu.busy_percent, gpu.vram_used_bytes, gpu.vram_total_bytes) == (
        "AMD GPU [1002:13fe]", "gfx1013", None, GIB, 8 * GIB)
    assert gpu.unread == {"busy_percent": "cannot read gpu_busy_percent: Operation not supported"}
    assert sample.gpu_note == (f"GPU 0 (card1 ({BC250_SLOT})) partly unread: busy: cannot read gpu_busy_percent: "
                               "Operation not supported")  # shown, and not "present but unread": VRAM was read
    assert sample.runs["run"].gpu_memory_per_gpu == {"0": 512 * MIB}  # its fdinfo clients are attributed
    fields = journal_fields(sample, "run")
    assert fields["QWEN_GPU0_VRAM_USED_BYTES"] == GIB and "QWEN_GPU0_BUSY_PERCENT" not in fields
    summary = summarize([Window(sample.time - 0.5, sample.time + 0.5, [sample])], period_s=1.0, run="run")
    assert "gpu0_vram_used_bytes" in summary.metrics and "gpu0_busy_percent" not in summary.metrics  # never a 0
    assert resource_evidence(write_json(tmp_path / "summary.json", summary), 0.10).passed  # VRAM is evidence
    spec = spec_for(tmp_path)
    assert why_not(spec, sample.gpus, None, [], peak=lambda spec, total: 6 * GIB) is None  # 7 GiB free: fits
    rule, reason = why_not(spec, sample.gpus, None, [], peak=lambda spec, total: 7 * GIB + 1) or ("", "")
    assert rule == RULE_ROOM and "has 7.0 GiB free of 8.0 GiB" in reason


def test_a_card_that_read_nothing_at_the_start_is_read_at_a_later_tick(tmp_path: Path, sleeper: int) -> None:
    device = card(tmp_path)
    open_fd(tmp_path, sleeper, 5, RENDER, fdinfo_text(SLOT, 41, vram_kib=20 * 2**20))
    refused = {device / name: errno.EACCES for name in COUNTERS}  # a daemon not yet in the video group
    with OpenAudit(tmp_path, refuse=refused):
        backend = choose_backend(tmp_path, try_nvml=False)
        sampler = Sampler(1.0, ListSink(), lambda: ["run"], probe=backend, run_pids=lambda run: [sleeper])
        first = sampler.sample_once()
    assert (backend.name, first.gpu_present) == ("sysfs", True)
    assert first.gpus[0].unread["vram_used_bytes"] == "cannot read mem_info_vram_used: Permission denied"
    assert first.gpu_note is not None and first.gpu_note.startswith(f"{PRESENT_BUT_UNREAD}: GPU 0 (card1 ({SLOT}))")
    assert first.runs["run"].gpu_memory_per_gpu == {"0": 20 * GIB}  # its clients are its own from the first tick
    later = sampler.sample_once()  # the files read now
    assert (later.gpus[0].busy_percent, later.gpus[0].vram_used_bytes, later.gpus[0].unread) == (37.0, 6 * GIB, {})
    assert later.gpu_note is None


def test_an_impossible_busy_reading_is_unread_not_a_percentage(tmp_path: Path) -> None:
    device = card(tmp_path)
    (device / "gpu_busy_percent").write_text("65535\n")  # the firmware's "not supported" mark, passed through
    gpu = SysfsBackend(tmp_path).read()[0][0]
    assert gpu.busy_percent is None and gpu.vram_used_bytes == 6 * GIB
    assert gpu.unread == {"busy_percent": "gpu_busy_percent reads 65535, which cannot be right (at most 100)"}


@pytest.mark.parametrize(("activity", "why"), [
    ("N/A", "amdsmi gives gfx_activity as 'N/A' (not reported for this GPU)"),
    (0xFFFF, "amdsmi gives gfx_activity as 65535 (0xffff), the mark of a value the GPU does not report"),
])
def test_amdsmi_not_applicable_busy_leaves_the_vram(tmp_path: Path, activity: object, why: str) -> None:
    card(tmp_path)
    smi = FakeAmdSmi()
    smi.activity = activity
    (gpu,), note = AmdSmiBackend(smi, tmp_path).read()
    assert (gpu.busy_percent, gpu.vram_used_bytes, gpu.vram_total_bytes) == (None, 9 * GIB, R9700_VRAM)
    assert gpu.unread == {"busy_percent": why} and note == f"GPU 0 (amdsmi {SLOT}) partly unread: busy: {why}"


def test_amdsmi_vram_refused_keeps_busy_and_admission_says_it_cannot_judge(tmp_path: Path) -> None:
    card(tmp_path)
    smi = FakeAmdSmi()
    smi.used = SmiError("AMDSMI_STATUS_NOT_SUPPORTED")
    (gpu,), _ = AmdSmiBackend(smi, tmp_path).read()
    assert (gpu.busy_percent, gpu.vram_used_bytes, gpu.vram_total_bytes) == (61.0, None, R9700_VRAM)
    refusal = why_not(spec_for(tmp_path), [gpu], None, [], peak=lambda spec, total: GIB)
    assert refusal == (RULE_ROOM, "GPU 0 (AMD Radeon AI PRO R9700) has no VRAM reading to judge room by: "
                                  "amdsmi cannot read VRAM used: AMDSMI_STATUS_NOT_SUPPORTED")


def test_a_sleeping_card_is_not_read_and_nothing_that_would_wake_it_is_opened(tmp_path: Path,
                                                                              sleeper: int) -> None:
    device = card(tmp_path)
    open_fd(tmp_path, sleeper, 5, RENDER, fdinfo_text(SLOT, 41, vram_kib=2**20))
    backend = SysfsBackend(tmp_path, clock=lambda: 1000.0)
    sampler = Sampler(1.0, ListSink(), lambda: ["run"], probe=backend, run_pids=lambda run: [sleeper])
    sampler.sample_once()  # awake: read in full
    sleep(device)
    with OpenAudit(tmp_path) as audit:
        asleep = sampler.sample_once()
    assert audit.under(device) == {"power/runtime_status"}  # no counter, no gpu_metrics, no hwmon: nothing that wakes
    assert audit.opened, "the audit saw the reader's opens"
    gpu = asleep.gpus[0]
    assert gpu.sleeping and gpu.busy_percent is None and gpu.unread == {"busy_percent": ASLEEP}
    assert (gpu.vram_used_bytes, gpu.vram_total_bytes, gpu.vram_read_at) == (6 * GIB, R9700_VRAM, 1000.0)
    assert asleep.gpu_note == (f"GPU 0 (card1 ({SLOT})) asleep (runtime-suspended): not read, so as not to wake "
                               "it (VRAM as last read awake)")
    assert asleep.runs["run"].gpu_memory_per_gpu == {"0": GIB}  # fdinfo is the process's, not the card's
    fields = journal_fields(asleep, None)
    assert fields["QWEN_GPU0_ASLEEP"] == 1 and "QWEN_GPU0_VRAM_USED_BYTES" not in fields
    summary = summarize([Window(asleep.time - 0.5, asleep.time + 0.5, [asleep])], period_s=1.0)
    assert not [name for name in summary.metrics if name.startswith("gpu0")]  # a last reading is no new one
    sleep(device, asleep=False)
    woke = sampler.sample_once().gpus[0]
    assert not woke.sleeping and woke.busy_percent == 37.0 and woke.vram_read_at is None


def test_a_card_asleep_from_the_start_shows_no_vram_until_admission_wakes_it(tmp_path: Path) -> None:
    device = card(tmp_path, runtime_status="suspended", used=GIB)
    with OpenAudit(tmp_path) as audit:
        backend = choose_backend(tmp_path, try_nvml=False)
        (gpu,), note = backend.read()
    assert audit.under(device) <= {"uevent", "product_name", "power/runtime_status"}  # found, named, left asleep
    assert gpu.sleeping and (gpu.vram_used_bytes, gpu.vram_total_bytes, gpu.vram_read_at) == (None, None, None)
    assert gpu.unread == dict.fromkeys(("busy_percent", "vram_used_bytes", "vram_total_bytes"), ASLEEP)
    assert note is not None and note.endswith("(VRAM never read awake)") and PRESENT_BUT_UNREAD not in note
    sharing = GpuSharing(Registry(tmp_path / "r.sqlite3"), Reservations(tmp_path), "refuse", lambda: backend,
                         lambda _: [])
    with OpenAudit(tmp_path) as audit:
        sharing.admit(TRAIN.job(spec_for(tmp_path)))  # 31 GiB free: the run fits once the card is read
    assert {"mem_info_vram_used", "mem_info_vram_total"} <= audit.under(device)  # woken on purpose, to judge
    (after,), _ = backend.read()
    assert after.sleeping and (after.vram_used_bytes, after.vram_total_bytes) == (GIB, R9700_VRAM)
    assert after.vram_read_at is not None and after.unread == {"busy_percent": ASLEEP}
    assert sharing.status().gpus[0].sleeping  # the GPU view does not wake it


def test_amdsmi_leaves_a_sleeping_gpu_asleep_and_takes_its_holders_from_fdinfo(tmp_path: Path) -> None:
    device = card(tmp_path)
    smi = FakeAmdSmi(processes=[proc(2101, 20 * GIB)])
    backend = AmdSmiBackend(smi, tmp_path, clock=lambda: 50.0)
    backend.read()
    sleep(device)
    open_fd(tmp_path, 2101, 5, RENDER, fdinfo_text(SLOT, 41, vram_kib=19 * 2**20))
    smi.asked.clear()
    (gpu,), note = backend.read()
    assert backend.processes() == {2101: {0: 19 * GIB}}
    assert smi.asked == []  # no activity, memory or process-list call: each reads files that wake the GPU
    assert gpu.sleeping and (gpu.vram_used_bytes, gpu.vram_read_at) == (9 * GIB, 50.0)
    assert note == f"GPU 0 (amdsmi {SLOT}) asleep (runtime-suspended): not read, so as not to wake it (VRAM as " \
                   "last read awake)"
    assert backend.read(wake=True)[0][0].busy_percent == 61.0 and "activity" in smi.asked


def test_amdsmi_asks_again_for_a_pci_address_it_was_refused_at_the_start(tmp_path: Path) -> None:
    card(tmp_path)
    open_fd(tmp_path, 2101, 5, RENDER, fdinfo_text(SLOT, 41, vram_kib=19 * 2**20))
    smi = FakeAmdSmi(refuse_processes=True)  # holders must come from fdinfo, which needs the GPU's address
    smi.bdf = SmiError("AMDSMI_STATUS_DRM_ERROR")
    backend = AmdSmiBackend(smi, tmp_path)
    (gpu,), _ = backend.read()
    assert gpu.arch == "gfx1201"  # amdsmi's own string, well-formed, while the topology cannot be matched
    assert backend.processes() == {}  # no address: no client can be told to be this GPU's
    smi.bdf = SLOT
    backend.read()
    assert backend.processes() == {2101: {0: 19 * GIB}}
