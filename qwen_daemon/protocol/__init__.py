"""All that crosses the daemon's socket: the records, the job kinds, the socket's place, and the client.

The bottom of the daemon: it imports nothing else of qwen_daemon (only
qwen_train's torch-free contracts), so the server, the CLI and the dashboard
decode the same Structs and a change here is a change on both sides. The
routes that serve them are the API's (api/routes.py); what each job kind means
is the jobs room's (jobs/kinds/). Errors are ErrorBody with a 4xx/5xx status.

  runs.py       a run's row, detail, kept checkpoints and curves
  requests.py   what clients send (launch, diagnose, gate, class change), health, errors
  resources.py  samples, summaries and series of host and run resources
  surfaces.py   surfaces, their classes and audit; bindroots.py: mount proofs
  scores.py     a run's listening scores, their judges and the best checkpoint
  kinds.py      the job kinds and child-job names; socket.py: where the socket is
  errors.py     RequestError, the 4xx a handler raises; client.py: DaemonClient
  display.py    how its values read to a person, one set for the CLI and the dashboard
"""

from __future__ import annotations

from qwen_daemon.protocol.bindroots import BindRootStatus, BindRootsView, ProbeResult, ProbeView
from qwen_daemon.protocol.kinds import (
    KINDS,
    JobKind,
    KindInfo,
    child_name,
    diagnose_name,
    gate_name,
    kind_info,
    score_name,
)
from qwen_daemon.protocol.requests import (
    ClassChange,
    DiagnoseRequest,
    ErrorBody,
    GateRequest,
    HealthView,
    LaunchRequest,
)
from qwen_daemon.protocol.resources import (
    DEFAULT_POINTS,
    MAX_POINTS,
    Gap,
    GpuSample,
    HostView,
    MetricSeries,
    MetricStats,
    ResourceBucket,
    ResourceSample,
    ResourceSummary,
    RunResources,
    RunUsage,
    SamplerHealth,
)
from qwen_daemon.protocol.runs import (
    ACTIVE_STATES,
    PENDING_STATES,
    CheckpointView,
    EvalPoint,
    Health,
    LossPoint,
    RunDetail,
    RunHistory,
    RunList,
    RunState,
    RunView,
)
from qwen_daemon.protocol.scores import BEST_RULE, RunScores, ScorePoint, ScoreProblem, best_step
from qwen_daemon.protocol.surfaces import (
    DEFAULT_SURFACE,
    NEVER_LAUNCHED,
    AuditEntry,
    AuditList,
    Surface,
    SurfaceClass,
    SurfaceList,
)
from qwen_train.gate.verdict import CRITERIA, Criterion, GateVerdict

__all__ = [
    "ACTIVE_STATES", "BEST_RULE", "AuditEntry", "AuditList", "BindRootStatus", "BindRootsView", "CRITERIA",
    "CheckpointView", "ClassChange", "Criterion", "DEFAULT_POINTS", "DEFAULT_SURFACE", "DiagnoseRequest",
    "ErrorBody", "EvalPoint", "Gap", "GateRequest", "GateVerdict", "GpuSample", "Health", "HealthView", "HostView",
    "JobKind", "KINDS", "KindInfo", "LaunchRequest", "LossPoint", "MAX_POINTS", "MetricSeries", "MetricStats",
    "NEVER_LAUNCHED", "PENDING_STATES", "ProbeResult", "ProbeView", "ResourceBucket", "ResourceSample",
    "ResourceSummary",
    "RunDetail", "RunHistory", "RunList", "RunResources", "RunScores", "RunState", "RunUsage", "RunView",
    "SamplerHealth", "ScorePoint", "ScoreProblem", "best_step",
    "Surface", "SurfaceClass", "SurfaceList", "child_name", "diagnose_name", "gate_name", "kind_info", "score_name",
]
