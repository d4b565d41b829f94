"""Intelligibility: an ASR judge transcribes the clones, scored by character error rate (WER beside it).

The ASR model is given with --asr DIR (asr.py): in real use KBLab's
KB-Whisper (a Whisper fine-tuned on Swedish), or a Swedish wav2vec2 CTC
model. Either decodes greedily with no language model: a language model or a
beam search would repair mumbled words and flatter the TTS model. CER is the
criterion (Swedish compounds make WER swing on one missed word boundary);
WER is reported beside it as a figure. Both come from jiwer (cer.py).

No ASR model means the criterion is not measured, and so fails: the gate
never passes on evidence it did not see.
"""

from __future__ import annotations

from qwen_train.gate.asr import Asr
from qwen_train.gate.cer import char_errors, corpus_cer, corpus_wer
from qwen_train.gate.clones import Clone
from qwen_train.gate.verdict import Criterion, Figure, Judge

NO_ASR = ("not measured: no ASR model given (--asr DIR, a Swedish Whisper such as KBLab's kb-whisper-large, or a "
          "Swedish CTC model)")
HEARD_CHARS = 100  # of the worst transcript as written in the detail (samples.json has it whole)


def transcribe_clones(asr: Asr, clones: list[Clone]) -> None:
    """Usable clones are transcribed together (in batches, where the judge batches); a failed or empty one
    transcribes as nothing (every reference character an error)."""
    usable = [c for c in clones if c.usable]
    texts = asr.transcribe([(c.wave, c.rate) for c in usable])
    for clone in clones:
        clone.transcript = ""
    for clone, text in zip(usable, texts, strict=True):
        clone.transcript = text


def _worst(clones: list[Clone], pairs: list[tuple[str, str]]) -> str:
    rates = [(e / n, c) for c, (e, n) in zip(clones, (char_errors(*p) for p in pairs), strict=True) if n]
    if not rates:
        return ""
    rate, clone = max(rates, key=lambda pair: pair[0])
    heard = repr(clone.transcript or "")  # escaped: a transcript's control characters never reach a terminal
    heard = heard if len(heard) <= HEARD_CHARS else heard[:HEARD_CHARS - 1] + "…"
    return f"; worst {rate:.2f}: {clone.row.text!r} heard as {heard}"


def intelligibility_criterion(clones: list[Clone], maximum: float, judge: Judge | None) -> Criterion:
    if not clones:
        return Criterion(name="intelligibility", passed=False, threshold=maximum,
                         detail="not measured: the bundle's eval split has no held-out-speaker rows to clone")
    pairs = [(c.row.text, c.transcript or "") for c in clones]
    try:
        cer, wer = corpus_cer(pairs), corpus_wer(pairs)
    except ValueError:
        return Criterion(name="intelligibility", passed=False, threshold=maximum,
                         detail="not measured: the held-out texts are empty after normalisation")
    passed = cer <= maximum
    detail = (f"CER {cer:.3f} {'<=' if passed else '>'} {maximum:.3f}, WER {wer:.3f}, over {len(clones)} clones "
              f"(ASR: {f'{judge.kind} {judge.model}' if judge else 'unnamed'}; texts normalised)")
    failed = sum(not c.usable for c in clones)
    if failed:
        detail += f"; {failed} clone(s) empty, silent or failed, transcribed as nothing"
    detail += _worst(clones, pairs)
    return Criterion(name="intelligibility", passed=passed, detail=detail, measured=cer, threshold=maximum,
                     figures=[Figure("wer", wer)])
