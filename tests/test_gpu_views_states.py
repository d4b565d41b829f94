"""Unread, sleeping and GTT-counted GPUs, as `qwen-daemon host`, `gpu status`, `show` and the dashboard say them.

The samples come from the readers themselves over one recorded host (tests/gpu_trees.py): a Radeon
890M APU whose llama.cpp holds its working set in GTT, an R9700 that went to sleep after one reading,
and a BC-250 whose busy figure is refused with EOPNOTSUPP. The views must say each plainly: an
unread figure as unread with its reason (never 0%), a sleeping card as asleep with its last VRAM and
when it was read, and memory counted as VRAM+GTT where it was.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.widgets import Sparkline

from qwen_daemon.cli import render
from qwen_daemon.cli.gpu import status_text
from qwen_daemon.protocol import HostView, ResourceSample, SamplerHealth
from qwen_daemon.protocol.display import PLAIN
from qwen_daemon.protocol.gpu import GpuHolder, GpuStatus
from qwen_daemon.resources.gpu.sysfs import SysfsBackend
from qwen_daemon.resources.sampler import Sampler
from qwen_daemon.resources.summary import Window, summarize
from qwen_tui.screens.host import HostScreen
from qwen_tui.widgets.gpu_view import gpu_renderable
from qwen_tui.widgets.host_bar import host_text
from qwen_tui.widgets.host_view import metric_label, metric_rows, run_usage_renderable
from qwen_tui.widgets.summary_view import summary_renderable
from tests.gpu_trees import APU_SLOT, EOPNOTSUPP, GIB, OpenAudit, apu, card, fdinfo_text, open_fd, sleep
from tests.test_daemon_sampler import ListSink
from tests.test_tui_harness import SIZE, ScriptedDaemon, make_app, plain, run_view, until

READ_AT = 1_700_000_000.0
BUSY_WHY = "cannot read gpu_busy_percent: Operation not supported"


@pytest.fixture
def llama() -> Iterator[int]:
    """A real process standing for llama.cpp on the APU (the usage meter reads it through psutil)."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        yield child.pid
    finally:
        child.kill()
        child.wait()


@pytest.fixture
def sample(tmp_path: Path, llama: int) -> ResourceSample:
    """One tick of the sampler over the three cards, the R9700 asleep since the tick before."""
    apu(tmp_path)
    r9700 = card(tmp_path, number=1, render=129, kfd_node=2)
    bc250 = card(tmp_path, number=2, slot="0000:01:00.0", render=130, pci_id="1002:13fe", product=None, used=GIB,
                 total=8 * GIB, gfx_target_version=100103, kfd_node=3)
    open_fd(tmp_path, llama, 7, "/dev/dri/renderD128", fdinfo_text(APU_SLOT, 12, vram_kib=5348, gtt_kib=25258000))
    sampler = Sampler(5.0, ListSink(), lambda: ["llama"], probe=SysfsBackend(tmp_path, clock=lambda: READ_AT),
                      run_pids=lambda run: [llama])
    with OpenAudit(tmp_path, refuse={bc250 / "gpu_busy_percent": EOPNOTSUPP}):
        sampler.sample_once()
        sleep(r9700)
        return sampler.sample_once()


def test_the_cli_host_view_says_unread_asleep_and_vram_gtt(sample: ResourceSample) -> None:
    text = render.host_view(HostView(SamplerHealth(5.0, sample.time, True, sample.gpu_note, gpu_backend="sysfs"),
                                     sample))
    lines = {line.split(" ", 1)[0]: line for line in text.splitlines() if line.startswith("gpu")}
    assert lines["gpu0"].endswith("12.0% busy, 380.0 MiB of 512.0 MiB; per-process memory counts VRAM+GTT "
                                  "(an APU: its working set is in GTT)")
    assert lines["gpu1"] == (f"gpu1 AMD Radeon AI PRO R9700 (gfx1201): asleep (runtime-suspended: not read, so as "
                             f"not to wake it), VRAM 6.0 GiB of 32.0 GiB as of {PLAIN.clock(READ_AT)}")
    assert lines["gpu2"] == f"gpu2 AMD GPU [1002:13fe] (gfx1013): busy unread ({BUSY_WHY}), 1.0 GiB of 8.0 GiB"
    assert not [line for line in lines.values() if "0.0%" in line]  # an unread figure is never a zero
    assert f"GPU 2 (card2 (0000:01:00.0)) partly unread: busy: {BUSY_WHY}" in text  # the note, with the reason


def test_gpu_status_and_the_gpu_view_say_the_same(sample: ResourceSample) -> None:
    status = GpuStatus(gpus=sample.gpus, holders=[GpuHolder(0, 4100, 24 * GIB, command="llama-server")],
                       backend="sysfs", note=sample.gpu_note)
    text = status_text(status)
    assert f"GPU1 AMD Radeon AI PRO R9700 (gfx1201): asleep (runtime-suspended: not read, so as not to wake it), " \
           f"VRAM 6.0 GiB of 32.0 GiB as of {PLAIN.clock(READ_AT)} (26.0 GiB free)" in text
    assert f"GPU2 AMD GPU [1002:13fe] (gfx1013): busy unread ({BUSY_WHY}), 1.0 GiB of 8.0 GiB (7.0 GiB free)" in text
    assert "(132.0 MiB free); per-process memory counts VRAM+GTT" in text
    view = plain(gpu_renderable(status))
    assert "GPU0 AMD GPU [1002:150e]: 132.0 MiB free of 512.0 MiB; per-process memory counts VRAM+GTT" in view
    assert "GPU1 AMD Radeon AI PRO R9700: 26.0 GiB free of 32.0 GiB as of" in view
    assert "asleep (runtime-suspended" in view
    assert f"GPU2 AMD GPU [1002:13fe]: 7.0 GiB free of 8.0 GiB; not read: busy: {BUSY_WHY}" in view


def test_the_host_bar_and_host_screen_rows_say_unread_asleep_and_apu(sample: ResourceSample) -> None:
    bar = host_text(HostView(SamplerHealth(5.0, sample.time, True), sample), now=sample.time)
    assert "GPU0 AMD GPU [1002:150e] gfx1150 12.0% 380.0 MiB/512.0 MiB APU" in bar.plain
    assert "GPU1 AMD Radeon AI PRO R9700 gfx1201 asleep 6.0 GiB/32.0 GiB as of" in bar.plain
    assert "GPU2 AMD GPU [1002:13fe] gfx1013 busy unread 1.0 GiB/8.0 GiB" in bar.plain
    rows = {row.key: row for row in metric_rows([sample])}
    assert rows["gpu2-busy"].now == f"unread: {BUSY_WHY}" and rows["gpu2-busy"].values == []
    assert rows["gpu2-vram"].values == [float(GIB)]
    assert rows["gpu1-busy"].now.startswith("asleep") and rows["gpu1-vram"].values == []  # a last reading is no new one
    assert "no readings in the samples seen" in metric_label(rows["gpu1-vram"], 5.0).plain
    usage = plain(run_usage_renderable(sample))
    assert "(VRAM+GTT)" in usage.splitlines()[1] and "24.1 GiB (VRAM+GTT)" in usage


def test_show_and_the_run_summary_say_what_the_runs_gpu_memory_counted(sample: ResourceSample) -> None:
    summary = summarize([Window(sample.time - 1, sample.time + 1, [sample])], period_s=5.0, run="llama")
    lines = render.summary_lines(summary)
    assert "  run GPU memory on GPU0 counts VRAM+GTT (an APU: its working set is in GTT)" in lines
    assert any(f"partly unread: busy: {BUSY_WHY}" in line for line in lines)
    assert "run GPU memory on GPU0 counts VRAM+GTT" in plain(summary_renderable(summary, now=sample.time))


@pytest.mark.asyncio
async def test_the_host_screen_draws_a_sleeping_and_an_unread_gpu(sample: ResourceSample) -> None:
    daemon = ScriptedDaemon(run_view("a"))
    daemon.samples = [sample]
    daemon.gpu = GpuStatus(gpus=sample.gpus, backend="sysfs", note=sample.gpu_note)
    app = make_app(daemon)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("h")
        await until(pilot, lambda: isinstance(app.screen, HostScreen))
        await until(pilot, lambda: bool(app.screen.query("#gpu2-busy--label")))
        label = plain(app.screen.query_one("#gpu2-busy--label").render())
        assert f"busy unread: {BUSY_WHY}" in label and "no readings in the samples seen" in label
        assert "asleep" in plain(app.screen.query_one("#gpu1-busy--label").render())
        assert list(app.screen.query_one("#gpu1-vram--spark", Sparkline).data or []) == []
        assert list(app.screen.query_one("#gpu0-busy--spark", Sparkline).data or []) == [12.0]
