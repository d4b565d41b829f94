"""Generate examples/colab_quickstart.ipynb from examples/colab_quickstart.py, its `# %%` cells one by one.

Why a generator: Colab opens notebooks (.ipynb) from a repository, not `# %%` scripts, while a script is what
can be read, diffed, linted and run with plain `python`. The script stays the source; the notebook is written
from it byte for byte the same every time (fixed cell ids, no outputs), so a test can hold the committed one
equal to a fresh generation (tests/test_colab_notebook.py).

    python scripts/colab_notebook.py            write the notebook
    python scripts/colab_notebook.py --check    exit 1 when the committed notebook is not the script's
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "examples" / "colab_quickstart.py"
NOTEBOOK = REPO / "examples" / "colab_quickstart.ipynb"
# Colab reads `accelerator` to offer a GPU runtime; the kernel is the runtime's own Python 3.
METADATA = {
    "accelerator": "GPU",
    "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
    "language_info": {"name": "python"},
}


def split_cells(source: str) -> list[tuple[str, str]]:
    """(kind, text) per `# %%` cell; `# %% [markdown]` cells lose their comment marks."""
    cells: list[tuple[str, list[str]]] = []
    for line in source.splitlines():
        if line.startswith("# %%"):
            cells.append(("markdown" if "[markdown]" in line else "code", []))
        elif cells:
            cells[-1][1].append(line)
    out = []
    for kind, lines in cells:
        if kind == "markdown":
            lines = [line[2:] if line.startswith("# ") else line.lstrip("#") for line in lines]
        text = "\n".join(lines).strip("\n")
        if text:
            out.append((kind, text))
    return out


def notebook(source: str) -> nbformat.NotebookNode:
    cells = []
    for index, (kind, text) in enumerate(split_cells(source), start=1):
        make = nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell
        cells.append(make(text, id=f"cell-{index}"))
    return nbformat.v4.new_notebook(cells=cells, metadata=METADATA)


def render(source: str) -> str:
    """The notebook's file text: validated, nbformat's own layout, one trailing newline."""
    nb = notebook(source)
    nbformat.validate(nb)
    return nbformat.writes(nb) + "\n"


def main(argv: list[str]) -> int:
    want = render(SCRIPT.read_text())
    if argv == ["--check"]:
        if NOTEBOOK.is_file() and NOTEBOOK.read_text() == want:
            return 0
        print(f"{NOTEBOOK} is not generated from {SCRIPT}: run python scripts/colab_notebook.py", file=sys.stderr)
        return 1
    if argv:
        print(__doc__, file=sys.stderr)
        return 2
    NOTEBOOK.write_text(want)
    print(f"wrote {NOTEBOOK}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
