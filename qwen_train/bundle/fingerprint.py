"""Content addressing for bundles: per-file sha256 and one fingerprint over all.

`verify` names the first thing that differs (changed, missing or extra file),
so an operator knows exactly what was touched.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from qwen_train.bundle.manifest import BUNDLE_JSON, BundleError, read_bundle_info
from qwen_train.digest import file_sha256


def hash_tree(root: Path) -> dict[str, str]:
    """sha256 of every file under root except bundle.json, keyed by relative path."""
    return {
        str(p.relative_to(root)): file_sha256(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != BUNDLE_JSON
    }


def fingerprint_of(files: dict[str, str]) -> str:
    digest = hashlib.sha256()
    for rel in sorted(files):
        digest.update(rel.encode("utf-8") + b"\0" + files[rel].encode("ascii") + b"\n")
    return digest.hexdigest()


def verify_bundle(root: Path) -> str:
    """Return the fingerprint if the bundle is intact; raise BundleError naming what is not."""
    info = read_bundle_info(root)
    actual = hash_tree(root)
    problems = [f"missing file {rel}" for rel in sorted(set(info.files) - set(actual))]
    problems += [f"extra file {rel}" for rel in sorted(set(actual) - set(info.files))]
    problems += [
        f"changed file {rel}" for rel in sorted(set(info.files) & set(actual)) if info.files[rel] != actual[rel]
    ]
    if fingerprint_of(info.files) != info.fingerprint:
        problems.append("bundle.json fingerprint does not match its own file list")
    if problems:
        raise BundleError(
            f"bundle {root} failed verification: " + "; ".join(problems[:10])
            + ("" if len(problems) <= 10 else f"; and {len(problems) - 10} more")
            + ". Rebuild the bundle or restore the original files."
        )
    return info.fingerprint
