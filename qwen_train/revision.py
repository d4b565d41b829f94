"""Which code this is: the provenance a checkpoint, an export and a gate verdict each record.

Its own module, torch-free, because the trainer (every checkpoint's meta),
the exporter and the gate all stamp it: none of them should have to import
another of the three to learn the revision.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from qwen_train import __version__


def code_revision() -> str:
    """The git commit of this checkout when there is one, else the package version."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True,
                             check=True, timeout=10)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return f"qwen-hemma {__version__}"
