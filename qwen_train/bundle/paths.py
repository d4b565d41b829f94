"""Paths named inside a file that another party wrote must stay under the root that file declares.

A corpus manifest names its audio relative to its own directory and a bundle's manifest names
codes, audio and anchors relative to the bundle. Whoever wrote either can write `../`, an absolute
path, or a symlink (to a file or to a whole directory) that leads elsewhere on the host, and the
reader would copy that file into a bundle or feed it to the trainer without a word. So a named path
is resolved, symlinks and all, and used only when its real path lies inside the real root; the
real path is what the caller then opens, so what was checked is what is read.
"""

from __future__ import annotations

import os
from pathlib import Path


class PathEscape(ValueError):
    """A named path whose real location is outside its root; the message says how it got out."""


def resolve_inside(root: Path, named: str | Path, relative_to: Path | None = None) -> Path:
    """The real path of `named`, or PathEscape when it leaves root.

    A relative `named` is taken from `relative_to` (default: root itself): a corpus JSONL may declare a
    root above its own directory (its absolute paths point there) while its relative paths stay relative
    to the JSONL, as the file's author wrote them.
    """
    top = root.resolve()
    start = (relative_to or root).resolve()
    given = Path(named)
    real = (given if given.is_absolute() else start / given).resolve()
    if _within(real, top):
        return real
    raise PathEscape(_how(given, real, top, start))


def _within(path: Path, top: Path) -> bool:
    return path == top or top in path.parents


def _how(given: Path, real: Path, top: Path, start: Path) -> str:
    """Which way out it took, so the operator knows what to fix."""
    if given.is_absolute():
        if not _within(Path(os.path.normpath(given)), top):
            return f"{given} is an absolute path outside {top}"
    elif not _within(start, top):
        return f"{given} is relative to {start}, which is outside {top}"
    elif ".." in given.parts and not _within(Path(os.path.normpath(start / given)), top):
        return f"{given} climbs out of {top} with '..'"
    return f"{given} resolves through a symlink to {real}, outside {top}"


def lexically_inside(named: str) -> bool:
    """True for a relative path without '..' parts: the cheap check a whole manifest gets on load."""
    path = Path(named)
    return bool(named) and not path.is_absolute() and ".." not in path.parts
