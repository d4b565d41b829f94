"""The run spec: what an operator asks the trainer to do.

Defined once here (the trainer consumes it) and validated at every boundary:
the CLI, the daemon's API and the checkpoint all decode through `load_spec` /
`decode_spec`, so a malformed spec is one clear error, never a traceback.
This module imports no torch: the daemon and dashboard use it too.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import msgspec

from qwen_train.safe_read import UnsafeFile, check_json_depth, read_regular

Lane = Literal["benchmark", "single-speaker", "language-expansion"]
Runner = Literal["process", "docker"]
Precision = Literal["auto", "fp32", "bf16"]
# In which dtypes weights, gradients and AdamW moments live (qwen_train/train/recipes/recipe.py): "fp32-master" (fp32,
# 16 bytes a trainable parameter), "lean" (bf16 with stochastically rounded bf16 moments, 8 bytes), "auto" (lean
# on a GPU under 40 GiB, fp32 master otherwise and on CPU).
Recipe = Literal["auto", "fp32-master", "lean"]
# What a run trains: every weight but the speaker encoder ("full"), or LoRA adapters through peft ("lora",
# `train.adapter` set); qwen_train/train/recipes/adapter.py says how.
TrainMode = Literal["full", "lora"]
# The talker decoder layer's attention and MLP projections, as qwen-tts names them: the adapter's default targets.
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_MODULE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# Matched with fullmatch: `$` in re.match also matches before a trailing newline, which let "nl\n" through.
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MAX_SPEC_BYTES = 1 << 20
"""A spec file is a few KiB; anything near this bound is not one (a socket user names spec paths)."""


class SpecError(ValueError):
    """A run spec that cannot be used; the message names the field and the fix."""


class Posture(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Checkpoint/eval cadence. 500/100/3 is the default for real runs.

    With listening scores on (`scores.enabled`), retention keeps more than the newest `keep_last`: the
    best-scored checkpoint (qwen_train/scores/best.py says by which rule), and, with `keep_unscored`, every
    checkpoint still waiting for its scores, until the disk cannot hold the next checkpoint (then the oldest
    waiting ones go first: qwen_train/scores/retention.py).
    """

    checkpoint_every: int = 500
    eval_every: int = 100
    keep_last: int = 3
    keep_unscored: bool = True  # only with scores.enabled: a checkpoint waiting for its scores is not deleted


class Adapter(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """LoRA adapters (peft) instead of a full fine-tune: only the adapters (and a new language tag's row) train.

    `target_modules` are projection names inside each talker decoder layer (all seven by default: the
    attention's q/k/v/o and the SwiGLU's gate/up/down); `code_predictor` adapts the same projections of the
    code predictor's layers too. `alpha / rank` scales the adapter's update, as in peft. Dropout is off by
    default (peft's default too): on the adapted inputs it keeps a copy of each one per projection for the
    backward, which on the talker costs more activation memory than the adapters themselves save elsewhere.
    An adapter usually wants a learning rate around ten times a full fine-tune's (1e-4 to 2e-4: set train.lr).
    """

    rank: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: tuple[str, ...] = PROJECTIONS
    code_predictor: bool = False


class TrainConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Optimisation settings. `sub_talker_weight` scales the code-predictor loss."""

    batch_size: int = 2
    # Micro-batches by size instead of row count: the most padded talker positions (rows x the batch's padded
    # length, text and control positions included, as layout.py lays a row out) one micro-batch may hold.
    # None: `batch_size` rows per micro-batch. Set, `batch_size` is not used; it is per process, like batch_size.
    # "auto": sized once, at the run's first launch, to the GPU memory the run may use (the memory plan for the
    # card, less headroom and what the card's other tenants hold), recorded in the run dir and kept on resume
    # (train/device/auto_budget.py); on a CPU it is `batch_size` rows.
    frame_budget: int | Literal["auto"] | None = None
    lr: float = 2e-5
    weight_decay: float = 0.01
    warmup_steps: int = 0
    max_steps: int = 1000
    grad_accum: int = 1
    max_grad_norm: float = 1.0
    sub_talker_weight: float = 0.3
    seed: int = 1234
    precision: Precision = "auto"  # bf16 autocast over fp32 master weights on a bf16 GPU, else fp32
    recipe: Recipe = "auto"
    freeze_text_embedding: bool = False  # no gradient or optimizer state for talker.model.text_embedding (311 M)
    device: str = "auto"
    deterministic: bool = False
    eval_max_rows: int = 64
    # Processes training together, one per GPU (CPU processes over gloo with device "cpu"); >1 starts
    # the run under qwen_train.train.device.ranks, which keeps the trainer's exit codes. batch_size is per process.
    processes: int = 1
    # LoRA adapters instead of the full fine-tune; None (the default): every weight but the speaker encoder trains.
    adapter: Adapter | None = None

    @property
    def mode(self) -> TrainMode:
        return "full" if self.adapter is None else "lora"


class GuardConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """The non-finite guard and its bounded retry policy.

    A step whose loss parts or gradient norm are NaN/Inf (or above the optional
    "absurd" thresholds) is not applied. The run rolls back to the last durable
    checkpoint, optionally skips the offending batch and scales the learning
    rate by `lr_factor` for `lr_window` steps; after `max_retries` it ends
    `failed_non_finite` with a diagnosis.
    """

    enabled: bool = True
    max_loss: float | None = None
    max_grad_norm: float | None = None
    max_retries: int = 3
    skip_batch: bool = True
    lr_factor: float = 0.5
    lr_window: int = 100
    diagnose: bool = True


ScoresDtype = Literal["auto", "fp32", "bf16"]


class ScoresSpec(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """The listening set every durable checkpoint (and the base model once) clones, and how (qwen_train/scores).

    `enabled` says the run expects scores: the daemon scores its checkpoints and retention waits for them
    (posture.keep_unscored) and keeps the best-scored one. `qwen-train score` scores any run, enabled or not.

    Defaults for a 32 GB card shared with a training run: 12 rows (two clones for each of six voices, half of
    them held-out speakers, half held-out utterances of trained speakers) keep one checkpoint's scoring to a
    few minutes of a 1.7B model in bf16 (about 4 GiB with its speech tokenizer, loaded alone; the judges
    after it, one at a time). A clone may run to `length_factor` times its real recording's codec frames
    (plus one second), at most `max_new_tokens` (360 frames at the 12 Hz codec is about 30 s, Whisper's window):
    a clone that reaches its limit never said end-of-speech. Rows whose real recording is too long for that
    cap are left out of the set while shorter ones remain. `seed` picks the rows and seeds each clone's
    sampling (seed + the row's index), so every checkpoint and the base hear the same texts in the same voices.
    """

    enabled: bool = False
    rows: int = 12
    max_new_tokens: int = 360
    length_factor: float = 2.0
    seed: int = 1234
    calibration_pairs: int = 300  # most same-speaker (and as many different-speaker) real pairs for calibration
    dtype: ScoresDtype = "auto"  # bf16 on a GPU that has it, fp32 on a CPU


class RunSpec(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """One training run. Paths are resolved relative to the spec file."""

    name: str
    lane: Lane
    model: str
    bundle: str
    surface: str = "default"
    runner: Runner = "process"
    language: str | None = None
    posture: Posture = Posture()
    train: TrainConfig = TrainConfig()
    guard: GuardConfig = GuardConfig()
    scores: ScoresSpec = ScoresSpec()


def check_name(name: str) -> str:
    """Run names become directory names (and URL segments, unit names, log lines): the whole name must match,
    so no control character (a trailing newline included) can ride along."""
    if not _NAME_RE.fullmatch(name) or ".." in name:
        raise SpecError(
            f"run name {name!r} is not allowed: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit, and no '..'"
        )
    return name


def _positive(value: int, field: str) -> None:
    if value <= 0:
        raise SpecError(f"{field} must be positive, got {value}")


def validate_spec(spec: RunSpec) -> RunSpec:
    """Semantic checks msgspec's types cannot express."""
    check_name(spec.name)
    _positive(spec.posture.checkpoint_every, "posture.checkpoint_every")
    _positive(spec.posture.eval_every, "posture.eval_every")
    _positive(spec.posture.keep_last, "posture.keep_last")
    _positive(spec.train.batch_size, "train.batch_size")
    if isinstance(spec.train.frame_budget, int):
        _positive(spec.train.frame_budget, "train.frame_budget")
    _positive(spec.train.processes, "train.processes")
    _positive(spec.train.max_steps, "train.max_steps")
    _positive(spec.train.grad_accum, "train.grad_accum")
    if not spec.train.lr > 0:
        raise SpecError(f"train.lr must be positive, got {spec.train.lr}")
    if spec.train.recipe == "lean" and spec.train.precision == "fp32":
        raise SpecError("train.recipe 'lean' computes under bf16 autocast, which train.precision 'fp32' forbids: "
                        "set precision to 'auto' or 'bf16', or the recipe to 'fp32-master'")
    if spec.train.adapter is not None:
        validate_adapter(spec.train.adapter)
    validate_scores(spec.scores)
    if spec.guard.max_retries < 0:
        raise SpecError(f"guard.max_retries must be 0 or more, got {spec.guard.max_retries}")
    if not 0 < spec.guard.lr_factor <= 1:
        raise SpecError(f"guard.lr_factor must be in (0, 1], got {spec.guard.lr_factor}")
    return spec


def validate_scores(scores: ScoresSpec) -> None:
    """The listening set's bounds, checked before anything is cloned."""
    _positive(scores.rows, "scores.rows")
    _positive(scores.max_new_tokens, "scores.max_new_tokens")
    _positive(scores.calibration_pairs, "scores.calibration_pairs")
    if not scores.length_factor >= 1.0:
        raise SpecError(f"scores.length_factor must be 1 or more (a clone may take as long as the real "
                        f"recording), got {scores.length_factor}")


def validate_adapter(adapter: Adapter) -> None:
    """The adapter's numbers and names, checked before any model is loaded."""
    _positive(adapter.rank, "train.adapter.rank")
    if not adapter.alpha > 0:
        raise SpecError(f"train.adapter.alpha must be positive, got {adapter.alpha}")
    if not 0 <= adapter.dropout < 1:
        raise SpecError(f"train.adapter.dropout must be in [0, 1), got {adapter.dropout}")
    if not adapter.target_modules:
        raise SpecError(f"train.adapter.target_modules is empty: name projections among {', '.join(PROJECTIONS)}")
    for name in adapter.target_modules:
        if not _MODULE_RE.fullmatch(name):
            raise SpecError(f"train.adapter.target_modules: {name!r} is not a module name (e.g. 'q_proj'); "
                            f"the decoder layer's projections are {', '.join(PROJECTIONS)}")


def mode_description(train: TrainConfig) -> str:
    """What a run trains, in a few words, for status, `qwen-daemon show` and the dashboard."""
    adapter = train.adapter
    if adapter is None:
        frozen = ", text embedding frozen" if train.freeze_text_embedding else ""
        return f"full fine-tune{frozen}"
    where = "talker + code predictor" if adapter.code_predictor else "talker"
    targets = "attention + MLP" if set(adapter.target_modules) == set(PROJECTIONS) else "/".join(adapter.target_modules)
    return f"LoRA rank {adapter.rank}, alpha {adapter.alpha}, dropout {adapter.dropout:g} on {where} {targets}"


def decode_spec(data: bytes | str, source: str = "spec") -> RunSpec:
    """Decode and validate JSON bytes; errors name the source and the field (hostile nesting included)."""
    check_spec_json(data, source)
    try:
        spec = msgspec.json.decode(data, type=RunSpec)
    except msgspec.ValidationError as exc:
        raise SpecError(f"{source}: invalid run spec: {exc}") from None
    except (msgspec.DecodeError, RecursionError, MemoryError) as exc:
        raise SpecError(f"{source}: not valid JSON: {exc}") from None
    return validate_spec(spec)


def check_spec_json(data: bytes | str, source: str) -> None:
    """A SpecError for JSON nested deeper than any spec is: msgspec would recurse until it fails."""
    try:
        check_json_depth(data.encode("utf-8", "replace") if isinstance(data, str) else data, source)
    except ValueError as exc:
        raise SpecError(str(exc)) from None


def read_spec_file(path: Path, what: str) -> bytes:
    """A spec file's bytes, read without blocking: a FIFO, a device or an oversized file is a SpecError."""
    try:
        return read_regular(path, MAX_SPEC_BYTES, what=what)
    except UnsafeFile as exc:
        raise SpecError(str(exc)) from None
    except OSError as exc:
        raise SpecError(f"cannot read {what} {path}: {exc.strerror}") from None


def resolve_paths(spec: RunSpec, base: Path) -> RunSpec:
    """Make model and bundle paths absolute, relative to `base`."""
    return msgspec.structs.replace(
        spec,
        model=str((base / spec.model).resolve()),
        bundle=str((base / spec.bundle).resolve()),
    )


def load_spec(path: Path) -> RunSpec:
    """Read a spec file; relative paths inside it are relative to the file."""
    raw = read_spec_file(path, "run spec")
    return resolve_paths(decode_spec(raw, source=str(path)), path.parent)


def encode_spec(spec: RunSpec) -> bytes:
    return msgspec.json.format(msgspec.json.encode(spec), indent=2)
