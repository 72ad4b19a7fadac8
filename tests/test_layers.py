"""The layers of docs/architecture.md hold: imports run one way, and there is no import cycle.

The contracts live in pyproject.toml (``[tool.importlinter]``); lazy imports
inside functions count as imports, imports under ``TYPE_CHECKING`` do not.
"""

import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent


def test_import_contracts_are_kept():
    command = "from importlinter.cli import lint_imports_command; lint_imports_command()"
    done = subprocess.run([sys.executable, "-c", command, "--config", str(ROOT / "pyproject.toml"), "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def strongly_connected(graph) -> list[list[str]]:
    """Groups of modules that import each other, directly or not (Tarjan)."""
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return groups


def test_no_import_cycle_anywhere_in_the_package():
    graph = grimp.build_graph("datamaestro", exclude_type_checking_imports=True)
    assert strongly_connected(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    class Graph:
        modules = {"a", "b", "c"}

        @staticmethod
        def find_modules_directly_imported_by(module):
            return {"a": {"b"}, "b": {"a"}, "c": {"a"}}[module]

    assert strongly_connected(Graph) == [["a", "b"]]


def test_model_classes_read_no_global_context():
    """Context.instance() stays only as the 1.x name; the package reads the session."""
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "datamaestro").rglob("*.py")
        if "Context.instance()" in path.read_text() and path.name != "context.py"
    ]
    assert offenders == []
