"""Which request lane a piece of work belongs to, from the operator's own words.

The lane decides policy (DESIGN.md §1), so the mapping is a small, explicit
rule table rather than a guess: the first rule whose phrase occurs wins and
is reported with the answer. "General Swedish support" always means
`language-expansion`: the base model must stay a voice-cloning base.
"""

from __future__ import annotations

import re

import msgspec

from qwen_train.spec import Lane


class LaneUnclear(ValueError):
    """No rule matched; the message says what to add."""


class Classification(msgspec.Struct, frozen=True):
    lane: Lane
    rule: str


# (lane, rule name, pattern). Order matters: the first match wins.
RULES: list[tuple[Lane, str, str]] = [
    ("language-expansion", "general language support", r"\bgeneral\b.*\b(support|swedish|language)\b"),
    ("language-expansion", "many speakers or voices",
     r"\b(many|multiple|several|all)\s+(speakers|voices)\b|multi-?speaker"),
    ("benchmark", "evaluation without training",
     r"\b(benchmark|evaluate|evaluation|measure|compare|baseline|score|wer|cer|mos)\b"),
    ("single-speaker", "one voice",
     r"\b(one|single|a|my|her|his|their)\s+(speaker|voice)\b|\bsingle-speaker\b|\bvoice of\b"),
    ("language-expansion", "language support",
     r"\b(swedish|svenska|language|dialects?|accents?)\b.*\b(support|speak|fluent|expansion|training|model)\b"
     r"|\bspeak(s|ing)?\s+swedish\b"),
]


def classify(text: str) -> Classification:
    """The lane for a request, with the rule that decided it; LaneUnclear if none applies."""
    lowered = " ".join(text.lower().split())
    if not lowered:
        raise LaneUnclear("the request is empty: describe the work, e.g. \"general Swedish support\"")
    for lane, rule, pattern in RULES:
        if re.search(pattern, lowered):
            return Classification(lane=lane, rule=rule)
    raise LaneUnclear(
        f"cannot tell the lane of {text!r}: say whether it evaluates (benchmark), adapts to one voice "
        "(single-speaker) or teaches the language to many voices (language-expansion)"
    )
