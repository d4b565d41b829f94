"""Clips/s for our validate + resample path against a naive `librosa.load(..., sr=24000)`, same run, same files.

Why: preprocessing RixVox (~5,500 h) is the long part of building a pilot
bundle, so its per-clip cost matters. The baseline only decodes and resamples;
ours also validates (silence, clipping, non-speech ratio, speech rate, text),
writes a content-addressed 24 kHz wav and journals the row. Both see the same
16 kHz espeak-ng clips (the rate of RixVox, FLEURS and Waxholm).

    .venv/bin/python bench/prepare_throughput.py [--clips 240] [--workers 2]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from qwen_train.prepare.journal import Journal  # noqa: E402
from qwen_train.prepare.process import process_row  # noqa: E402
from qwen_train.prepare.records import AudioRef, SourceRow  # noqa: E402
from qwen_train.prepare.spec import Limits, PrepareSpec, SourceSpec  # noqa: E402
from qwen_train.prepare.window import count_rows, run_window  # noqa: E402
from tests.prepare_layouts import make_upstream, speak_clips  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=240)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-prepare-"))
    try:
        base = speak_clips(tmp / "base", per_speaker=4)
        paths: list[tuple[Path, str]] = []
        for i in range(args.clips):
            clip = base[i % len(base)]
            dst = tmp / "clips" / f"c{i:05d}.wav"
            dst.parent.mkdir(exist_ok=True)
            shutil.copyfile(clip.path, dst)
            paths.append((dst, clip.text))
        seconds = sum(__import__("soundfile").info(str(p)).duration for p, _ in paths)

        import librosa

        limits = Limits()
        warm = SourceRow(n=0, orig_id="warm", speaker="s", text=paths[0][1], audio=AudioRef("file", str(paths[0][0])))
        librosa.load(str(paths[0][0]), sr=24000)  # both paths warmed up: imports and lazy init are not timed
        process_row("bench", warm, limits, tmp / "warm")
        t0 = time.perf_counter()
        for p, _ in paths:
            librosa.load(str(p), sr=24000)
        naive = len(paths) / (time.perf_counter() - t0)

        t0 = time.perf_counter()
        rejected = 0
        for i, (p, text) in enumerate(paths):
            row = SourceRow(n=i, orig_id=p.stem, speaker="s", text=text, audio=AudioRef("file", str(p)))
            rejected += process_row("bench", row, limits, tmp / "audio1").reason is not None
        ours = len(paths) / (time.perf_counter() - t0)

        up = make_upstream(tmp / "up", base, repeat=max(1, args.clips // len(base)))
        windows: dict[int, float] = {}
        for workers in sorted({1, args.workers}):
            spec = PrepareSpec(name="bench", out=str(tmp / "out"), model="unused", workers=workers,
                               sources=[SourceSpec(kind="upstream_jsonl", path=str(tmp / "up" / "train.jsonl"))],
                               work_dir=str(tmp / f"work{workers}"))
            journal = Journal(tmp / f"work{workers}")
            total = count_rows(spec)
            t0 = time.perf_counter()
            run_window(spec, journal, total)
            windows[workers] = total / (time.perf_counter() - t0)
            journal.close()

        print(f"{len(paths)} clips, {seconds:.0f} s of 16 kHz audio; {rejected} rejected by validation")
        print(f"naive librosa.load(sr=24000):            {naive:8.1f} clips/s")
        print(f"ours, validate+resample+store, 1 process: {ours:8.1f} clips/s  ratio {ours / naive:.2f}x")
        for workers, rate in windows.items():
            print(f"ours, whole window, {workers} worker(s), journaled: {rate:8.1f} rows/s  ratio {rate / naive:.2f}x  "
                  f"({len(up)} rows incl. corrupt; worker start-up included)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
