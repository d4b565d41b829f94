"""Surfaces as the API shows them: a class per named family of runs, and the audit of class changes.

The rules that read the class are governance's (governance/surfaces.py); these are only the records.
"""

from __future__ import annotations

from typing import Literal

import msgspec

SurfaceClass = Literal["provenance", "mechanism", "recovery", "legacy-readonly", "deprecated"]
NEVER_LAUNCHED: dict[str, str] = {
    "provenance": "historical evidence, read-only",
    "legacy-readonly": "readable, never launched",
    "deprecated": "not for new work",
}


DEFAULT_SURFACE = "default"


class Surface(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    name: str
    klass: SurfaceClass = msgspec.field(name="class")
    notes: str = ""
    unblocked_by: str | None = None


class AuditEntry(msgspec.Struct, frozen=True):
    time: float
    surface: str
    old_class: str | None
    new_class: str
    reason: str
    actor: str
    gate: str | None = None



class SurfaceList(msgspec.Struct, frozen=True):
    surfaces: list[Surface]
    path: str


class AuditList(msgspec.Struct, frozen=True):
    entries: list[AuditEntry]
