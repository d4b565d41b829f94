"""Waxholm fixtures as the corpus and its users keep them: Snack-written `.smp` headers, labels with noise markers,
and `.wav` copies staged beside the `.smp.mix` labels. The audio is real espeak-ng speech (prepare_layouts.Clip).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from tests.prepare_layouts import Clip, iso646, smp_bytes


def snack_smp_bytes(samples: np.ndarray, rate: int = 16000, msb: str = "first") -> bytes:
    """An `.smp` as KTH's Snack writes it: CRLF `key=value` lines, a `=` line, `\\0\\4 `, NULs to 1024 bytes,
    then the samples in the byte order `msb` names (first: big-endian)."""
    head = (f"file=samp\r\nsftot={rate}\r\nmsb={msb}\r\nnchans=1\r\npreemph=none\r\nborn=snack\r\n=\r\n"
            ).encode("latin-1") + b"\x00\x04 "
    order = ">" if msb == "first" else "<"
    return head.ljust(1024, b"\x00") + samples.astype(f"{order}i2").tobytes()


def mix_label(stem: str, text: str) -> str:
    """A `.smp.mix` label around `text` (already in ISO 646-SE), with the lines a real one has around TEXT:."""
    spk = stem.split(".")[0]
    return (f"CORRECTED: OK jesper Jesper Hogberg Fri Jun 18 12:20:40 MET 1993\n"
            f"Waxholm dialog. /u/wax/data/scenes/{spk}/{stem}.smp\nTEXT:\n{text}\nJ'A:G\n"
            "FR       4481\t #sm\t>pm #sm\t>w XsmackX\t 0.280 sec\n")


def spoken(clip: Clip, *, before: int = 0, after: int = 0) -> str:
    """The clip's text as a Waxholm label line: ISO 646-SE, its end mark spaced off, `before` and `after` noise
    markers around the words (breath in, a smack, breath out, as real labels put them)."""
    body, end = clip.text[:-1], clip.text[-1]
    markers = ("XsmackX", "XinandX", "XtvekX", "XharklingX")
    head = [markers[i % len(markers)] for i in range(before)]
    tail = ["XutandX"] * after
    return " ".join([*head, iso646(body), *tail, end])


def stem_of(i: int) -> str:
    return f"fp20{i % 3 + 1:02d}.1.{i:02d}"


def write_utterance(root: Path, stem: str, samples: np.ndarray, label: str | None, audio: str = "smp") -> Path:
    """One utterance under root/fpNNNN/: its audio as `audio` (smp, snack-smp, wav or smp.wav) and its label."""
    d = root / stem.split(".")[0]
    d.mkdir(parents=True, exist_ok=True)
    if audio == "smp":
        path = d / f"{stem}.smp"
        path.write_bytes(smp_bytes(samples))
    elif audio == "snack-smp":
        path = d / f"{stem}.smp"
        path.write_bytes(snack_smp_bytes(samples))
    else:
        path = d / f"{stem}.{audio}"
        sf.write(str(path), samples, 16000, format="WAV", subtype="PCM_16")
    if label is not None:
        (d / f"{stem}.smp.mix").write_text(mix_label(stem, label), encoding="latin-1")
    return path


def make_staged(root: Path, clips: list[Clip], audio: str) -> dict[str, str]:
    """clips[0:6] labelled, each as `audio`, with a few noise markers in some labels; {stem: label line}.

    With audio "wav" every other clip is staged as `stem.smp.wav` instead, so both names a converter
    may give are in one corpus.
    """
    labels: dict[str, str] = {}
    for i, clip in enumerate(clips[:6]):
        stem = stem_of(i)
        labels[stem] = spoken(clip, before=i % 2, after=int(i % 3 == 0))
        kind = "smp.wav" if audio == "wav" and i % 2 else audio
        write_utterance(root, stem, clip.samples(), labels[stem], kind)
    return labels
