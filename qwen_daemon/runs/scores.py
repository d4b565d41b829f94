"""A run's listening scores as the daemon serves them: read from RUN_DIR/scores/, checked, the best marked.

The scorer (`qwen-train score`) writes one record per checkpoint
(qwen_train.scores.record); the daemon only reads them, for GET
/runs/{name}/scores, for the history's score curves, and for what a scoring job
said when it ended. The files are the scorer's, inside a run dir its container
can write, so each is read as the trainer's other files are: regular files
only, no symlink, bounded (qwen_train.safe_read), and a file that cannot be used
is a `ScoreProblem` naming it, left out rather than read as zeros. A record
whose step is not its file's is one too: the table would put it on the wrong
checkpoint. The dashboard asks for the history every second, so records are
kept by path and re-read only when the file's size or mtime changes.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from qwen_daemon.protocol import RunScores, ScorePoint, ScoreProblem, best_step
from qwen_daemon.protocol.scores import score_point
from qwen_train.checkpoint_files import list_checkpoints, step_of
from qwen_train.safe_read import MiB, UnsafeFile, decode_json, read_regular
from qwen_train.scores.record import BASE_FILE, SCORES_DIR, Scores, scored_steps

SCORES_LIMIT = 16 * MiB  # a listening set of a few dozen rows: tens of KiB a record
MAX_CACHED = 4096

_Key = tuple[int, int, int]  # inode, size, mtime_ns


def read_record(path: Path, step: int | None) -> Scores:
    """One scores file, which must hold `step` (None: the base model's); ValueError naming the file otherwise."""
    try:
        raw = read_regular(path, SCORES_LIMIT, what="scores file", nofollow=True)
    except UnsafeFile as exc:
        raise ValueError(str(exc)) from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({exc.strerror})") from None
    scores = decode_json(raw, Scores, f"{path}: malformed scores")
    if scores.step != step:
        held = "the base model" if scores.step is None else f"step {scores.step}"
        raise ValueError(f"{path}: holds the scores of {held}, not of its file's "
                         f"{'base model' if step is None else f'step {step}'}: rewrite it with `qwen-train score`")
    return scores


def kept_steps(run_dir: Path) -> tuple[list[int], str | None]:
    """The steps of the run's durable checkpoints, or why they cannot be listed."""
    try:
        return [s for p in list_checkpoints(run_dir) if (s := step_of(p.name)) is not None], None
    except OSError as exc:
        return [], f"cannot list {run_dir}/checkpoints: {exc.strerror or exc}"


class ScoresReader:
    """Reads runs' scores, each file again only once it changed. Thread-safe (the API serves many clients)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[Path, tuple[_Key, Scores | str]] = {}

    def _read(self, path: Path, step: int | None) -> Scores | str:
        """The record, or the reason it cannot be used."""
        try:
            info = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            return f"{path}: gone while it was read"
        except OSError as exc:
            return f"{path}: cannot stat ({exc.strerror})"
        key = (info.st_ino, info.st_size, info.st_mtime_ns)
        with self._lock:
            cached = self._cache.get(path)
        if cached is not None and cached[0] == key:
            return cached[1]
        try:
            found: Scores | str = read_record(path, step)
        except ValueError as exc:
            found = str(exc)
        with self._lock:
            if len(self._cache) >= MAX_CACHED:
                self._cache.clear()
            self._cache[path] = (key, found)
        return found

    def run_scores(self, run: str, run_dir: Path) -> RunScores:
        """Every record of run `run`, the kept checkpoints, the best by BEST_RULE, and the files left out."""
        problems: list[ScoreProblem] = []
        base: Scores | None = None
        if (run_dir / SCORES_DIR / BASE_FILE).exists() or (run_dir / SCORES_DIR / BASE_FILE).is_symlink():
            found = self._read(run_dir / SCORES_DIR / BASE_FILE, None)
            if isinstance(found, str):
                problems.append(ScoreProblem(str(run_dir / SCORES_DIR / BASE_FILE), found))
            else:
                base = found
        checkpoints: list[Scores] = []
        for step, path in sorted(scored_steps(run_dir).items()):
            found = self._read(path, step)
            if isinstance(found, str):
                problems.append(ScoreProblem(str(path), found))
            else:
                checkpoints.append(found)
        kept, unlisted = kept_steps(run_dir)
        if unlisted is not None:
            problems.append(ScoreProblem(str(run_dir / "checkpoints"), unlisted))
        # Only a kept checkpoint can be promoted (retention keeps the best, by the same rule).
        candidates = [s for s in checkpoints if unlisted is not None or s.step in kept]
        best = best_step([score_point(s) for s in candidates])
        return RunScores(run=run, run_dir=str(run_dir), base=base, checkpoints=checkpoints, best=best, kept=kept,
                         problems=problems)


def history_points(scores: RunScores) -> tuple[list[ScorePoint], ScorePoint | None, int | None]:
    """The scores as a history's curves: one point per checkpoint, the base's, and the best step."""
    base = score_point(scores.base) if scores.base is not None else None
    return [score_point(s) for s in scores.checkpoints], base, scores.best


def unscored(scores: RunScores) -> list[int]:
    """The kept checkpoints that have no usable scores yet (a broken file is unscored too: scoring rewrites it)."""
    scored = {s.step for s in scores.checkpoints}
    return [step for step in scores.kept if step not in scored]
