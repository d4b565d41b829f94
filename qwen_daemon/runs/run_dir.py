"""What a run left in its dir, as API answers: its curves, its diagnosis, its gate verdict, its checkpoints,
its listening scores.

Kept apart from service.py, which launches and stops; these only read. A
diagnose, gate or scoring job works on another run's dir, so its files are that run's:
the history, diagnosis, verdict, checkpoints and scores of RUN.diagnose, RUN.gate and RUN.score are RUN's.
A run's history carries its scores' curves (one point per scored checkpoint, the base row, the best).
Every unreadable file becomes a 4xx naming the file and how to rewrite it, except a
checkpoint's: the checkpoints are one part of a run's detail, so an unreadable one is
a row with its error and the rest of the detail is still served.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import msgspec

from qwen_daemon.jobs.kinds.children import child_target
from qwen_daemon.jobs.kinds.gate import read_run_verdict
from qwen_daemon.protocol import CheckpointView, GateVerdict, RunHistory, RunScores, kind_info
from qwen_daemon.protocol.errors import RequestError, not_found, unprocessable
from qwen_daemon.runs.checkpoints import CheckpointsUnreadable, list_kept
from qwen_daemon.runs.readers import FileProblem, HistoryReader, read_diagnosis
from qwen_daemon.runs.record import RunRecord
from qwen_daemon.runs.scores import ScoresReader, history_points
from qwen_train.spec import SpecError
from qwen_train.status import Diagnosis


class RunFiles:
    """Reads runs' files; `record` finds a run's registry record (a 404 RequestError for an unknown name)."""

    def __init__(self, record: Callable[[str], RunRecord]) -> None:
        self._record = record
        self.histories = HistoryReader()
        self.scores_reader = ScoresReader()

    def files_of(self, record: RunRecord) -> tuple[str, Path]:
        """The run whose files a job's are, and its dir."""
        if kind_info(record.kind).child:
            try:
                return child_target(record.spec_json, record.name)
            except SpecError as exc:
                raise unprocessable(str(exc)) from None
        return record.name, Path(record.run_dir)

    def history(self, name: str) -> RunHistory:
        record = self._record(name)
        run, run_dir = self.files_of(record)
        try:
            history = self.histories.history(name, run_dir)
        except FileProblem as exc:
            raise unprocessable(str(exc)) from None
        if not (kind_info(record.kind).trains or kind_info(record.kind).child):
            return history
        points, base, best = history_points(self.scores_reader.run_scores(run, run_dir))
        return msgspec.structs.replace(history, scores=points, base_scores=base, best_score_step=best)

    def scores(self, name: str) -> RunScores:
        """Run `name`'s scores (a child job's: its run's); 422 for a job that trains nothing."""
        record = self._record(name)
        info = kind_info(record.kind)
        if not (info.trains or info.child):
            raise unprocessable(f"{name!r} is a {record.kind} job: only training runs are scored")
        return self.scores_reader.run_scores(*self.files_of(record))

    def diagnosis(self, name: str) -> Diagnosis:
        run, run_dir = self.files_of(self._record(name))
        try:
            found = read_diagnosis(run_dir)
        except FileProblem as exc:
            raise unprocessable(f"{exc}: `qwen-daemon diagnose {run}` writes it again") from None
        if found is None:
            raise not_found(f"run {name!r} has no diagnosis yet ({run_dir}/diagnosis.json): one is written when "
                            f"the non-finite guard stops a step, or by `qwen-daemon diagnose {run}`")
        return found

    def verdict(self, name: str) -> GateVerdict:
        record = self._record(name)
        info = kind_info(record.kind)
        if not (info.trains or info.child):
            raise unprocessable(f"{name!r} is a {record.kind} job: only training runs have a gate verdict")
        return read_run_verdict(*self.files_of(record))

    def checkpoints(self, record: RunRecord) -> tuple[list[CheckpointView], str | None]:
        """The durable checkpoints in the run's dir, oldest first, or why they cannot be listed."""
        try:
            _, run_dir = self.files_of(record)
            return list_kept(run_dir), None
        except RequestError as exc:
            return [], exc.error
        except CheckpointsUnreadable as exc:
            return [], str(exc)
