"""Governance: surface classes and request lanes, checked at every launch.

A surface (a named family of runs) has a class that says what may be done
with it (DESIGN.md §1): `provenance` is historical evidence, `legacy-readonly`
is readable only, `deprecated` is not for new work -- none is launched;
`recovery` launches only once a promotion gate has passed and unblocked it;
`mechanism` launches. The classes live in a registry file the daemon owns;
a class change is an explicit command, written to an append-only audit log
with who asked and why. A lane sets data policy: `language-expansion` needs
a multi-speaker bundle with held-out speakers (the other lanes set no data
policy yet). Every refusal names its rule, so an operator can look it up.
Every file read here (the registry, a gate verdict, a bundle's splits) is read
through qwen_train.safe_read: a FIFO or a device at a path a socket user named
is a refusal naming the file, not a request thread waiting forever.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import msgspec

from qwen_daemon.protocol import DEFAULT_SURFACE, NEVER_LAUNCHED, AuditEntry, Surface, SurfaceClass
from qwen_daemon.state_writes import StateWriteError, StateWrites
from qwen_train.atomic import append_durable, atomic_write_bytes, read_appended, undo_append
from qwen_train.bundle.manifest import SPLITS, BundleError, Splits, read_bundle_info, read_manifest
from qwen_train.safe_read import MiB, UnsafeFile, decode_json, read_regular
from qwen_train.spec import RunSpec, SpecError, check_name

REGISTRY_LIMIT = 16 * MiB  # a surface is a line of text; nobody registers a hundred thousand
VERDICT_LIMIT = 16 * MiB
SPLITS_LIMIT = 1024 * MiB  # lists every row id of a bundle: millions for a full RixVox build


class GovernanceRefusal(Exception):
    """A launch or change that a rule forbids; `rule` is the rule's name."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(f"refused by rule {rule}: {message}")
        self.rule = rule


class SurfaceRegistry(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    surfaces: list[Surface]


class _Passed(msgspec.Struct, frozen=True):
    """All governance reads of a promotion gate's verdict file (qwen_train.gate.verdict writes the rest)."""

    passed: bool


def check_surface_name(name: str) -> str:
    try:
        return check_name(name)
    except SpecError:
        raise GovernanceRefusal(
            "surface-name", f"surface name {name!r} is not allowed: use 1-64 letters, digits, '.', '_' or '-'"
        ) from None


def read_gate(path: str) -> _Passed:
    try:
        raw = read_regular(path, VERDICT_LIMIT, what="gate verdict")
    except UnsafeFile as exc:
        raise GovernanceRefusal("recovery-gate", str(exc)) from None
    except OSError as exc:
        raise GovernanceRefusal("recovery-gate", f"gate verdict {path} cannot be read ({exc.strerror})") from None
    try:
        return decode_json(raw, _Passed, f"gate verdict {path} is malformed")
    except ValueError as exc:
        raise GovernanceRefusal("recovery-gate", str(exc)) from None


def check_lane(spec: RunSpec) -> None:
    """The lane's data policy, read from the bundle's own files."""
    if spec.lane != "language-expansion":
        return
    root = Path(spec.bundle)
    try:
        info = read_bundle_info(root)
        rows = read_manifest(root)
        splits = decode_json(read_regular(root / SPLITS, SPLITS_LIMIT, what=SPLITS), Splits, str(root / SPLITS))
    except (BundleError, OSError, ValueError) as exc:  # ValueError: UnsafeFile and malformed JSON among them
        raise GovernanceRefusal(f"lane-{spec.lane}", f"bundle {root} cannot be checked: {exc}") from None
    train_speakers = {row.speaker_id for row in rows if row.split == "train"}
    held_out = set(splits.held_out_speakers)
    held_rows = [row for row in rows if row.eval_kind == "held_out_speaker"]
    if info.speakers < 2 or len(train_speakers) < 2:
        raise GovernanceRefusal("lane-language-expansion", (
            f"language-expansion needs a multi-speaker bundle; {root} has {info.speakers} speaker(s), "
            f"{len(train_speakers)} in training: rebuild it from a many-speaker corpus"))
    if not held_out or not held_rows or held_out & train_speakers:
        raise GovernanceRefusal("lane-language-expansion", (
            f"language-expansion needs held-out speakers (eval speakers never trained on); bundle {root} has "
            f"{len(held_out)} held out, {len(held_out & train_speakers)} of them also in training: rebuild with "
            "`qwen-train bundle build --held-out-speakers N`"))


class Governance:
    """The surfaces registry file and its audit log. Thread-safe; the daemon is the one writer."""

    def __init__(self, registry_path: Path, audit_path: Path, writes: StateWrites | None = None) -> None:
        self.path = registry_path
        self.audit_path = audit_path
        self.writes = writes or StateWrites()
        self._lock = threading.Lock()
        if not registry_path.exists():
            seed = Surface(DEFAULT_SURFACE, "mechanism", "ad hoc runs and demos (created by the daemon)")
            self._write(SurfaceRegistry(surfaces=[seed]))

    def _write(self, registry: SurfaceRegistry) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.path, msgspec.json.format(msgspec.json.encode(registry), indent=2) + b"\n")

    def load(self) -> SurfaceRegistry:
        """Read on every use: an operator's hand edit takes effect, a broken file refuses launches."""
        try:
            raw = read_regular(self.path, REGISTRY_LIMIT, what="surfaces registry")
        except UnsafeFile as exc:
            raise GovernanceRefusal("surfaces-file", f"{exc}: replace it with the registry file") from None
        except OSError as exc:
            raise GovernanceRefusal("surfaces-file", f"{self.path} cannot be read ({exc.strerror})") from None
        try:
            registry = decode_json(raw, SurfaceRegistry, "registry")
        except ValueError as exc:
            raise GovernanceRefusal("surfaces-file", f"{self.path} is malformed ({exc}): fix it by hand") from None
        for surface in registry.surfaces:
            check_surface_name(surface.name)
        return registry

    def get(self, name: str) -> Surface | None:
        return next((s for s in self.load().surfaces if s.name == name), None)

    def check_launch(self, spec: RunSpec) -> Surface:
        """The surface a training launch runs on, if every rule allows it; GovernanceRefusal otherwise."""
        surface = self.check_surface(spec.surface)
        check_lane(spec)
        return surface

    def check_surface(self, name: str) -> Surface:
        """The surface rules alone: what preprocess and diagnose jobs are held to (they set no lane policy)."""
        surface = self.get(name)
        if surface is None:
            raise GovernanceRefusal("surface-registered", (
                f"surface {name!r} is not in {self.path}: register it with "
                f"`qwen-daemon surfaces set-class {name} mechanism --reason WHY`"))
        if surface.klass in NEVER_LAUNCHED:
            raise GovernanceRefusal(f"surface-{surface.klass}", (
                f"surface {surface.name} is {surface.klass} ({NEVER_LAUNCHED[surface.klass]}): nothing is launched "
                "on it; launch on a mechanism surface, or change its class with `qwen-daemon surfaces set-class`"))
        if surface.klass == "recovery" and (
            surface.unblocked_by is None or not read_gate(surface.unblocked_by).passed
        ):
            raise GovernanceRefusal("recovery-blocked", (
                f"surface {surface.name} is recovery and stays blocked until a mechanism candidate passes the "
                f"promotion gate: `qwen-daemon surfaces set-class {surface.name} recovery --gate VERDICT.json`"))
        return surface

    def set_class(self, name: str, klass: SurfaceClass, reason: str, actor: str,
                  gate: str | None = None, notes: str | None = None) -> Surface:
        """The explicit, audited class change (a new name is registered with that class)."""
        check_surface_name(name)
        if not reason.strip():
            raise GovernanceRefusal("audit-reason", "a class change needs a reason: pass --reason")
        if gate is not None:
            if klass != "recovery":
                raise GovernanceRefusal("recovery-gate", "only a recovery surface is unblocked by a gate")
            if not Path(gate).is_absolute():
                raise GovernanceRefusal("recovery-gate", f"gate verdict {gate} must be an absolute path")
            if not read_gate(gate).passed:
                raise GovernanceRefusal("recovery-gate", f"gate verdict {gate} did not pass: it cannot unblock")
        with self._lock:
            registry = self.load()
            old = next((s for s in registry.surfaces if s.name == name), None)
            new = Surface(name, klass, notes if notes is not None else (old.notes if old else ""),
                          gate if klass == "recovery" else None)
            others = [s for s in registry.surfaces if s.name != name]
            entry = AuditEntry(time.time(), name, old.klass if old else None, klass, reason, actor, gate)
            with self.writes.guard("surfaces audit log", self.audit_path):
                start = self._append_audit(entry)
            try:
                with self.writes.guard("surfaces registry", self.path):
                    self._write(SurfaceRegistry(surfaces=sorted([*others, new], key=lambda s: s.name)))
            except StateWriteError:
                undo_append(self.audit_path, start)  # no record of a change that was not made
                raise
        return new

    def _append_audit(self, entry: AuditEntry) -> int:
        """Append and fsync before the registry changes: no change without its record. Returns where it starts."""
        return append_durable(self.audit_path, msgspec.json.encode(entry))

    def audit(self) -> list[AuditEntry]:
        return read_appended(self.audit_path, AuditEntry)
