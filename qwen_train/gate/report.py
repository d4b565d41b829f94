"""The verdict as text for a terminal or a job log: the criteria table, the judges, the per-speaker rows.

The operator reads this where the gate ran (stdout of `qwen-train gate`, the
gate job's log), so it says everything the verdict file says that decides
or explains the answer: each criterion with its measured value, threshold
and sentence, which models judged, and each held-out speaker's numbers.
No torch here.
"""

from __future__ import annotations

from qwen_train.gate.verdict import GateVerdict, SpeakerRow

SPEAKER_COLUMNS = ("speaker", "clones", "unusable", "verifier", "base enc", "CER", "WER")


def cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _criteria(verdict: GateVerdict) -> list[str]:
    lines = [f"{'criterion':<20} {'result':<6} {'measured':>10} {'threshold':>10}  detail"]
    for c in verdict.criteria:
        lines.append(f"{c.name:<20} {'pass' if c.passed else 'FAIL':<6} {cell(c.measured):>10} "
                     f"{cell(c.threshold):>10}  {c.detail}")
    return lines


def judges_lines(verdict: GateVerdict) -> list[str]:
    if not verdict.judges:
        return ["judges: none recorded"]
    return ["judges:", *(f"  {j.role:<17} {j.kind:<12} {j.model}" + (f"  ({j.detail})" if j.detail else "")
                         for j in verdict.judges)]


def speaker_cells(row: SpeakerRow) -> tuple[str, ...]:
    return (row.speaker, str(row.clones), str(row.unusable), cell(row.similarity), cell(row.base_similarity),
            cell(row.cer), cell(row.wer))


def speaker_lines(verdict: GateVerdict) -> list[str]:
    if not verdict.speakers:
        return []
    rows = [SPEAKER_COLUMNS, *(speaker_cells(r) for r in verdict.speakers)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(SPEAKER_COLUMNS))]
    return ["per held-out speaker:", *("  " + _line(r, widths) for r in rows)]


def _line(values: tuple[str, ...], widths: list[int]) -> str:
    """The first column left-aligned, the numbers right-aligned."""
    return "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths,
                                                                                      strict=True)))


def chosen_lines(verdict: GateVerdict) -> list[str]:
    """Which checkpoint was judged and why, and the listening scores the criteria read."""
    lines = [f"judged {verdict.checkpoint}: {verdict.chosen_by}"] if verdict.chosen_by else []
    if verdict.scores:
        lines.append(f"listening scores: {verdict.scores}" + (f" against the base's {verdict.base_scores}"
                                                              if verdict.base_scores else ""))
    return lines


def render(verdict: GateVerdict) -> str:
    """The whole verdict as text, criteria first."""
    head = "PASSED" if verdict.passed else "FAILED"
    lines = [f"gate {head}: run {verdict.run}, checkpoint step {verdict.checkpoint_step}, model {verdict.model}",
             *chosen_lines(verdict), *_criteria(verdict), *judges_lines(verdict), *speaker_lines(verdict)]
    return "\n".join(lines)
