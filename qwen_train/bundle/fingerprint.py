"""Content addressing for bundles: per-file sha256 and one fingerprint over all.

`verify` names the first thing that differs (changed, missing or extra file),
so an operator knows exactly what was touched.

A bundle's codes are only as content-addressed as the extraction that made
them, so the fingerprint covers its version too: bundle.json names it under
`provenance.codes_extraction` and the fingerprint hashes a line for it ahead of
the files. Bundles from before the version existed (version 1, codes batched)
have neither and keep their fingerprint form: they verify as they were built,
and a bundle.json edited to claim another version no longer matches its own
fingerprint.
"""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

from qwen_train.bundle.manifest import BUNDLE_JSON, BundleError, BundleInfo, read_bundle_info
from qwen_train.digest import file_sha256
from qwen_train.safe_read import file_kind

CODES_EXTRACTION = "codes_extraction"
LEGACY_CODES_EXTRACTION = 1


def hash_tree(root: Path) -> dict[str, str]:
    """sha256 of every file under root except bundle.json, keyed by relative path.

    Only regular files and directories may be in a bundle: a symlink would let a bundle that verifies
    feed the trainer any file on the host, and a FIFO would hang the hash. Both are refused by name.
    """
    files = {}
    for p in sorted(root.rglob("*")):
        mode = p.lstat().st_mode
        if stat.S_ISDIR(mode):
            continue
        if not stat.S_ISREG(mode):
            kind = "a symlink" if stat.S_ISLNK(mode) else file_kind(mode)
            raise BundleError(f"{p} is {kind}: a bundle holds regular files only; rebuild it or copy the real file")
        if p.name != BUNDLE_JSON:
            files[str(p.relative_to(root))] = file_sha256(p)
    return files


def fingerprint_of(files: dict[str, str], header: bytes = b"") -> str:
    """sha256 over `header` and one line per (path, sha256), in path order."""
    digest = hashlib.sha256(header)
    for rel in sorted(files):
        digest.update(rel.encode("utf-8") + b"\0" + files[rel].encode("ascii") + b"\n")
    return digest.hexdigest()


def bundle_fingerprint(files: dict[str, str], codes_extraction: int) -> str:
    """The fingerprint a bundle of these files with codes of this extraction version records."""
    if codes_extraction == LEGACY_CODES_EXTRACTION:
        return fingerprint_of(files)
    return fingerprint_of(files, f"{CODES_EXTRACTION}\0{codes_extraction}\n".encode("ascii"))


def codes_extraction_of(info: BundleInfo, root: Path) -> int:
    """The extraction version bundle.json declares; none declared is version 1 (built before it was recorded)."""
    version = info.provenance.get(CODES_EXTRACTION, LEGACY_CODES_EXTRACTION)
    if type(version) is not int or version < LEGACY_CODES_EXTRACTION:
        raise BundleError(f"{root / BUNDLE_JSON}: provenance.{CODES_EXTRACTION} is {version!r}, not a version "
                          "number; the file was edited or is damaged: rebuild the bundle or restore it")
    return version


def verify_bundle(root: Path) -> str:
    """Return the fingerprint if the bundle is intact; raise BundleError naming what is not."""
    info = read_bundle_info(root)
    actual = hash_tree(root)
    problems = [f"missing file {rel}" for rel in sorted(set(info.files) - set(actual))]
    problems += [f"extra file {rel}" for rel in sorted(set(actual) - set(info.files))]
    problems += [
        f"changed file {rel}" for rel in sorted(set(info.files) & set(actual)) if info.files[rel] != actual[rel]
    ]
    if bundle_fingerprint(info.files, codes_extraction_of(info, root)) != info.fingerprint:
        problems.append("bundle.json fingerprint does not match its own file list and codes extraction version")
    if problems:
        raise BundleError(
            f"bundle {root} failed verification: " + "; ".join(problems[:10])
            + ("" if len(problems) <= 10 else f"; and {len(problems) - 10} more")
            + ". Rebuild the bundle or restore the original files."
        )
    return info.fingerprint
