"""`qwen-train bundle build CORPUS.jsonl`: the upstream-JSONL case of the prepare pipeline.

Kept as a short path for one corpus in the upstream fine-tuning shape (the
demo corpus is one). It builds a one-source prepare spec and runs the same
pipeline as `qwen-train prepare`: validation, splits, anchors, cached codes,
stats, rejects and the fingerprint all come from `qwen_train.prepare`.
`root` is the corpus root (default: the JSONL's directory), for a JSONL that
names its audio by absolute paths elsewhere.
"""

from __future__ import annotations

from pathlib import Path

from qwen_train.bundle.manifest import BundleError
from qwen_train.prepare.spec import PrepareSpec, SourceSpec, SplitSpec, validate_prepare_spec
from qwen_train.spec import Lane


def corpus_spec(
    corpus_jsonl: Path,
    model_dir: Path,
    out_dir: Path,
    *,
    source: str = "demo",
    seed: int = 0,
    held_out_speakers: int = 1,
    device: str = "auto",
    root: Path | None = None,
) -> PrepareSpec:
    corpus = SourceSpec(kind="upstream_jsonl", path=str(corpus_jsonl.resolve()), role="train", name=source,
                        root=str(root.resolve()) if root is not None else None)
    spec = PrepareSpec(
        name=f"bundle-{source}",
        out=str(out_dir.resolve()),
        model=str(model_dir.resolve()),
        work_dir=str(out_dir.resolve().with_name(f".{out_dir.name}.work")),
        sources=[corpus],
        seed=seed,
        split=SplitSpec(held_out_speakers=held_out_speakers, held_out_utterances=1),
        device=device,
    )
    return validate_prepare_spec(spec)


def build_bundle(
    corpus_jsonl: Path,
    model_dir: Path,
    out_dir: Path,
    *,
    source: str = "demo",
    seed: int = 0,
    held_out_speakers: int = 1,
    device: str = "auto",
    lane: Lane | None = None,
    root: Path | None = None,
) -> Path:
    """Build the whole bundle in one go; a half-built bundle never appears at `out_dir`.

    `lane` is the request lane the bundle is for: language-expansion refuses a split without held-out speakers.
    """
    from qwen_train.prepare.run import prepare

    if out_dir.exists():
        raise BundleError(f"{out_dir} already exists; bundles are frozen, choose a new directory")
    if root is not None and not root.is_dir():
        raise BundleError(f"--root {root} is not a directory: give the directory the corpus's audio lies in")
    spec = corpus_spec(corpus_jsonl, model_dir, out_dir, source=source, seed=seed,
                       held_out_speakers=held_out_speakers, device=device, root=root)
    outcome = prepare(spec, lane=lane)
    if outcome.code != 0:
        raise BundleError(f"bundle {out_dir} not built: {outcome.message}")
    return out_dir
