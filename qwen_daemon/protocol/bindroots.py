"""Bind roots as the API shows them: each canonical tree's mount proof, and a container probe's result.
"""

from __future__ import annotations

import msgspec


class BindRootStatus(msgspec.Struct, frozen=True):
    path: str
    source: str
    ok: bool
    problems: list[str] = []
    mounted_from: str | None = None


class ProbeResult(msgspec.Struct, frozen=True):
    path: str
    ok: bool
    detail: str


class BindRootsView(msgspec.Struct, frozen=True):
    roots: list[BindRootStatus]


class ProbeView(msgspec.Struct, frozen=True):
    results: list[ProbeResult]
