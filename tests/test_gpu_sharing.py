"""Sharing Hemma's card: admission against the plan, holders named, the queue, reservations across a restart.

The daemon reads a recorded sysfs/fdinfo tree (tests/gpu_trees.py: an
R9700-like card, gfx1201, 32 GiB) through `--gpu-root`, the same reader it
uses on Hemma, so "another tenant holds 20 GiB" is a file the test writes and
"the tenant let go" is that file rewritten. The job is the harness's fake
trainer; its model dir holds the real model's config.json with a 12-layer
talker, so its plan lands between an empty card and a shared one whatever
recipe the spec resolves to; the tenant's size is taken from that plan.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest
from rich.console import Console

from qwen_daemon.protocol import ACTIVE_STATES
from qwen_daemon.protocol.client import DaemonError
from qwen_daemon.protocol.gpu import GpuHolder, GpuReservation, GpuStatus
from qwen_daemon.protocol.resources import GpuSample
from qwen_daemon.sharing.admission import RULE_RESERVED, RULE_ROOM, headroom_warning, why_not
from qwen_daemon.sharing.reservations import ReservationError, Reservations
from qwen_train.plan import plan_for_spec
from qwen_train.spec import RunSpec, TrainConfig
from qwen_tui.widgets.gpu_view import gpu_renderable
from tests.conftest import python_env
from tests.gpu_trees import GIB, card, counters, fdinfo_text, open_fd
from tests.small_fs import small_fs
from tests.test_daemon_harness import DaemonProcess, short_tmp_dir, trainer_wrapper, wait_until

REFERENCE = Path(__file__).resolve().parents[1] / "bench" / "train_model_config.json"
SLOT, RENDER = "0000:03:00.0", "/dev/dri/renderD128"
BUDGET = 1200  # padded talker positions a micro-batch
TALKER_LAYERS = 12
ROOMY_MIB = 1 << 20  # a 1 TiB tmpfs for run dirs: takes only what the fake trainer writes


def gpu_spec(root: Path, name: str, device: str = "auto") -> RunSpec:
    (root / "model").mkdir(exist_ok=True)
    (root / "bundle").mkdir(exist_ok=True)
    config = json.loads(REFERENCE.read_text())
    config["talker_config"]["num_hidden_layers"] = TALKER_LAYERS
    (root / "model" / "config.json").write_text(json.dumps(config))
    return RunSpec(name=name, lane="benchmark", model=str(root / "model"), bundle=str(root / "bundle"),
                   train=TrainConfig(max_steps=100000, frame_budget=BUDGET, device=device))


def r9700(used: int) -> list[GpuSample]:
    return [GpuSample(index=0, name="AMD Radeon AI PRO R9700", busy_percent=3.0, vram_used_bytes=used,
                      vram_total_bytes=32 * GIB)]


def peak_of(spec: RunSpec) -> int:
    peak = plan_for_spec(spec, gpu_bytes=32 * GIB).peak_bytes
    assert 8 * GIB < peak < 28 * GIB  # a real choice: it fits the card alone, not beside a large tenant
    return peak


def tenant_sizes(spec: RunSpec) -> tuple[int, int]:
    """(crowding, modest): a tenant that leaves 3 GiB less than the plan needs, and one that leaves 3 GiB more."""
    peak = peak_of(spec)
    return 32 * GIB - peak + 3 * GIB, 32 * GIB - peak - 3 * GIB


def test_the_plan_of_this_spec_fits_an_empty_card_and_not_a_shared_one(tmp_path: Path) -> None:
    spec = gpu_spec(tmp_path, "p")
    crowding, modest = tenant_sizes(spec)
    llama = GpuHolder(gpu=0, pid=3300, vram_bytes=crowding, command="llama-server -m q4.gguf")
    assert why_not(spec, r9700(used=modest), None, [llama]) is None
    rule, reason = why_not(spec, r9700(used=crowding), None, [llama]) or ("", "")
    free = f"{(32 * GIB - crowding) / GIB:.1f} GiB free of 32.0 GiB"
    assert rule == RULE_ROOM and free in reason and f"llama-server (pid 3300) {crowding / GIB:.1f} GiB" in reason
    held = GpuReservation(reason="speech sidecar serving", actor="ops", since=1.0)
    assert why_not(spec, r9700(used=0), held, [])[0] == RULE_RESERVED  # type: ignore[index]
    assert why_not(spec, [], held, []) is None  # no GPU read: nothing to judge (a CPU host)


def test_reservations_need_a_reason_are_audited_and_survive_a_new_reader(tmp_path: Path) -> None:
    first = Reservations(tmp_path)
    with pytest.raises(ReservationError, match="needs a reason"):
        first.reserve("  ", "ops")
    first.reserve("speech sidecar serving", "ops")
    with pytest.raises(ReservationError, match="already reserved by ops"):
        first.reserve("again", "someone")
    again = Reservations(tmp_path)  # what a restarted daemon reads
    assert again.current() is not None and again.current().reason == "speech sidecar serving"  # type: ignore[union-attr]
    assert again.release("ops") is not None and again.current() is None
    assert again.release("ops") is None  # nothing to release: nothing logged
    assert [(e.action, e.actor) for e in again.audit()] == [("reserve", "ops"), ("release", "ops")]
    (tmp_path / "gpu-reservation.json").write_text("{half")
    broken = again.current()
    assert broken is not None and "unreadable" in broken.reason  # a broken file keeps the card reserved


def test_low_headroom_while_training_is_a_warning() -> None:
    assert headroom_warning(r9700(used=31 * GIB), 1) is not None
    assert headroom_warning(r9700(used=20 * GIB), 1) is None


def tree_with_tenant(root: Path, used: int) -> Path:
    """An R9700 and a llama.cpp-like tenant (pid 3300) holding `used` through its DRM client."""
    device = card(root, used=used)
    open_fd(root, 3300, 12, RENDER, fdinfo_text(SLOT, 57, vram_kib=used // 1024))
    return device


def test_admission_refuses_naming_the_holder_or_queues_and_starts_when_room_appears() -> None:
    root = short_tmp_dir()
    tree = root / "tree"
    crowding, modest = tenant_sizes(gpu_spec(root, "sizes"))
    device = tree_with_tenant(tree, used=crowding)
    trainer = trainer_wrapper(root)
    with small_fs(ROOMY_MIB) as runs:  # the disk plan of these 1.1 B-parameter specs fits, whatever /tmp holds
        common = ("--gpu-root", str(tree), "--sample-period", "0.5", "--runs-dir", str(runs))
        admission_refuses_or_queues(root, device, trainer, common, (crowding, modest))


def admission_refuses_or_queues(root: Path, device: Path, trainer: Path, common: tuple[str, ...],
                                sizes: tuple[int, int]) -> None:
    crowding, modest = sizes
    daemon = DaemonProcess(root / "state", root / "d.sock", trainer, *common).start()
    try:
        with pytest.raises(DaemonError) as refused:
            daemon.client.launch(spec=gpu_spec(root, "g1"))
        assert refused.value.status == 409 and RULE_ROOM in str(refused.value) and "pid 3300" in str(refused.value)
        status = daemon.client.gpu_status()
        held = [(h.pid, h.vram_bytes) for h in status.holders]
        assert status.backend == "sysfs" and held == [(3300, crowding // 1024 * 1024)]  # fdinfo counts KiB
        assert daemon.client.launch(spec=gpu_spec(root, "cpu-run", device="cpu")).state in ("launching", "running")
        printed = subprocess.run([sys.executable, "-m", "qwen_daemon", "gpu", "status", "--socket", str(daemon.socket)],
                                 capture_output=True, text=True, env=python_env(), timeout=60)
        assert printed.returncode == 0 and "pid 3300" in printed.stdout and "not reserved" in printed.stdout
        daemon.client.stop("cpu-run")  # leave no trainer behind
        wait_until(lambda: daemon.client.run("cpu-run").run.state not in ACTIVE_STATES, 30, "cpu-run to stop")
    finally:
        daemon.stop()

    daemon = DaemonProcess(root / "state", root / "d.sock", trainer, *common, "--gpu-admission", "queue").start()
    try:
        client = daemon.client
        queued = client.launch(spec=gpu_spec(root, "g2"))
        assert (queued.state, queued.health) == ("queued", "waiting") and RULE_ROOM not in (queued.message or "x")
        assert "GPU 0" in (queued.message or "") and client.gpu_status().queued == ["g2"]
        client.gpu_reserve("speech sidecar serving")
        counters(device, busy=2, used=modest, total=32 * GIB)  # the tenant shrank, but the card is reserved
        time.sleep(3.0)  # two queue ticks: the reservation must hold it back
        assert client.run("g2").run.state == "queued"
    finally:
        daemon.stop()

    daemon = DaemonProcess(root / "state", root / "d.sock", trainer, *common, "--gpu-admission", "queue").start()
    try:
        client = daemon.client
        status = client.gpu_status()  # after the restart: still reserved, still queued
        assert status.reservation is not None and status.reservation.reason == "speech sidecar serving"
        assert client.run("g2").run.state == "queued"
        client.gpu_release()
        wait_until(lambda: client.run("g2").run.state in ("launching", "running"), 20, "the queue to start g2")
        events = [e.kind for e in client.run("g2").events]
        assert events.count("queued") >= 1 and "launch" in events
        client.stop("g2")
        wait_until(lambda: client.run("g2").run.state not in ACTIVE_STATES, 30, "g2 to stop")
    finally:
        daemon.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_a_queued_run_can_be_taken_off_the_queue() -> None:
    root = short_tmp_dir()
    tree = root / "tree"
    tree_with_tenant(tree, used=tenant_sizes(gpu_spec(root, "sizes"))[0])
    daemon = DaemonProcess(root / "state", root / "d.sock", trainer_wrapper(root), "--gpu-root", str(tree),
                           "--gpu-admission", "queue").start()
    try:
        assert daemon.client.launch(spec=gpu_spec(root, "g3")).state == "queued"
        with pytest.raises(DaemonError) as twice:
            daemon.client.launch(spec=gpu_spec(root, "g3"))
        assert twice.value.status == 409 and "queued for the GPU" in str(twice.value)
        view = daemon.client.stop("g3")
        assert view.state == "stopped" and "taken off the GPU queue" in (view.message or "")
        assert daemon.client.gpu_status().queued == []
    finally:
        daemon.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_the_host_screens_gpu_panel_names_holders_reservation_and_queue() -> None:
    status = GpuStatus(gpus=r9700(used=20 * GIB), queued=["g2"],
                       holders=[GpuHolder(gpu=0, pid=3300, vram_bytes=12 * GIB, command="llama-server"),
                                GpuHolder(gpu=0, pid=2101, vram_bytes=8 * GIB, run="sv-1")],
                       reservation=GpuReservation(reason="speech sidecar serving", actor="ops", since=time.time()))
    console = Console(width=100, record=True)
    console.print(gpu_renderable(status))
    text = console.export_text()
    for shown in ("RESERVED by ops", "speech sidecar serving", "queued for the GPU: g2", "12.0 GiB free of 32.0 GiB",
                  "llama-server", "run sv-1", "3300"):
        assert shown in text
    assert msgspec.json.decode(msgspec.json.encode(status), type=GpuStatus) == status
