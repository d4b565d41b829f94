"""The house rules, read from the source: which package may import which, no circles, no god files.

Imports are read with `ast` (what a module would import when run, so imports
under `if TYPE_CHECKING:` do not count for the direction rules, while imports
inside functions do: a lazy import is still a dependency). Circles are looked
for with the TYPE_CHECKING imports counted too: a module that names another's
record only for its annotations still cannot be understood without it, and
such an import is how a circle hides. The torch rule is checked by importing
every host-side module in a fresh interpreter, since torch can arrive through
any qwen_train module they use.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("qwen_train", "qwen_daemon", "qwen_tui")
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in sorted((REPO / package).rglob("*.py"))}


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST, typing: bool = False) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _type_checking_only(node) and not typing:
            for other in node.orelse:
                yield from _import_nodes(ast.Module(body=[other], type_ignores=[]))
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        yield from _import_nodes(node, typing)


def imports_of(name: str, path: Path, known: dict[str, Path], typing: bool = False) -> set[str]:
    """The project modules `name` imports: `from a.b import c` is a.b.c when c is a module, else a.b.

    `typing` counts the imports under `if TYPE_CHECKING:` too.
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _import_nodes(ast.parse(path.read_text(), str(path)), typing):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:
            anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join([*anchor, *([base] if base else [])])
        for alias in node.names:
            full = f"{base}.{alias.name}"
            found.add(full if full in known else base)
    return {m for m in found if m.split(".")[0] in PACKAGES and m in known and m != name}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


@pytest.fixture(scope="module")
def typing_graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(name, path, known, typing=True) for name, path in known.items()}


def test_the_reader_sees_imports_as_python_runs_them(tmp_path: Path) -> None:
    """The rules below are only as good as the reader: relative, aliased, lazy and TYPE_CHECKING imports."""
    known = {"qwen_daemon.jobs": Path(), "qwen_daemon.jobs.job": Path(), "qwen_daemon.protocol": Path(),
             "qwen_daemon.runs.registry": Path(), "qwen_train.spec": Path()}
    source = tmp_path / "kind.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "from . import job\n"
        "from qwen_daemon.protocol import RunView\n"
        "import qwen_train.spec as spec\n"
        "if TYPE_CHECKING:\n    from qwen_daemon.runs.registry import RunRecord\n"
        "def later():\n    from qwen_daemon.runs import registry\n"
    )
    assert imports_of("qwen_daemon.jobs.kind", source, known) == {
        "qwen_daemon.jobs.job", "qwen_daemon.protocol", "qwen_train.spec", "qwen_daemon.runs.registry"}
    source.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import qwen_train.spec\n")
    assert imports_of("qwen_daemon.jobs.kind", source, known) == set()
    assert imports_of("qwen_daemon.jobs.kind", source, known, typing=True) == {"qwen_train.spec"}


def test_the_dashboard_imports_only_the_daemons_protocol(graph: dict[str, set[str]]) -> None:
    reaching = {(m, dep) for m, deps in graph.items() if m.startswith("qwen_tui")
                for dep in deps if dep.startswith("qwen_daemon") and not dep.startswith("qwen_daemon.protocol")}
    assert reaching == set(), "qwen_tui may use qwen_daemon.protocol (records, client, socket) only"


def test_the_protocol_is_the_bottom_of_the_daemon(graph: dict[str, set[str]]) -> None:
    above = {(m, dep) for m, deps in graph.items() if m.startswith("qwen_daemon.protocol")
             for dep in deps if dep.startswith("qwen_daemon") and not dep.startswith("qwen_daemon.protocol")}
    assert above == set(), "qwen_daemon.protocol imports nothing else of the daemon"


def test_imports_flow_one_way_between_packages(graph: dict[str, set[str]]) -> None:
    order = {"qwen_train": 0, "qwen_daemon": 1, "qwen_tui": 2}
    upward = {(m, dep) for m, deps in graph.items() for dep in deps
              if order[dep.split(".")[0]] > order[m.split(".")[0]]}
    assert upward == set(), "qwen_tui -> qwen_daemon -> qwen_train, never back"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        top = stack.pop()
                        on_stack.discard(top)
                        component.append(top)
                        if top == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = counter
                counter += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


def test_cycle_finder_finds_a_circle_and_nothing_else() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles(typing_graph: dict[str, set[str]]) -> None:
    assert _cycles(typing_graph) == []


def test_no_module_is_a_god_file() -> None:
    long = {name: n for name, path in modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}, f"split modules over {MAX_LINES} lines"


def test_host_side_imports_no_torch() -> None:
    """Every daemon and dashboard module imported in one fresh interpreter leaves torch unloaded."""
    host = sorted(m for m in modules() if m.split(".")[0] in ("qwen_daemon", "qwen_tui") and not m.endswith("__main__"))
    script = ("import importlib, sys\n"
              f"for name in {host!r}:\n    importlib.import_module(name)\n"
              "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, check=True,
                         timeout=300)
    assert out.stdout.strip() == "[]", f"torch was imported by the host side: {out.stdout[:300]}"
    assert len(host) > 50  # the walk found the packages, not an empty list
