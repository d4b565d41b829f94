"""examples/colab_quickstart.ipynb is the generation of its `# %%` script, and it runs top to bottom on this CPU in a
real kernel (nbclient, ipykernel): it says which torch it found, trains the demo, stops it, resumes it exactly to
the end, and exports it. Off Colab it installs nothing; the demo's parts are copied from the session's demo so
the notebook's demo cell reuses them (as it reuses a Drive folder after a disconnect) and the test stays short.
"""

from __future__ import annotations

import json
import os
import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from qwen_train import torch_stack
from tests.conftest import REPO
from tests.test_torch_setup import FAKE_PIP

NOTEBOOK = REPO / "examples" / "colab_quickstart.ipynb"
STEPS = 9


def test_the_committed_notebook_is_the_scripts_generation() -> None:
    done = subprocess.run([sys.executable, "scripts/colab_notebook.py", "--check"], cwd=REPO, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr


def test_the_generator_makes_markdown_and_code_cells_in_order() -> None:
    generator = runpy.run_path(str(REPO / "scripts" / "colab_notebook.py"))
    source = "# %% [markdown]\n# # Title\n#\n# text\n\n# %%\nx = 1\n\n\n# %%\n\n# %%\nprint(x)\n"
    assert generator["split_cells"](source) == [("markdown", "# Title\n\ntext"), ("code", "x = 1"),
                                                ("code", "print(x)")]
    nb = nbformat.reads(generator["render"](source), as_version=4)
    assert [c.id for c in nb.cells] == ["cell-1", "cell-2", "cell-3"] and nb.metadata.accelerator == "GPU"
    assert generator["render"](source) == generator["render"](source)  # no random ids: regeneration is stable


def test_the_readme_and_the_notebook_open_and_clone_one_repository() -> None:
    """The "Open in Colab" links point at the committed notebook of the repository the notebook clones."""
    colab = re.compile(r"https://colab\.research\.google\.com/github/([^/\s]+/[^/\s]+)/blob/main/(\S+?\.ipynb)")
    links = colab.findall((REPO / "README.md").read_text()) + colab.findall(NOTEBOOK.read_text())
    script = (REPO / "examples" / "colab_quickstart.py").read_text()
    clone = re.search(r'"https://github\.com/([^/"]+/[^/"]+?)\.git"', script)
    assert clone is not None and len(links) >= 2
    assert set(links) == {(clone.group(1), str(NOTEBOOK.relative_to(REPO)))}


@pytest.mark.parametrize("colab_torch", [None, "2.9.0+cu126"])
def test_on_colab_an_in_range_torch_is_kept_and_the_rest_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   colab_torch: str | None) -> None:
    """The notebook's first cells as on Colab, with apt-get and pip as recording stand-ins (pip through PYTHONPATH,
    which python -m pip finds first). Colab's torch is this venv's (in range), or an older one's metadata."""
    stubs = tmp_path / "stubs"
    (stubs / "pip").mkdir(parents=True)
    (stubs / "pip" / "__init__.py").write_text("")  # a regular package: a namespace one loses to the real pip
    (stubs / "pip" / "__main__.py").write_text(FAKE_PIP)
    for name in ("torch", "torchaudio") if colab_torch else ():
        info = stubs / f"{name}-{colab_torch}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {colab_torch}\n")
    apt = tmp_path / "bin" / "apt-get"
    apt.parent.mkdir()
    apt.write_text(f"#!/bin/sh\necho \"apt-get $*\" >> {tmp_path}/apt-calls.txt\n")
    apt.chmod(0o755)
    monkeypatch.setenv("PATH", f"{apt.parent}:{os.environ['PATH']}")
    monkeypatch.setenv("PYTHONPATH", str(stubs))
    monkeypatch.setenv("COLAB_RELEASE_TAG", "test")
    monkeypatch.setenv("QWEN_HEMMA_REPO", str(REPO))  # Colab's clone, already there
    # Never the real pip: it would install into this venv.
    probe = subprocess.run([sys.executable, "-m", "pip", "probe"], capture_output=True, text=True)
    assert probe.returncode == 0 and (stubs / "pip-calls.txt").read_text() == "probe\n", probe.stdout + probe.stderr
    (stubs / "pip-calls.txt").unlink()
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells = nb.cells[:3]  # the intro, the project, the training stack
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    text = "\n".join(cell_text(cell) for cell in nb.cells)
    assert (tmp_path / "apt-calls.txt").read_text() == "apt-get -qq install -y espeak-ng sox\n"
    calls = (stubs / "pip-calls.txt").read_text().splitlines()
    rest = ["install -q --no-deps qwen-tts==0.1.1 resemblyzer==0.1.4", f"install -q -e {REPO}[train]"]
    if colab_torch is None:
        assert f"found: {torch_stack.installed_verdict().text()}\n" in text and calls == rest
    else:
        assert f"found: torch stack: torch is {colab_torch}, outside the supported range" in text
        assert calls == ["install -q torch>=2.10,<2.12 torchaudio>=2.10,<2.12 --index-url "
                         "https://download.pytorch.org/whl/cu126", *rest]


def cell_text(cell: nbformat.NotebookNode) -> str:
    return "".join(out.get("text", "") for out in cell.get("outputs", []) if out.output_type == "stream")


@pytest.fixture
def executed(demo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], Path]:
    """The notebook run from examples/ (as Jupyter opens it there) with QWEN_WORK under tmp_path."""
    work = tmp_path / "work"
    for part in ("corpus", "model", "bundle", "asr"):
        shutil.copytree(demo_root / part, work / part, symlinks=True)
    monkeypatch.delenv("COLAB_RELEASE_TAG", raising=False)
    monkeypatch.delenv("QWEN_HEMMA_REPO", raising=False)
    monkeypatch.setenv("QWEN_WORK", str(work))
    monkeypatch.setenv("QWEN_DEMO_STEPS", str(STEPS))
    # The first session is held after step STEPS // 3 until the notebook's SIGTERM lands: without it a quiet
    # machine finished all the steps before the notebook's poll saw the third.
    monkeypatch.setenv("QWEN_TEST_PAUSE", f"step-end@{STEPS // 3}:120")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    return [cell_text(cell) for cell in nb.cells], work / "runs" / "demo-sv"


def test_the_notebook_trains_stops_resumes_and_exports_on_cpu(executed: tuple[list[str], Path]) -> None:
    outputs, run = executed
    text = "\n".join(outputs)
    assert f"repository: {REPO}\n" in text
    assert f"found: {torch_stack.installed_verdict().text()}\n" in text  # which torch it found, kept
    first = next(line for line in text.splitlines() if line.startswith("first session: "))
    assert first == f"first session: exit 5, stopped at step {STEPS // 3 + 1}", first  # the step after the signal
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "completed" and status["step"] == STEPS and status["cursor_check"], status
    steps = [json.loads(line)["step"] for line in (run / "losses.jsonl").read_text().splitlines() if line]
    assert steps == list(range(1, STEPS + 1))  # resumed where it stopped: no step twice, none missing
    out = run / "export" / "latest"
    config = json.loads((out / "config.json").read_text())
    assert config["tts_model_type"] == "base" and (out / "speech_tokenizer").is_dir()
    assert f"exported: {out} " in text


def test_the_step_end_hold_is_one_steps_and_ends_when_the_stop_arrives(monkeypatch: pytest.MonkeyPatch) -> None:
    from qwen_train.train.guard.faults import pause

    monkeypatch.setenv("QWEN_TEST_PAUSE", f"step-end@{STEPS // 3}:60")
    asked: list[int] = []

    def stop_requested() -> bool:
        asked.append(1)
        return len(asked) >= 3

    pause("step-end", STEPS // 3 + 1, until=stop_requested)
    assert asked == []  # another step is not held
    pause("step-end", STEPS // 3, until=stop_requested)
    assert len(asked) == 3  # held while no stop was asked for, released on the first that was
