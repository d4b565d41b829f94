"""What emptied a bundle or a source, said where the user is: each reason, its count, one example, the journal.

When validation leaves nothing, the journal (in the work dir, often a hidden
`.OUT.work/`) holds every row's reason, but sending the user there to learn
that every row was, say, `path_escape` turns one read into a hunt. The
message itself carries the reasons by count, each with one row's id and
detail (what to fix usually shows in a single example), then the journal's
absolute path for the rest. `qwen-train prepare` and `bundle build` print it;
the prepare heartbeat carries the same text, so the daemon's job says it too.

Ids and details come from the corpus (a JSONL's `id`, a file name): they are
escaped and shortened before they reach a terminal.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from qwen_train.prepare.journal import JOURNAL
from qwen_train.prepare.records import Reject
from qwen_train.prepare.spec import PrepareSpec

DETAIL_CHARS = 300  # a decode error can quote a whole line; one example need not


def journal_path(spec: PrepareSpec) -> Path:
    """The journal's absolute path: the message is read from wherever the command ran."""
    return (Path(spec.work_dir or spec.out + ".work") / JOURNAL).absolute()


def printable(text: str, limit: int = DETAIL_CHARS) -> str:
    """Control characters escaped (a corpus could hide terminal escapes in an id or a file name), then cut."""
    safe = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)
    return safe if len(safe) <= limit else safe[: limit - 3] + "..."


def by_reason(rejects: Sequence[Reject]) -> list[tuple[str, list[Reject]]]:
    """Rejects grouped by reason, the commonest first (ties in the order first met)."""
    groups: dict[str, list[Reject]] = defaultdict(list)
    for r in rejects:
        groups[r.reason].append(r)
    return sorted(groups.items(), key=lambda item: -len(item[1]))


def reason_line(reason: str, group: Sequence[Reject]) -> str:
    first = group[0]
    return (f"  {reason} {len(group)}: e.g. row '{printable(first.orig_id, 120)}' of {first.source!r}: "
            f"{printable(first.detail)}")


def rejects_text(rejects: Sequence[Reject], journal: Path, unselected: int = 0) -> str:
    """`rejected N row(s):`, a line per reason with its count and first example, rows left out by a share,
    then the journal's path. Lines, since each example's detail is a sentence of its own."""
    lines = [_header(rejects, unselected)]
    lines += [reason_line(reason, group) for reason, group in by_reason(rejects)]
    if unselected:
        lines.append(f"  {unselected} accepted row(s) left out by the source's share")
    lines.append(f"every row's reason and detail is in the journal {journal}")
    return "\n".join(lines)


def _header(rejects: Sequence[Reject], unselected: int) -> str:
    if rejects:
        return f"rejected {len(rejects)} row(s):"
    return "no row was rejected:" if unselected else "the sources held no rows;"


def no_rows_message(rejects: Sequence[Reject], unselected: int, journal: Path) -> str:
    """The bundle-level refusal: nothing survived, and why."""
    return f"no rows survived validation; {rejects_text(rejects, journal, unselected)}"
