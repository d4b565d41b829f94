"""Character error rate, written out here (no dependency for forty lines).

Both texts are normalised the same way before they are compared, so the rate
measures what was said rather than how it was written: Unicode NFC (a
decomposed "å" is the same letter as a composed one), lower case,
punctuation and symbols become spaces, runs of spaces collapse. Letters,
å ä ö included, and digits are kept as they are.

The rate over several utterances is total edits over total reference
characters (the usual corpus CER), so a long utterance weighs more than a
short one and one empty transcript cannot be averaged away.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence


def normalize_text(text: str) -> str:
    chars = []
    for ch in unicodedata.normalize("NFC", text).lower():
        category = unicodedata.category(ch)
        chars.append(" " if category[0] in "PSZC" else ch)
    return " ".join("".join(chars).split())


def edit_distance(reference: Sequence[str], hypothesis: Sequence[str]) -> int:
    """Levenshtein distance (unit cost insert, delete, substitute), two rows of the table at a time."""
    if len(reference) < len(hypothesis):
        reference, hypothesis = hypothesis, reference
    previous = list(range(len(hypothesis) + 1))
    for i, ref_ch in enumerate(reference, start=1):
        current = [i]
        for j, hyp_ch in enumerate(hypothesis, start=1):
            current.append(min(
                previous[j] + 1,  # a reference character missing from the hypothesis
                current[j - 1] + 1,  # an extra character in the hypothesis
                previous[j - 1] + (ref_ch != hyp_ch),  # kept or substituted
            ))
        previous = current
    return previous[-1]


def char_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(edits, reference length) after normalising both."""
    ref, hyp = normalize_text(reference), normalize_text(hypothesis)
    return edit_distance(ref, hyp), len(ref)


def corpus_cer(pairs: Sequence[tuple[str, str]]) -> float:
    """Total edits over total normalised reference characters; ValueError when there is no reference text."""
    edits = total = 0
    for reference, hypothesis in pairs:
        e, n = char_errors(reference, hypothesis)
        edits, total = edits + e, total + n
    if total == 0:
        raise ValueError("no reference characters to score against")
    return edits / total
