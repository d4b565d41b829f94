"""A small client for the daemon's Unix-socket API (used by CLI and dashboard).

Run names go into paths quoted, so a bad name reaches the daemon as one bad
name (400) and never as another route.
"""

from __future__ import annotations

import http.client
import socket
import urllib.parse
from pathlib import Path
from typing import TypeVar

import msgspec

from qwen_daemon.protocol import (
    AuditList,
    BindRootsView,
    ClassChange,
    DiagnoseRequest,
    ErrorBody,
    GateRequest,
    GateVerdict,
    HealthView,
    HostView,
    JobKind,
    LaunchRequest,
    ProbeView,
    RunDetail,
    RunHistory,
    RunList,
    RunResources,
    RunScores,
    RunView,
    Surface,
    SurfaceList,
)
from qwen_daemon.protocol.disk import DiskView
from qwen_daemon.protocol.gpu import GpuStatus, ReserveRequest
from qwen_train.prepare.spec import PrepareSpec
from qwen_train.spec import Runner, RunSpec
from qwen_train.status import Diagnosis

T = TypeVar("T")


class DaemonError(RuntimeError):
    """The daemon answered with an error, or could not be reached."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def _run_path(name: str, action: str | None = None) -> str:
    path = f"/runs/{urllib.parse.quote(name, safe='')}"
    return path if action is None else f"{path}/{action}"


class DaemonClient:
    def __init__(self, socket_path: Path | str, timeout: float = 10.0) -> None:
        self.socket_path = str(socket_path)
        self.timeout = timeout

    def _request(self, method: str, path: str, kind: type[T], body: bytes | None = None) -> T:
        conn = _UnixConnection(self.socket_path, self.timeout)
        try:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise DaemonError(
                0,
                f"daemon not reachable at {self.socket_path} ({exc.strerror}); "
                "start it with `qwen-daemon serve` or `systemctl start qwen-daemon`",
            ) from None
        except OSError as exc:
            raise DaemonError(0, f"daemon connection failed at {self.socket_path}: {exc}") from None
        finally:
            conn.close()
        if resp.status >= 400:
            try:
                err = msgspec.json.decode(raw, type=ErrorBody)
                message = err.error + (f": {err.detail}" if err.detail else "")
            except msgspec.MsgspecError:
                message = raw.decode("utf-8", "replace")[:500]
            raise DaemonError(resp.status, message)
        return msgspec.json.decode(raw, type=kind)

    def health(self) -> HealthView:
        return self._request("GET", "/health", HealthView)

    def host(self) -> HostView:
        return self._request("GET", "/host", HostView)

    def runs(self) -> RunList:
        return self._request("GET", "/runs", RunList)

    def run(self, name: str) -> RunDetail:
        return self._request("GET", _run_path(name), RunDetail)

    def launch(
        self, spec: RunSpec | None = None, spec_path: str | None = None, kind: JobKind = "train",
        prepare: PrepareSpec | None = None, surface: str | None = None, runner: Runner | None = None,
    ) -> RunView:
        """A training run (`spec` or `spec_path`), or with kind "preprocess" a prepare job
        (`prepare` or `spec_path`; `surface` and `runner` only for those)."""
        request = LaunchRequest(spec=spec, spec_path=spec_path, kind=kind, prepare=prepare, surface=surface,
                                runner=runner)
        return self._request("POST", "/runs", RunView, msgspec.json.encode(request))

    def prepare(self, spec: PrepareSpec, surface: str | None = None, runner: Runner | None = None) -> RunView:
        """Launch a preprocess job from an inline PrepareSpec (absolute paths)."""
        return self.launch(kind="preprocess", prepare=spec, surface=surface, runner=runner)

    def stop(self, name: str) -> RunView:
        return self._request("POST", _run_path(name, "stop"), RunView, b"{}")

    def resume(self, name: str) -> RunView:
        return self._request("POST", _run_path(name, "resume"), RunView, b"{}")

    def history(self, name: str) -> RunHistory:
        """Per-step losses (at most 2000 points, the last kept) and evals; a diagnose job's are its run's."""
        return self._request("GET", _run_path(name, "history"), RunHistory)

    def resources(self, name: str, points: int | None = None) -> RunResources:
        """The run's resource series in at most `points` buckets (the daemon's default 120 when None)."""
        query = "" if points is None else f"?points={points}"
        return self._request("GET", _run_path(name, "resources") + query, RunResources)

    def diagnosis(self, name: str) -> Diagnosis:
        """The run's diagnosis.json; DaemonError 404 until one exists, 422 if it is malformed."""
        return self._request("GET", _run_path(name, "diagnosis"), Diagnosis)

    def diagnose(self, name: str, step: int | None = None) -> RunView:
        """Start the job `NAME.diagnose` replaying run NAME to `step` (None: its last non-finite event)."""
        body = msgspec.json.encode(DiagnoseRequest(step=step))
        return self._request("POST", _run_path(name, "diagnose"), RunView, body)

    def gate(self, name: str, asr: str | None = None, thresholds: str | None = None,
             checkpoint: int | None = None, verifier: str | None = None) -> RunView:
        """Start the job `NAME.gate`: the promotion gate on ended training run NAME (paths on the daemon's host)."""
        body = msgspec.json.encode(GateRequest(asr=asr, thresholds=thresholds, checkpoint=checkpoint,
                                               verifier=verifier))
        return self._request("POST", _run_path(name, "gate"), RunView, body)

    def verdict(self, name: str) -> GateVerdict:
        """Run NAME's gate verdict; DaemonError 404 until the gate has written one, 422 if it is unreadable."""
        return self._request("GET", _run_path(name, "gate"), GateVerdict)

    def scores(self, name: str) -> RunScores:
        """Run NAME's listening scores: the base row, each scored checkpoint, the best (a child job's: its run's)."""
        return self._request("GET", _run_path(name, "scores"), RunScores)

    def surfaces(self) -> SurfaceList:
        return self._request("GET", "/surfaces", SurfaceList)

    def set_class(self, name: str, change: ClassChange) -> Surface:
        return self._request("POST", f"/surfaces/{name}/class", Surface, msgspec.json.encode(change))

    def audit(self) -> AuditList:
        return self._request("GET", "/surfaces/audit", AuditList)

    def bind_roots(self) -> BindRootsView:
        return self._request("GET", "/bind-roots", BindRootsView)

    def probe(self) -> ProbeView:
        return self._request("POST", "/bind-roots/probe", ProbeView, b"{}")

    def disk(self) -> DiskView:
        """Free space of the runs dir, the state dir and each bind root; the state writes a full disk refuses."""
        return self._request("GET", "/disk", DiskView)

    def gpu_status(self) -> GpuStatus:
        return self._request("GET", "/gpu", GpuStatus)

    def gpu_reserve(self, reason: str) -> GpuStatus:
        return self._request("POST", "/gpu/reserve", GpuStatus, msgspec.json.encode(ReserveRequest(reason=reason)))

    def gpu_release(self) -> GpuStatus:
        return self._request("POST", "/gpu/release", GpuStatus, b"{}")
