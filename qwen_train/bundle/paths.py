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


def resolve_inside(root: Path, named: str | Path) -> Path:
    """The real path of `named` (relative to `root` unless absolute), or PathEscape when it leaves root."""
    base = root.resolve()
    given = Path(named)
    real = (given if given.is_absolute() else base / given).resolve()
    if real == base or base in real.parents:
        return real
    raise PathEscape(_how(given, real, base))


def _how(given: Path, real: Path, base: Path) -> str:
    """Which of the three ways out it took, so the operator knows what to fix."""
    if given.is_absolute():
        lexical = Path(os.path.normpath(given))
        if lexical != base and base not in lexical.parents:
            return f"{given} is an absolute path outside {base}"
    elif ".." in given.parts:
        lexical = Path(os.path.normpath(base / given))
        if lexical != base and base not in lexical.parents:
            return f"{given} climbs out of {base} with '..'"
    return f"{given} resolves through a symlink to {real}, outside {base}"


def lexically_inside(named: str) -> bool:
    """True for a relative path without '..' parts: the cheap check a whole manifest gets on load."""
    path = Path(named)
    return bool(named) and not path.is_absolute() and ".." not in path.parts
