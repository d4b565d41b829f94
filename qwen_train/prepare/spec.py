"""The prepare spec: which sources go into a bundle, in which role, under which limits.

A msgspec Struct like the run spec, so the daemon can decode it at its boundary
and register a `preprocess` job by its `name`. Sources are never one pool: every
source is declared with its kind, its role and its share. Relative paths are
resolved against the spec file's directory, so a spec travels with its data.
No torch here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import msgspec

from qwen_train.spec import SpecError, check_name, check_spec_json, read_spec_file

SourceKind = Literal["rixvox", "fleurs", "waxholm", "upstream_jsonl", "recordings"]
Role = Literal["train", "eval", "benchmark"]

# Defaults from DESIGN §1: RixVox is bulk training material, FLEURS is held-out
# evaluation; Waxholm is a different domain and must be declared per bundle.
DEFAULT_ROLE: dict[str, Role | None] = {
    "rixvox": "train",
    "fleurs": "eval",
    "waxholm": None,
    "upstream_jsonl": "train",
    "recordings": "train",
}

# RixVox v1's `bleu_score` compares a wav2vec2 transcript of the clip with the written protocol aligned to
# it. Protocols are edited (disfluencies, repetitions and false starts removed), so a good alignment scores
# well under 1, while a row under 0.5 disagrees with its audio on most of its n-grams: a TTS model trained
# on it learns to say words the audio does not. 0.5 keeps the bulk and drops the misaligned tail; the
# rejects file counts what it dropped (`low_alignment`), and 0 keeps everything.
DEFAULT_MIN_BLEU = 0.5
# Waxholm: a label whose `X...X` noise markers (XsmackX, XutandX) are more than half its tokens is mostly
# breath and lip noise, not speech to learn text from.
DEFAULT_MAX_NOISE = 0.5
# Recordings transcribed by Whisper: OpenAI's transcriber takes an average token log-probability under -1 as
# a failed decode; exp(-1) is that floor as a confidence (prepare/transcribe.py).
DEFAULT_MIN_ASR_CONFIDENCE = 0.37
SPLIT_KINDS = ("rixvox", "fleurs")  # the corpora whose files carry a split in a folder or file name


class SourceSpec(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """One corpus on disk, in its publisher's layout.

    `name` scopes speaker ids (`<name>:<speaker>`) and defaults to the kind.
    `share` keeps that fraction of the source's accepted rows (chosen by seed).
    `splits` restricts a source with published splits to the files whose folder
    or file name carries the split's word (prepare/splits.py): `train` selects
    `data/train/`, `train-00000-of-00002.parquet` and `train_metadata.parquet`;
    `dev` also selects FLEURS's `validation`.
    `min_bleu_score` (rixvox) drops rows whose published alignment score is
    under the floor (default DEFAULT_MIN_BLEU; 0 keeps all); `max_noise_ratio`
    (waxholm) drops rows whose label is more than that fraction noise markers
    (default DEFAULT_MAX_NOISE; 1 keeps all).
    `root` (upstream_jsonl) is the directory the corpus's audio lies in, default
    the JSONL's own directory: JSONL written by upstream's or the community's
    formatting scripts often names audio elsewhere by absolute path
    (`/srv/storage/...`). A path outside the root is `path_escape`; relative
    paths stay relative to the JSONL's directory.
    `asr` (recordings) is the Whisper model directory (KB-Whisper) that
    transcribes slices with no transcript of the user's beside them;
    `min_asr_confidence` (recordings) drops Whisper transcripts whose
    confidence is under the floor, and those that repeat themselves
    (default DEFAULT_MIN_ASR_CONFIDENCE; 0 keeps every transcript).
    """

    kind: SourceKind
    path: str
    role: Role | None = None
    name: str | None = None
    share: float = 1.0
    splits: list[str] | None = None
    min_bleu_score: float | None = None
    max_noise_ratio: float | None = None
    root: str | None = None
    asr: str | None = None
    min_asr_confidence: float | None = None

    @property
    def label(self) -> str:
        return self.name or self.kind

    @property
    def resolved_role(self) -> Role:
        role = self.role or DEFAULT_ROLE[self.kind]
        if role is None:
            raise SpecError(f"source {self.label!r} ({self.kind}): declare its role (train, eval or benchmark)")
        return role

    @property
    def bleu_floor(self) -> float:
        return DEFAULT_MIN_BLEU if self.min_bleu_score is None else self.min_bleu_score

    @property
    def noise_ceiling(self) -> float:
        return DEFAULT_MAX_NOISE if self.max_noise_ratio is None else self.max_noise_ratio

    @property
    def asr_floor(self) -> float:
        return DEFAULT_MIN_ASR_CONFIDENCE if self.min_asr_confidence is None else self.min_asr_confidence


class Limits(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Validation thresholds. `max_duration_s` is a heuristic for training memory, not a law."""

    min_duration_s: float = 0.5
    max_duration_s: float = 20.0
    min_sample_rate: int = 16000
    silence_dbfs: float = -50.0
    clip_level: float = 0.999
    max_clip_fraction: float = 0.001
    max_non_speech_ratio: float = 0.6
    min_chars_per_s: float = 4.0
    max_chars_per_s: float = 30.0
    rate_outlier_mads: float = 6.0
    min_swedish_letter_ratio: float = 0.9


class SplitSpec(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Per train-role source: hold out whole speakers and some utterances of the others."""

    held_out_speakers: int = 1
    held_out_speaker_fraction: float = 0.0
    held_out_utterances: int = 1


class PrepareSpec(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """One preprocessing job: sources -> a frozen bundle at `out`.

    `work_dir` holds the resumable state (journal, 24 kHz audio, code cache);
    it defaults to `<out>.work`. `max_rows` / `max_seconds` bound one window;
    a bounded run stops cleanly and the next run continues from the cursor.

    Example (`qwen-train prepare pilot.json --max-seconds 3600`):
        {"name": "pilot-sv", "out": "/srv/scratch/bundles/pilot-sv", "model": "/srv/scratch/models/base",
         "sources": [{"kind": "rixvox", "path": "/srv/storage/rixvox/data", "share": 0.05},
                     {"kind": "fleurs", "path": "/srv/storage/fleurs", "splits": ["dev", "test"]},
                     {"kind": "waxholm", "path": "/srv/storage/waxholm", "role": "benchmark"},
                     {"kind": "recordings", "path": "/srv/storage/own-voices",
                      "asr": "/srv/scratch/models/kb-whisper-large"}],
         "split": {"held_out_speakers": 20, "held_out_utterances": 1}, "workers": 8}
    """

    name: str
    out: str
    model: str
    sources: list[SourceSpec]
    work_dir: str | None = None
    seed: int = 0
    limits: Limits = Limits()
    split: SplitSpec = SplitSpec()
    batch_size: int = 8
    device: str = "auto"
    workers: int = 1
    max_rows: int | None = None
    max_seconds: float | None = None


def validate_prepare_spec(spec: PrepareSpec) -> PrepareSpec:
    """Every rule here names the field and the fix."""
    check_name(spec.name)
    if not spec.sources:
        raise SpecError("sources is empty: declare at least one source")
    labels = [s.label for s in spec.sources]
    dupes = sorted({x for x in labels if labels.count(x) > 1})
    if dupes:
        raise SpecError(f"source names {dupes} appear twice: give each source a distinct `name`")
    for s in spec.sources:
        s.resolved_role  # noqa: B018 - raises SpecError when the role is undeclared
        if not 0.0 < s.share <= 1.0:
            raise SpecError(f"source {s.label!r}: share must be in (0, 1], got {s.share}")
        if ":" in s.label or "/" in s.label:
            raise SpecError(f"source name {s.label!r} may not contain ':' or '/'")
        _check_kind_options(s)
    lim = spec.limits
    if not 0 < lim.min_duration_s < lim.max_duration_s:
        raise SpecError("limits: need 0 < min_duration_s < max_duration_s")
    if not 0 < lim.min_chars_per_s < lim.max_chars_per_s:
        raise SpecError("limits: need 0 < min_chars_per_s < max_chars_per_s")
    if spec.batch_size <= 0 or spec.workers <= 0:
        raise SpecError("batch_size and workers must be positive")
    if spec.max_rows is not None and spec.max_rows <= 0:
        raise SpecError(f"max_rows must be positive, got {spec.max_rows}")
    if spec.max_seconds is not None and spec.max_seconds <= 0:
        raise SpecError(f"max_seconds must be positive, got {spec.max_seconds}")
    sp = spec.split
    if sp.held_out_speakers < 0 or sp.held_out_utterances < 0 or not 0 <= sp.held_out_speaker_fraction < 1:
        raise SpecError("split: counts must be >= 0 and held_out_speaker_fraction in [0, 1)")
    return spec


def _check_kind_options(s: SourceSpec) -> None:
    """Options that only some corpus kinds have are refused on the others, naming the kinds they belong to."""
    if s.splits is not None and s.kind not in SPLIT_KINDS:
        raise SpecError(f"source {s.label!r}: {s.kind} has no published splits; remove `splits` (it applies to "
                        f"{' and '.join(SPLIT_KINDS)})")
    if s.root is not None and s.kind != "upstream_jsonl":
        raise SpecError(f"source {s.label!r}: root applies to upstream_jsonl sources only (a {s.kind} source's "
                        "root is its `path`); remove it")
    if s.asr is not None and s.kind != "recordings":
        raise SpecError(f"source {s.label!r}: asr applies to recordings sources only; remove it")
    for field, kind, value in (("min_bleu_score", "rixvox", s.min_bleu_score),
                               ("max_noise_ratio", "waxholm", s.max_noise_ratio),
                               ("min_asr_confidence", "recordings", s.min_asr_confidence)):
        if value is None:
            continue
        if s.kind != kind:
            raise SpecError(f"source {s.label!r}: {field} applies to {kind} sources only; remove it")
        if not 0.0 <= value <= 1.0:
            raise SpecError(f"source {s.label!r}: {field} must be in [0, 1], got {value}")


def resolve_paths(spec: PrepareSpec, base: Path) -> PrepareSpec:
    """Make every path absolute, relative to `base` (the spec file's directory)."""

    def absolute(p: str) -> str:
        path = Path(p).expanduser()
        return str(path if path.is_absolute() else (base / path).resolve())

    sources = [msgspec.structs.replace(s, path=absolute(s.path), root=None if s.root is None else absolute(s.root),
                                       asr=None if s.asr is None else absolute(s.asr))
               for s in spec.sources]
    out = absolute(spec.out)
    work = absolute(spec.work_dir) if spec.work_dir else out.rstrip("/") + ".work"
    return msgspec.structs.replace(spec, sources=sources, out=out, model=absolute(spec.model), work_dir=work)


def decode_prepare_spec(data: bytes | str, source: str = "prepare spec") -> PrepareSpec:
    """Decode and validate; hostile nesting is a SpecError naming the source, like any malformed spec."""
    check_spec_json(data, source)
    try:
        spec = msgspec.json.decode(data, type=PrepareSpec)
    except msgspec.ValidationError as exc:
        raise SpecError(f"{source}: invalid prepare spec: {exc}") from None
    except (msgspec.DecodeError, RecursionError, MemoryError) as exc:
        raise SpecError(f"{source}: not valid JSON: {exc}") from None
    return validate_prepare_spec(spec)


def load_prepare_spec(path: Path) -> PrepareSpec:
    """Read (never blocking: a socket user names the path), validate and resolve a spec file; every failure
    names the file."""
    raw = read_spec_file(path, "prepare spec")
    return resolve_paths(decode_prepare_spec(raw, str(path)), path.resolve().parent)


def encode_prepare_spec(spec: PrepareSpec) -> bytes:
    return msgspec.json.format(msgspec.json.encode(spec), indent=2) + b"\n"
