"""How well the speaker verifier separates this bundle's real speakers: the footing of every similarity score.

A cosine of 0.7 means nothing by itself: GE2E (resemblyzer) puts different speakers of one language near
0.6 and the same speaker near 0.8, a WavLM x-vector model puts the same speaker near 0.9, and on noisy
parliament audio either may separate worse than on read speech. So before a clone's similarity is read,
the verifier is asked about real recordings of this bundle's held-out rows: pairs of two recordings of one
speaker (same) and of two speakers (different), their two score distributions, the equal error rate (EER:
where wrongly accepting a different speaker is as common as wrongly rejecting the same one) and the score at
that point. The median same-speaker score is the real level a clone's similarity is a share of.

EER limit, 0.15. Published verifiers reach a few percent EER or less on clean real speech (the GE2E paper's
text-independent results are in the single digits; the WavLM speaker-verification fine-tunes report about
1% on VoxCeleb1). A verifier that errs on more than one pair in seven of this bundle's *real* speakers, at
its best threshold, does not work on this audio: the gap fine-tuning opens or closes in similarity (a few
hundredths of cosine) lies inside the overlap of its two distributions, and calling a checkpoint better or
worse by it would be noise. Similarity is then "not measurable" with that reason (give a verifier that
works here, e.g. --verifier with a WavLM x-vector model), never a pass or a fail made up from it. Fewer than
MIN_PAIRS pairs of either kind is not measurable either (no EER to speak of).

Pairs are chosen deterministically (seeded): every same-speaker pair up to the bound, then as many
different-speaker pairs; each recording embedded once. No torch here: embeddings come in as arrays.
"""

from __future__ import annotations

import itertools
import random
import statistics
from collections.abc import Sequence

import numpy as np

from qwen_train.scores.record import Calibration

EER_LIMIT = 0.15
MIN_PAIRS = 10
PER_SPEAKER = 8  # recordings of one speaker embedded at most
SPEAKERS = 24  # speakers embedded at most


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-12))


def pick_recordings(rows: Sequence[tuple[str, str]], seed: int) -> list[tuple[str, str]]:
    """(speaker, recording) pairs to embed: up to PER_SPEAKER of each of up to SPEAKERS speakers, seeded,
    speakers with two or more recordings first (only they give same-speaker pairs)."""
    by_speaker: dict[str, list[str]] = {}
    for speaker, audio in sorted(set(rows)):
        by_speaker.setdefault(speaker, []).append(audio)
    rng = random.Random(seed)
    speakers = sorted(by_speaker, key=lambda s: (len(by_speaker[s]) < 2, s))[:SPEAKERS]
    picked: list[tuple[str, str]] = []
    for speaker in speakers:
        audios = by_speaker[speaker]
        rng.shuffle(audios)
        picked += [(speaker, a) for a in sorted(audios[:PER_SPEAKER])]
    return picked


def pairs(speakers: Sequence[str], most: int, seed: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(same-speaker, different-speaker) index pairs, at most `most` of each, as many different as same
    (or `most` when there are no same pairs, so the distribution is still recorded)."""
    everything = list(itertools.combinations(range(len(speakers)), 2))
    same = [(i, j) for i, j in everything if speakers[i] == speakers[j]]
    different = [(i, j) for i, j in everything if speakers[i] != speakers[j]]
    rng = random.Random(seed)
    rng.shuffle(same)
    rng.shuffle(different)
    same = sorted(same[:most])
    return same, sorted(different[:len(same) or most])


def equal_error_rate(same: Sequence[float], different: Sequence[float]) -> tuple[float, float]:
    """(EER, threshold): over every observed score as a threshold (accept at or above it), the point where
    the false-accept and false-reject rates are closest, their mean there. A verifier that gives every pair
    the same score has an EER of 0.5."""
    same_arr, diff_arr = np.asarray(same, dtype=np.float64), np.asarray(different, dtype=np.float64)
    observed = {*same_arr.tolist(), *diff_arr.tolist()}
    best = (2.0, 0.5, 0.0)
    for threshold in sorted(observed | {max(observed, default=0.0) + 1.0}):  # the last one accepts nothing
        false_accept = float(np.mean(diff_arr >= threshold))
        false_reject = float(np.mean(same_arr < threshold))
        gap = abs(false_accept - false_reject)
        if gap < best[0]:
            best = (gap, (false_accept + false_reject) / 2, threshold)
    return best[1], best[2]


def calibrate(verifier: str, speakers: Sequence[str], embeddings: Sequence[np.ndarray], most: int,
              seed: int) -> Calibration:
    """The Calibration record of these real recordings' embeddings (one speaker label each)."""
    same_idx, diff_idx = pairs(speakers, most, seed)
    same = [round(cosine(embeddings[i], embeddings[j]), 6) for i, j in same_idx]
    different = [round(cosine(embeddings[i], embeddings[j]), 6) for i, j in diff_idx]
    if len(same) < MIN_PAIRS or len(different) < MIN_PAIRS:
        why = (f"too few real pairs to calibrate the verifier: {len(same)} same-speaker and {len(different)} "
               f"different-speaker, at least {MIN_PAIRS} of each needed (held-out speakers with two or more "
               "recordings, and two or more speakers)")
        return Calibration(verifier=verifier, same_pairs=len(same), different_pairs=len(different),
                           same_scores=same, different_scores=different, eer=None, threshold=None,
                           same_median=statistics.median(same) if same else None, measurable=False, reason=why)
    eer, threshold = equal_error_rate(same, different)
    measurable = eer <= EER_LIMIT
    reason = "" if measurable else (
        f"the verifier separates this bundle's real speakers with an EER of {eer:.1%}, above the {EER_LIMIT:.0%} "
        f"limit (same-speaker median {statistics.median(same):.3f}, different-speaker median "
        f"{statistics.median(different):.3f}): its similarity cannot tell a better clone from a worse one here; "
        "give a verifier that works on this audio (--verifier)")
    return Calibration(verifier=verifier, same_pairs=len(same), different_pairs=len(different), same_scores=same,
                       different_scores=different, eer=round(eer, 6), threshold=round(threshold, 6),
                       same_median=round(statistics.median(same), 6), measurable=measurable, reason=reason)
