"""Building blocks for the gate's tests: a run dir variant, a resource summary, a thresholds file."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import msgspec

from qwen_daemon.protocol import Gap, MetricStats, ResourceSummary
from qwen_train.status import Status, read_status, write_status

# The tiny random models cannot meet real thresholds: loosen only those, and bound the generated length.
# The tiny speech tokenizer decodes to silence, so the silence floor is loosened too. The listening criteria's
# thresholds are loosened the same way: a random model's clones hold no speech a VAD hears (no speaking rate,
# all silent), its verifier calibration on the espeak voices is no footing, and it is no better than the base.
LOOSE = {"min_speaker_similarity": -1.0, "min_base_encoder_similarity": -1.0, "max_cer": 100.0, "min_clone_peak": 0.0,
         "max_new_tokens": 24, "max_verifier_eer": 1.0, "similarity_margin": 100.0, "min_cer_gain": -100.0,
         "min_rate_ratio": 0.01, "max_rate_ratio": 100.0, "min_rate_rows": 0.0, "max_end_failures": 1.0,
         "max_ovrl_drop": 5.0}
SHORT = {"max_new_tokens": 24}  # the real thresholds, with a short generation


def write_json(path: Path, value: object) -> Path:
    path.write_bytes(msgspec.json.encode(value))
    return path


def resource_summary(span: float = 600.0, gap: float = 10.0, gpu: bool = False,
                     gpu_note: str | None = "NVML: library not found") -> ResourceSummary:
    """A summary shaped as the daemon's sampler writes it, ending now."""
    now = time.time()
    stats = MetricStats(count=100, median=40.0, min=5.0, max=95.0, p95=90.0)
    metrics = {"cpu_percent": stats, "ram_used_bytes": stats}
    if gpu:
        metrics |= {"gpu0_busy_percent": stats, "gpu0_vram_used_bytes": stats}
    gaps = [Gap(start=now - span / 2, end=now - span / 2 + gap)] if gap else []
    return ResourceSummary(samples=100, first=now - span, last=now, metrics=metrics, gaps=gaps, gpu_note=gpu_note)


def variant_run(source: Path, where: Path, spec: Path, state: str | None = None,
                resources: ResourceSummary | None = None, **status_fields: object) -> Path:
    """A run dir holding only status.json (optionally changed), spec.json and resources.json.

    Judged with --export, the gate needs no checkpoint, so a variant costs no training.
    """
    where.mkdir(parents=True)
    status: Status = read_status(source / "status.json")
    if state is not None:
        status_fields["state"] = state
    write_status(where, msgspec.structs.replace(status, **status_fields))
    shutil.copyfile(spec, where / "spec.json")
    if resources is not None:
        write_json(where / "resources.json", resources)
    return where
