"""The kinds of job, one file each; adding a kind is its file and one entry in KIND_TYPES.

Each kind's KindInfo (what a client may do with it) is in protocol/kinds.py;
here is how it runs.
"""

from __future__ import annotations

from qwen_daemon.jobs.job import Job, JobType
from qwen_daemon.jobs.kinds.diagnose import DIAGNOSE
from qwen_daemon.jobs.kinds.gate import GATE
from qwen_daemon.jobs.kinds.preprocess import PREPROCESS
from qwen_daemon.jobs.kinds.score import SCORE
from qwen_daemon.jobs.kinds.train import TRAIN
from qwen_daemon.protocol import LaunchRequest
from qwen_train.spec import SpecError

KIND_TYPES: dict[str, JobType] = {kind.info.kind: kind for kind in (TRAIN, PREPROCESS, DIAGNOSE, GATE, SCORE)}


def job_type(kind: str, source: str = "a job") -> JobType:
    """SpecError for a kind this daemon does not know (a registry row from a newer one)."""
    found = KIND_TYPES.get(kind)
    if found is None:
        raise SpecError(f"{source}: unknown job kind {kind!r}")
    return found


def decode_job(kind: str, name: str, lane: str, surface: str, runner: str, spec_json: str,
               parent: str | None) -> Job:
    """A registry row back into the Job it launched; SpecError if the stored spec no longer decodes."""
    return job_type(kind, f"run {name}'s recorded spec").decode(name, lane, surface, runner, spec_json, parent)


def resolve_launch(request: LaunchRequest) -> Job:
    """The validated job a LaunchRequest asks for, or a RequestError saying why not."""
    return KIND_TYPES[request.kind].from_request(request)


__all__ = ["DIAGNOSE", "GATE", "KIND_TYPES", "PREPROCESS", "SCORE", "TRAIN", "decode_job", "job_type", "resolve_launch"]
