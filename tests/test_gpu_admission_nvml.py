"""GPU admission on a real card, read through NVML: a second process holding VRAM keeps a run out (-m gpu).

The CPU tests judge recorded AMD trees; this is the same rule against a live
NVIDIA card: another process allocates most of the card, the daemon's NVML
reader sees it and names it, and the run is admitted once that process lets
go. The run's plan comes from the real model's config; the squatter takes
what leaves the plan 3 GiB short.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qwen_daemon.jobs.kinds import TRAIN
from qwen_daemon.resources.gpu.choose import choose_backend
from qwen_daemon.runs.registry import Registry
from qwen_daemon.sharing.admission import RULE_ROOM
from qwen_daemon.sharing.gpu_sharing import GpuSharing, Refused
from qwen_daemon.sharing.reservations import Reservations
from qwen_train.plan import plan_for_spec
from qwen_train.spec import RunSpec, TrainConfig

REFERENCE = Path(__file__).resolve().parents[1] / "bench" / "train_model_config.json"
GIB = 2**30
SQUAT = ("import sys, time, torch; blob = torch.empty(int(sys.argv[1]), dtype=torch.uint8, device='cuda'); "
         "blob.fill_(1); torch.cuda.synchronize(); print('holding', flush=True); time.sleep(600)")


@pytest.mark.gpu
def test_a_second_process_holding_vram_keeps_the_run_out_until_it_lets_go(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text(REFERENCE.read_text())
    spec = RunSpec(name="g", lane="benchmark", model=str(tmp_path / "model"), bundle=str(tmp_path),
                   train=TrainConfig(frame_budget=2000, recipe="lean"))
    backend = choose_backend()
    assert backend.name == "nvml", backend.note
    sharing = GpuSharing(Registry(tmp_path / "r.sqlite3"), Reservations(tmp_path), "refuse", lambda: backend,
                         lambda _: [])
    gpus, _ = backend.read()
    total, used = gpus[0].vram_total_bytes, gpus[0].vram_used_bytes
    peak = plan_for_spec(spec, gpu_bytes=total).peak_bytes
    squat = total - used - peak + 3 * GIB
    sharing.admit(TRAIN.job(spec))  # the card is free enough now
    squatter = subprocess.Popen([sys.executable, "-c", SQUAT, str(squat)], stdout=subprocess.PIPE, text=True)
    try:
        assert squatter.stdout is not None and squatter.stdout.readline().strip() == "holding"
        with pytest.raises(Refused) as refused:
            sharing.admit(TRAIN.job(spec))
        assert refused.value.rule == RULE_ROOM and f"pid {squatter.pid}" in refused.value.reason
        held = {h.pid: h.vram_bytes for h in sharing.holders()}
        assert held.get(squatter.pid, 0) >= squat, held  # NVML attributes the memory to the squatter
        print(json.dumps({"total_gib": total / GIB, "peak_gib": peak / GIB, "squat_gib": squat / GIB,
                          "refusal": refused.value.reason}))
    finally:
        squatter.kill()
        squatter.wait()
    deadline = time.monotonic() + 30
    while True:  # the driver frees a dead process's memory within moments
        try:
            sharing.admit(TRAIN.job(spec))
            break
        except Refused:
            assert time.monotonic() < deadline, "the card never showed the squatter's memory as free"
            time.sleep(0.5)
    backend.close()
