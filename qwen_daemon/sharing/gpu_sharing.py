"""The shared GPU as the daemon runs it: admission at launch, the queue, reservations, headroom warnings.

One object the service asks before every launch (`admit`), whose thread
starts queued runs when their card has room and nobody reserved it, and warns
on a training run once its card's free memory runs low. Its facts come from
the sampler (what each GPU holds, and who holds it); its rules from
admission.py; its reservations from reservations.py, so they survive restarts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Literal

from qwen_daemon.jobs.job import Job
from qwen_daemon.protocol import GpuSample, kind_info
from qwen_daemon.protocol.gpu import GpuHolder, GpuReservation, GpuStatus
from qwen_daemon.resources.gpu.backend import GpuBackend
from qwen_daemon.runs.record import RunRecord
from qwen_daemon.runs.registry import Registry
from qwen_daemon.sharing.admission import gpu_spec, headroom_warning, holders, planned_peak, why_not
from qwen_daemon.sharing.beside import scoring_peak, why_not_beside
from qwen_daemon.sharing.reservations import Reservations
from qwen_daemon.ticker import Ticker
from qwen_train.spec import SpecError, decode_spec

log = logging.getLogger(__name__)

AdmissionMode = Literal["refuse", "queue"]
TICK_S = 2.0


class Refused(Exception):
    """A launch that may not start on the GPU now; `rule` names the rule, `reason` says what it waits for."""

    def __init__(self, rule: str, reason: str, queueable: bool = True) -> None:
        super().__init__(f"refused by rule {rule}: {reason}")
        self.rule = rule
        self.reason = reason
        self.queueable = queueable  # room may appear; a plan that cannot be made never will


class GpuSharing:
    def __init__(self, registry: Registry, reservations: Reservations, mode: AdmissionMode,
                 backend: Callable[[], GpuBackend], run_pids: Callable[[str], list[int]]) -> None:
        """`backend`: the sampler's GPU reader; admission reads the card when it decides, not the last tick."""
        self.registry = registry
        self.reservations = reservations
        self.mode = mode
        self._backend = backend
        self._run_pids = run_pids
        self.warnings: dict[str, str] = {}
        self._waiting: dict[str, str] = {}  # queued run -> what it waited for at the last tick
        self._plans: dict[tuple[str, int], int] = {}  # (launch nonce, card bytes) -> that launch's planned peak
        self._ticker = Ticker("gpu-sharing", TICK_S, self.tick)

    def holders(self) -> list[GpuHolder]:
        runs = {record.name: self._run_pids(record.name) for record in self.registry.active()}
        return holders(self._backend().processes(), runs)

    def _gpus(self, wake: bool = False) -> tuple[list[GpuSample], str | None]:
        return self._backend().read(wake=wake)

    def status(self) -> GpuStatus:
        gpus, note = self._gpus()
        return GpuStatus(gpus=gpus, holders=self.holders(), reservation=self.reservations.current(),
                         queued=[record.name for record in self.registry.queued()], backend=self._backend().name,
                         note=note)

    def admit(self, job: Job) -> None:
        """Raise Refused when `job` may not start on the GPU now."""
        spec = gpu_spec(job)
        if spec is None:
            self._admit_beside(job)
            return
        try:
            # Wake a sleeping card for this one reading: the run is about to use it, and its VRAM must be known.
            refusal = why_not(spec, self._gpus(wake=True)[0], self.reservations.current(), self.holders())
        except ValueError as exc:
            raise Refused("gpu-plan", f"cannot plan run {spec.name}'s GPU memory: {exc}", queueable=False) from None
        if refusal is not None:
            raise Refused(*refusal)

    def _admit_beside(self, job: Job) -> None:
        """A job that loads a training run's model (scoring): room for it and for the card's runs' plans."""
        try:
            load = job.type.beside(job)
        except ValueError as exc:  # SpecError: the run's dir no longer holds a spec
            raise Refused("gpu-plan", f"cannot tell what {job.name} loads: {exc}", queueable=False) from None
        if load is None or load.spec.train.device == "cpu":
            return
        gpus = self._gpus(wake=True)[0]
        if not gpus:  # a host without a GPU: scoring runs on the CPU
            return
        try:
            need = scoring_peak(load.spec, load.asr)
        except ValueError as exc:
            raise Refused("gpu-plan", f"cannot plan {job.name}'s GPU memory: {exc}", queueable=False) from None
        refusal = why_not_beside(job.name, need, gpus, self.reservations.current(), self.holders(),
                                 self._running_plans)
        if refusal is not None:
            raise Refused(*refusal)

    def _running_plans(self, gpu_bytes: int) -> dict[str, int]:
        """The planned peaks of our training runs running on a GPU now, by run (each launch's planned once)."""
        plans: dict[str, int] = {}
        active = self.registry.active()
        self._plans = {key: peak for key, peak in self._plans.items() if key[0] in {r.nonce for r in active}}
        for record in active:
            if not kind_info(record.kind).trains or record.nonce is None:
                continue
            key = (record.nonce, gpu_bytes)
            if key not in self._plans:
                try:
                    spec = decode_spec(record.spec_json, source=f"run {record.name}")
                    self._plans[key] = 0 if spec.train.device == "cpu" else planned_peak(spec, gpu_bytes)
                except (SpecError, ValueError) as exc:
                    log.warning("run %s: no memory plan to keep room for (%s)", record.name, exc)
                    self._plans[key] = 0
            if self._plans[key]:
                plans[record.name] = self._plans[key]
        return plans

    def reserve(self, reason: str, actor: str) -> GpuReservation:
        reservation = self.reservations.reserve(reason, actor)
        log.info("GPU reserved by %s: %s", actor, reason)
        return reservation

    def release(self, actor: str) -> GpuReservation | None:
        released = self.reservations.release(actor)
        log.info("GPU released by %s", actor)
        return released

    # the queue and the warnings

    def start(self, launch_queued: Callable[[RunRecord], None]) -> None:
        self._launch_queued = launch_queued
        self._ticker.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._ticker.stop(timeout)

    def tick(self, now: float) -> None:
        """Start the oldest queued run that now fits (one a tick: the next reading sees its memory), then warn."""
        for record in self.registry.queued():
            try:
                self._launch_queued(record)
                break
            except Refused as exc:
                if self._waiting.get(record.name, record.message) != exc.reason:
                    self.registry.add_event(record.name, "queued", exc.reason, now)
                self._waiting[record.name] = exc.reason
                continue
        self._warn(now)

    def _warn(self, now: float) -> None:
        training = [r for r in self.registry.active() if kind_info(r.kind).trains and r.state == "running"]
        gpus = self._gpus()[0] if training else []
        for record in training:
            warning = headroom_warning(gpus, 1)
            if warning is not None and self.warnings.get(record.name) != warning:
                if record.name not in self.warnings:
                    self.registry.add_event(record.name, "gpu-headroom", warning, now)
                self.warnings[record.name] = warning
            elif warning is None:
                self.warnings.pop(record.name, None)
        for name in set(self.warnings) - {r.name for r in training}:
            del self.warnings[name]
