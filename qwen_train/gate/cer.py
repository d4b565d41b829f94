"""Character and word error rates, counted by jiwer (on rapidfuzz) after the gate's Swedish normalisation.

jiwer is the kept library for CER/WER, so the gate counts edits the way the
Swedish ASR literature (and KBLab's KB-Whisper reports) does, rather than with
a Levenshtein of its own. What the gate adds is the normalisation, applied to
both texts before they are compared, so the rate measures what was said
rather than how it was written: Unicode NFC (a decomposed "å" is the same
letter as a composed one), lower case, punctuation and symbols become spaces,
runs of spaces collapse. Letters, å ä ö included, and digits are kept as
they are. jiwer then sees one space-separated sentence per text: characters
(spaces included) for CER, words for WER.

The rate over several utterances is total edits over total reference
characters (or words), the usual corpus rate, so a long utterance weighs more
than a short one and one empty transcript cannot be averaged away.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

import jiwer


def normalize_text(text: str) -> str:
    chars = []
    for ch in unicodedata.normalize("NFC", text).lower():
        category = unicodedata.category(ch)
        chars.append(" " if category[0] in "PSZC" else ch)
    return " ".join("".join(chars).split())


def _edits(output: jiwer.CharacterOutput | jiwer.WordOutput) -> tuple[int, int]:
    """(substitutions + deletions + insertions, reference length) of one jiwer alignment."""
    edits = output.substitutions + output.deletions + output.insertions
    return edits, output.hits + output.substitutions + output.deletions


def char_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(character edits, reference characters) after normalising both."""
    return _edits(jiwer.process_characters(normalize_text(reference), normalize_text(hypothesis)))


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(word edits, reference words) after normalising both."""
    return _edits(jiwer.process_words(normalize_text(reference), normalize_text(hypothesis)))


def _pooled(counts: Sequence[tuple[int, int]], unit: str) -> float:
    edits = sum(e for e, _ in counts)
    total = sum(n for _, n in counts)
    if total == 0:
        raise ValueError(f"no reference {unit} to score against")
    return edits / total


def corpus_cer(pairs: Sequence[tuple[str, str]]) -> float:
    """Total character edits over total normalised reference characters; ValueError when there are none."""
    return _pooled([char_errors(r, h) for r, h in pairs], "characters")


def corpus_wer(pairs: Sequence[tuple[str, str]]) -> float:
    """Total word edits over total normalised reference words; ValueError when there are none."""
    return _pooled([word_errors(r, h) for r, h in pairs], "words")
