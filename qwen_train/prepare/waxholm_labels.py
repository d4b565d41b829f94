"""Waxholm `.smp.mix` labels: the transcript, decoded, with its noise markers taken out and counted.

The orthographic transcript is the line after `TEXT:` (or the rest of that line), written in 7-bit
Swedish ASCII (ISO 646-SE): `{` ä, `}` å, `|` ö and `[` Ä, `]` Å, `\\` Ö. Punctuation stands apart
(`till vaxholm .`), so its spacing is tidied.

The transcripts mark non-speech sounds with `X...X` tokens in the word stream. The markers the
corpus uses are XsmackX (lip smack), XinandX and XutandX (in- and out-breath), XtvekX
(hesitation), XharklingX (throat clearing), XklickX (click), XskrattX (laughter), XsuckX (sigh)
and XavbrordX (a word broken off). None is said as a word, so none may reach the training text:
a TTS model would learn to say "xsmackx". They are stripped, and their count is kept in the row's
metadata, so a bundle can drop rows that are mostly breath and noise (`mostly_noise`).

A marker is a whole token of X, one or more lowercase letters, X (`X[a-zåäö]+X`), possibly with
trailing punctuation. The transcripts are otherwise lowercase, so a real word never has that
shape: `Xerxes` does not end in X, and in `XXL` nothing lowercase lies between two X's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from qwen_train.prepare.records import Meta

_ISO646_SE = str.maketrans({"{": "ä", "}": "å", "|": "ö", "[": "Ä", "]": "Å", "\\": "Ö"})
# A marker token, and the punctuation that may cling to it (kept: it belongs to the sentence).
_MARKER = re.compile(r"X[a-zåäö]+X([.,?!]*)")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([.,?!])")


@dataclass(frozen=True)
class Label:
    """A transcript ready for training, and how much of the original line was noise markers."""

    text: str
    markers: int
    words: int

    @property
    def noise_ratio(self) -> float:
        """Markers over all tokens that were a marker or a word; 0 for a line with neither."""
        total = self.markers + self.words
        return self.markers / total if total else 0.0

    def meta(self) -> Meta:
        """What travels into the manifest: the count, and the ratio a bundle's ceiling is held against."""
        return {"noise_markers": self.markers, "noise_ratio": round(self.noise_ratio, 3)}


def transcript_line(mix: str) -> str | None:
    """The raw transcript (still ISO 646-SE) after `TEXT:`, or None when the label has no TEXT: line."""
    lines = mix.splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith("TEXT:"):
            inline = line.split("TEXT:", 1)[1].strip()
            return inline or next((x.strip() for x in lines[i + 1 :] if x.strip()), "")
    return None


def tidy(text: str) -> str:
    """Single spaces, none before punctuation: `vaxholm .` reads `vaxholm.` as the other corpora do."""
    return _SPACE_BEFORE_PUNCT.sub(r"\1", " ".join(text.split()))


def strip_markers(decoded: str) -> Label:
    """Drop the marker tokens of a decoded transcript, counting them and the words that remain."""
    kept: list[str] = []
    markers = 0
    for token in decoded.split():
        found = _MARKER.fullmatch(token)
        if found is None:
            kept.append(token)
            continue
        markers += 1
        if found.group(1):
            kept.append(found.group(1))
    words = sum(1 for token in kept if any(c.isalnum() for c in token))
    return Label(tidy(" ".join(kept)), markers, words)


def parse_mix(mix: str) -> Label | None:
    """The label's transcript, decoded and free of noise markers; None when it has no TEXT: line."""
    line = transcript_line(mix)
    return None if line is None else strip_markers(line.translate(_ISO646_SE))


def mix_text(mix: str) -> str | None:
    """The training text of a label (decoded, markers stripped, spacing tidied), or None without TEXT:."""
    label = parse_mix(mix)
    return None if label is None else label.text
