"""Disk admission: a training run starts only when its run dir's disk has room for its disk plan.

The plan is `qwen-train plan`'s (qwen_train.plan.disk): the posture's kept
checkpoints, the one being written, an export and the logs, less what a
resume finds there already. The free space is read from the run dir's file
system when the launch is decided, so another tenant's use of a shared
scratch SSD counts. A run that does not fit is refused naming the path, the
need and the free space, or queued when the operator chose `--disk-admission
queue` (the GPU queue starts it once the space is there). The recipe of an
"auto" spec is resolved against the card the sampler sees, as the trainer
resolves it. A spec whose model config cannot be read is not judged here (its
trainer fails on loading that model first, and checks its own disk before
each checkpoint anyway): the launch goes on, with a warning in the log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from qwen_daemon.jobs.job import Job
from qwen_daemon.sharing.gpu_sharing import Refused
from qwen_train.disk import size_text
from qwen_train.plan.disk import DiskPlan, plan_disk
from qwen_train.spec import RunSpec

log = logging.getLogger(__name__)

RULE_DISK = "disk-room"


def refusal(spec: RunSpec, plan: DiskPlan) -> str:
    """Why `plan` does not fit, in the operator's terms: where, how much, what is free, what to change."""
    already = (f" ({plan.kept} durable checkpoint{'s' if plan.kept != 1 else ''} already there count toward it)"
               if plan.kept else "")
    return (f"run {spec.name} needs {size_text(plan.need_bytes or 0)} more on disk at its peak and {plan.checked}'s "
            f"file system (its run dir {plan.run_dir}) has {size_text(plan.free_bytes or 0)} free of "
            f"{size_text(plan.total_bytes or 0)}: {plan.keep_last} kept checkpoints of "
            f"{size_text(plan.checkpoint_bytes)} plus one being written, an export and logs{already} "
            f"(`qwen-train plan SPEC --run-dir {plan.run_dir}` shows the parts); free space there, lower "
            "posture.keep_last, or give the daemon --runs-dir on another disk")


class DiskAdmission:
    """`admit(job, run_dir)`: Refused (rule disk-room) when the run's disk plan does not fit."""

    def __init__(self, gpu_bytes: Callable[[], int | None]) -> None:
        """`gpu_bytes`: the first card's memory as the sampler reads it (None: no GPU), to resolve "auto"."""
        self._gpu_bytes = gpu_bytes

    def admit(self, job: Job, run_dir: Path) -> None:
        spec = job.spec
        if not isinstance(spec, RunSpec):
            return
        gpu = None if spec.train.device == "cpu" else self._gpu_bytes()
        try:
            plan = plan_disk(spec, run_dir, gpu)
        except ValueError as exc:
            log.warning("run %s is not judged on disk space at launch: %s", spec.name, exc)
            return
        except OSError as exc:
            raise Refused(RULE_DISK, f"the free space of {run_dir}'s file system cannot be read: {exc}",
                          queueable=False) from None
        if not plan.fits:
            raise Refused(RULE_DISK, refusal(spec, plan))
