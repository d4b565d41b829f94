"""A run's listening scores as clients see them: every scored checkpoint, the base row, the best one.

The records themselves are qwen_train.scores.record's (`Scores`, one file per
checkpoint in RUN_DIR/scores/); the daemon serves them whole at GET
/runs/{name}/scores (`RunScores`) and, as compact points, inside a run's
history (`ScorePoint`), which the dashboard already polls for its curves. Both
clients show the same columns with the same judges, and mark the same best
checkpoint, so the table, the dashboard and the CLI never disagree about which
checkpoint to promote: the rule is `best_step`, stated in `BEST_RULE`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import msgspec

from qwen_train.scores.record import Scores

Better = Literal["lower", "higher", "one"]  # a score is better lower, higher, or nearer 1.0 (a speaking-rate ratio)
Judge = Literal["asr", "verifier", "dnsmos", "vad", "generation"]

DNSMOS_JUDGE = "DNSMOS P.835 (speechmos)"
VAD_JUDGE = "Silero VAD (silero-vad)"
GENERATION_JUDGE = "the generation itself"
# Clones that ran to the generation limit or came out silent, beyond this share, make a checkpoint no candidate:
# its CER is measured on the clones that did speak, which flatters it (upstream reports ~0.5% never stopping).
MAX_FAILED_SHARE = 0.10
BEST_RULE = (f"lowest CER, then highest speaker similarity, then the newer step, among checkpoints whose clones "
             f"hit the generation limit or came out silent in at most {MAX_FAILED_SHARE:.0%} of rows")


@dataclass(frozen=True)
class ScoreColumn:
    """One score: the ScorePoint field it lives in, its short label, which judge measured it, which way is better."""

    key: str
    label: str
    judge: Judge
    better: Better


COLUMNS: tuple[ScoreColumn, ...] = (
    ScoreColumn("cer", "CER", "asr", "lower"),
    ScoreColumn("wer", "WER", "asr", "lower"),
    ScoreColumn("swedish_share", "Swedish", "asr", "higher"),
    ScoreColumn("similarity", "similarity", "verifier", "higher"),
    ScoreColumn("similarity_share", "sim/real", "verifier", "higher"),
    ScoreColumn("dnsmos_ovrl", "OVRL", "dnsmos", "higher"),
    ScoreColumn("dnsmos_sig", "SIG", "dnsmos", "higher"),
    ScoreColumn("dnsmos_bak", "BAK", "dnsmos", "higher"),
    ScoreColumn("rate_ratio", "rate", "vad", "one"),
    ScoreColumn("limit_share", "hit limit", "generation", "lower"),
    ScoreColumn("silent_share", "silent", "vad", "lower"),
)


class ScorePoint(msgspec.Struct, frozen=True):
    """One model's scores without its per-row detail: a point of each score's curve. `step` None: the base."""

    step: int | None
    cer: float | None = None
    wer: float | None = None
    swedish_share: float | None = None
    similarity: float | None = None
    similarity_share: float | None = None
    dnsmos_ovrl: float | None = None
    dnsmos_sig: float | None = None
    dnsmos_bak: float | None = None
    rate_ratio: float | None = None
    limit_share: float | None = None
    silent_share: float | None = None
    asr: str = ""
    verifier: str = ""
    dnsmos: str = ""
    vad: str = ""
    notes: dict[str, str] = {}
    measured_at: float = 0.0


class ScoreProblem(msgspec.Struct, frozen=True):
    """A scores file the daemon could not use, and why (it is left out, never read as zeros)."""

    path: str
    error: str


class RunScores(msgspec.Struct, frozen=True):
    """Run `run`'s scores: the base row, every scored checkpoint (oldest first), the best kept one by BEST_RULE.

    `kept`: the steps of the durable checkpoints the run keeps now (a scored one may be gone since, by retention;
    a kept one without scores is still to be scored). `problems`: files left out and why.
    """

    run: str
    run_dir: str
    base: Scores | None = None
    checkpoints: list[Scores] = []
    best: int | None = None
    best_rule: str = BEST_RULE
    kept: list[int] = []
    problems: list[ScoreProblem] = []


def score_point(scores: Scores) -> ScorePoint:
    return ScorePoint(step=scores.step, cer=scores.cer, wer=scores.wer, swedish_share=scores.swedish_share,
                      similarity=scores.similarity, similarity_share=scores.similarity_share,
                      dnsmos_ovrl=scores.dnsmos_ovrl, dnsmos_sig=scores.dnsmos_sig, dnsmos_bak=scores.dnsmos_bak,
                      rate_ratio=scores.rate_ratio, limit_share=scores.limit_share,
                      silent_share=scores.silent_share, asr=scores.asr, verifier=scores.verifier,
                      dnsmos=scores.dnsmos, vad=scores.vad, notes=dict(scores.notes), measured_at=scores.measured_at)


def value(point: ScorePoint, column: ScoreColumn) -> float | None:
    found = getattr(point, column.key)
    return None if found is None else float(found)


def _failed_share(point: ScorePoint) -> float:
    return (point.limit_share or 0.0) + (point.silent_share or 0.0)


def _rank(point: ScorePoint) -> tuple[bool, float, float, int]:
    """Larger is better: a measured CER before none, then lower CER, higher similarity, newer step."""
    cer = point.cer if point.cer is not None else float("inf")
    similarity = point.similarity if point.similarity is not None else float("-inf")
    return point.cer is not None, -cer, similarity, point.step or 0


def best_step(points: Sequence[ScorePoint]) -> int | None:
    """The checkpoint to promote by BEST_RULE; where every one failed too often, the best of them all the same
    (the gate judges the failure share on its own). None without a scored checkpoint."""
    scored = [p for p in points if p.step is not None]
    eligible = [p for p in scored if _failed_share(p) <= MAX_FAILED_SHARE] or scored
    return max(eligible, key=_rank).step if eligible else None


def compare(column: ScoreColumn, measured: float | None, base: float | None) -> int | None:
    """1 where `measured` is better than the base's, -1 worse, 0 equal; None where either is unknown."""
    if measured is None or base is None:
        return None
    if column.better == "one":
        measured, base = -abs(measured - 1.0), -abs(base - 1.0)
    elif column.better == "lower":
        measured, base = -measured, -base
    return (measured > base) - (measured < base)


def judge_name(column: ScoreColumn, points: Sequence[ScorePoint]) -> str:
    """Who measured a score, in words: the judge the records name (each once, where they differ); a record from
    before the quality judge and the speech detector were named is read as the packages the scorer uses."""
    if column.judge == "generation":
        return GENERATION_JUDGE
    named = list(dict.fromkeys(getattr(p, column.judge) for p in points if getattr(p, column.judge)))
    if column.judge in ("asr", "verifier"):
        what = "ASR" if column.judge == "asr" else "verifier"
        return f"{what} {', '.join(named)}" if named else f"{what} (not named)"
    return ", ".join(named) or (DNSMOS_JUDGE if column.judge == "dnsmos" else VAD_JUDGE)


def label_of(key: str) -> str:
    """A score's label by its field name (a note names the field); a name no column has stays as it is."""
    return next((c.label for c in COLUMNS if c.key == key), key)


def notes_by_reason(points: Sequence[ScorePoint]) -> dict[tuple[str, str], list[str]]:
    """Why scores were not measured: (score label, reason) -> where ("base", or the steps), each reason once."""
    reasons: dict[tuple[str, str], list[str]] = {}
    for point in points:
        for key, why in point.notes.items():
            reasons.setdefault((label_of(key), why), []).append("base" if point.step is None else str(point.step))
    return reasons
