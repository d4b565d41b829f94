"""KBLab/rixvox's archives read in place: rows/s, against extracting them first, and what a resume's seek costs.

Why: the RixVox train split is hundreds of GB of tar.gz; users used to extract it
(doubling the disk) before a tool could read it. The importer streams each
archive once and hands each member to the row its metadata names. Measured on a
corpus in the published layout (metadata parquet + `train/train_{n}.tar.gz` of
16 kHz espeak-ng WAVs), all in the same run:
* the importer's rows/s and MB/s against the baseline of extracting every
  archive to disk and reading the files back (what users did before);
* the share of a full validate+resample window that archive reading takes;
* a resume's seek: the time to the first row of a window that starts in the
  middle of the last archive, with the listings earlier windows left in the
  work dir (earlier archives skipped unopened) and without them (every archive
  decompressed up to the point), each against reading the whole split.

    .venv/bin/python bench/prepare_archives.py [--rows 600] [--archives 4]
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from qwen_train.prepare import rixvox_archives  # noqa: E402
from qwen_train.prepare.journal import Journal  # noqa: E402
from qwen_train.prepare.spec import PrepareSpec, SourceSpec  # noqa: E402
from qwen_train.prepare.window import count_rows, run_window  # noqa: E402
from tests.prepare_layouts import rixvox_record, speak_clips  # noqa: E402


def build(root: Path, rows: int, archives: int) -> int:
    """The published layout with `rows` rows over `archives` archives; returns the bytes of audio."""
    clips = speak_clips(root / "clips", per_speaker=4)
    records, members = [], []
    for obs in range(rows):
        clip = clips[obs % len(clips)]
        rec = rixvox_record(clip, obs, filename=f"GR01KRU1/{obs:06d}_anf5_{obs}_{obs + 3}.wav")
        records.append(rec)
        members.append((str(rec["filename"]), clip.path.read_bytes()))
    data = root / "data"
    (data / "train").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(records), data / "train_metadata.parquet")
    per = -(-rows // archives)
    for k in range(archives):
        with tarfile.open(data / "train" / f"train_{k}.tar.gz", "w:gz") as tar:
            for name, blob in members[k * per : (k + 1) * per]:
                info = tarfile.TarInfo(name)
                info.size = len(blob)
                tar.addfile(info, io.BytesIO(blob))
    return sum(len(b) for _, b in members)


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def extract_then_read(data: Path, dest: Path) -> None:
    for archive in sorted((data / "train").glob("*.tar.gz")):
        with tarfile.open(archive) as tar:
            tar.extractall(dest, filter="data")
    for path in sorted(dest.rglob("*.wav")):
        path.read_bytes()


def first_row(src: SourceSpec, work: Path, start: int) -> None:
    next(iter(rixvox_archives.rows(src, work, start)))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=600)
    ap.add_argument("--archives", type=int, default=4)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-archives-"))
    try:
        audio_bytes = build(tmp, args.rows, args.archives)
        src = SourceSpec(kind="rixvox", path=str(tmp / "data"))
        mb = audio_bytes / 1e6
        cold = tmp / "work-cold"
        list(rixvox_archives.rows(src, tmp / "warm", 0))  # imports and page cache warmed; listings in warm/
        stream = min(timed(lambda: list(rixvox_archives.rows(src, cold, 0))) for _ in range(3))
        extract = min(timed(lambda: extract_then_read(tmp / "data", Path(tempfile.mkdtemp(dir=tmp)))) for _ in range(3))
        start = args.rows - args.rows // args.archives // 2  # the middle of the last archive
        with_listing = min(timed(lambda: first_row(src, tmp / "warm", start)) for _ in range(3))
        fresh = [tmp / f"work-seek{k}" for k in range(3)]
        no_listing = min(timed(lambda w=w: first_row(src, w, start)) for w in fresh)
        spec = PrepareSpec(name="bench", out=str(tmp / "out"), model="unused", sources=[src],
                           work_dir=str(tmp / "work-window"))
        journal = Journal(tmp / "work-window")
        window = timed(lambda: run_window(spec, journal, count_rows(spec)))
        journal.close()
        print(f"## KBLab/rixvox archives read in place (bench/prepare_archives.py)\n\n"
              f"{args.rows} rows of 16 kHz espeak-ng speech ({mb:.1f} MB of WAV) in {args.archives} tar.gz archives "
              f"beside `train_metadata.parquet`; one process, best of 3.\n\n"
              f"| path | seconds | rows/s | MB/s | against the baseline |\n| --- | --- | --- | --- | --- |\n"
              f"| extract every archive to disk, then read the files (baseline) | {extract:.3f} | "
              f"{args.rows / extract:,.0f} | {mb / extract:.0f} | 1.00 |\n"
              f"| importer: stream each archive once, join by `filename` | {stream:.3f} | {args.rows / stream:,.0f} | "
              f"{mb / stream:.0f} | {extract / stream:.2f}x faster, no disk |\n"
              f"| whole validate+resample window (1 worker) | {window:.3f} | {args.rows / window:,.1f} | | "
              f"archive reading is {stream / window:.1%} of it |\n\n"
              f"Resume at row {start} (middle of the last archive): first row after {with_listing * 1000:.0f} ms with "
              f"the earlier archives' listings ({with_listing / stream:.1%} of reading the split), "
              f"{no_listing * 1000:.0f} ms without them ({no_listing / stream:.1%}).")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
