"""Resume start-up (process start to the first resumed step) at an early vs a late cursor.

The cursor locates a batch in O(1): resuming near the end of a huge epoch must
cost what resuming at its start costs. This makes a large synthetic bundle
(the demo's train rows repeated to --rows rows, re-fingerprinted), trains one
step to get a durable checkpoint, then resumes copies of that run whose saved
cursor sits at batch 1 and at the epoch's last batch, timing each resume from
process start until status.json reports the next step. Prints the medians and
the late/early ratio (about 1 when the seek is O(1)).

    .venv/bin/python bench/resume_startup.py [DEMO_DIR] [--rows 200000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgspec

from qwen_train.bundle.fingerprint import bundle_fingerprint, codes_extraction_of, hash_tree
from qwen_train.bundle.manifest import (
    BUNDLE_JSON,
    MANIFEST,
    read_bundle_info,
    read_manifest,
    write_json,
    write_jsonl,
)
from qwen_train.demo import build_demo
from qwen_train.spec import Posture, RunSpec, TrainConfig, encode_spec
from qwen_train.status import StatusError, read_status
from qwen_train.train.checkpointing.checkpoint import META_FILE, CheckpointMeta, list_checkpoints


def large_bundle(demo: Path, out: Path, rows: int) -> Path:
    shutil.copytree(demo / "bundle", out)
    for p in [out, *out.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    manifest = read_manifest(out)
    train = [r for r in manifest if r.split == "train"]
    grown = [msgspec.structs.replace(train[i % len(train)], id=f"{train[i % len(train)].id}#{i}") for i in range(rows)]
    write_jsonl(out / MANIFEST, grown + [r for r in manifest if r.split != "train"])
    (out / BUNDLE_JSON).unlink()
    files = hash_tree(out)
    info = read_bundle_info(demo / "bundle")
    info = msgspec.structs.replace(info, files=files, rows=len(grown),
                                   fingerprint=bundle_fingerprint(files, codes_extraction_of(info, demo / "bundle")))
    write_json(out / BUNDLE_JSON, info)
    return out


def run(spec: Path, run_dir: Path, *extra: str) -> subprocess.CompletedProcess[bytes]:
    cmd = [sys.executable, "-m", "qwen_train", "run", str(spec), "--run-dir", str(run_dir), *extra]
    return subprocess.run(cmd, capture_output=True, timeout=900, check=True)


def timed_resume(spec: Path, base_run: Path, work: Path, position: int) -> float:
    run_dir = work / f"resume-{position}-{time.monotonic_ns()}"
    shutil.copytree(base_run, run_dir)
    ckpt = list_checkpoints(run_dir)[-1]
    meta = msgspec.json.decode((ckpt / META_FILE).read_bytes(), type=CheckpointMeta)
    meta = msgspec.structs.replace(meta, cursor=msgspec.structs.replace(meta.cursor, position=position))
    (ckpt / META_FILE).write_bytes(msgspec.json.encode(meta))
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "qwen_train", "run", str(spec), "--run-dir", str(run_dir), "--resume"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while proc.poll() is None:
        try:
            if read_status(run_dir / "status.json").step >= 2:
                break
        except StatusError:
            pass
        time.sleep(0.01)
    elapsed = time.perf_counter() - start
    proc.wait(timeout=600)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("demo", nargs="?", type=Path)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="qh-resume-bench-"))
    demo = args.demo or work / "demo"
    build_demo(demo)
    bundle = large_bundle(demo, work / "bundle", args.rows)
    spec = RunSpec(name="resume-bench", lane="benchmark", model=str(demo / "model"), bundle=str(bundle),
                   posture=Posture(checkpoint_every=1, eval_every=10**9),
                   train=TrainConfig(batch_size=2, max_steps=2, device="cpu"))
    spec_path = work / "spec.json"
    spec_path.write_bytes(encode_spec(msgspec.structs.replace(spec, train=msgspec.structs.replace(spec.train,
                                                                                                  max_steps=1))))
    run(spec_path, work / "base")
    spec_path.write_bytes(encode_spec(spec))
    last = args.rows // 2 - 1
    early = statistics.median(timed_resume(spec_path, work / "base", work, 1) for _ in range(args.repeat))
    late = statistics.median(timed_resume(spec_path, work / "base", work, last) for _ in range(args.repeat))
    print(f"rows={args.rows:,}  batches/epoch={args.rows // 2:,}")
    print(f"process start -> first resumed step: batch 1 {early:.2f} s, batch {last:,} {late:.2f} s, "
          f"ratio late/early {late / early:.2f}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
