"""The layers of docs/architecture.md hold: imports run one way, and there is no import cycle.

The contracts live in pyproject.toml (``[tool.importlinter]``); lazy imports
inside functions count as imports, imports under ``TYPE_CHECKING`` do not.
"""

import ast
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent

#: modules that are neither in a layer nor a 1.x face of the contracts, and why
PUBLIC_FACES = {
    "datamaestro": "the package's public names, each imported on first use (datamaestro.lazy)",
    "datamaestro.download": "1.x face: the resources as the published plugins import them, each on first use",
}


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
    graph = grimp.build_graph("datamaestro", exclude_type_checking_imports=True, cache_dir=None)
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


def contracts() -> dict[str, dict]:
    """The import-linter contracts of pyproject.toml, by name."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return {contract["name"]: contract for contract in config["tool"]["importlinter"]["contracts"]}


def layer_modules() -> list[str]:
    """Every module or package a layer names, top to bottom."""
    return [name.strip() for layer in contracts()["Layers run one way"]["layers"] for name in layer.split(":")]


def one_x_faces() -> list[str]:
    """The 1.x faces: what the core may never import (the compatibility layer and the 1.x import paths)."""
    return contracts()["The core never imports the 1.x compatibility layer"]["forbidden_modules"]


def package_modules() -> dict[str, Path]:
    """Every module of the package, by name, found on disk (a new file is found without being named anywhere)."""
    found = {}
    for path in sorted((ROOT / "datamaestro").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def within(module: str, containers) -> bool:
    """True when ``module`` is one of ``containers`` or inside one of them."""
    return any(module == container or module.startswith(container + ".") for container in containers)


def only_a_docstring(path: Path) -> bool:
    """A module holding nothing but its docstring (a package's table of contents)."""
    body = ast.parse(path.read_text()).body
    return len(body) <= 1 and all(isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) for node in body)


def unplaced(modules: dict[str, Path]) -> list[str]:
    """The modules that are in no layer, no 1.x face, and not a declared public face (nor a bare docstring)."""
    layers, faces = layer_modules(), one_x_faces()
    return [
        module
        for module, path in modules.items()
        if not within(module, layers) and not within(module, faces) and module not in PUBLIC_FACES and not only_a_docstring(path)
    ]


def test_every_module_is_in_a_layer_or_declared_a_1x_face():
    assert unplaced(package_modules()) == []


def test_a_new_module_outside_every_layer_is_found(tmp_path):
    stray = tmp_path / "stray.py"
    stray.write_text("import os\n")
    modules = {**package_modules(), "datamaestro.stray": stray, "datamaestro.store.anything": stray}
    assert unplaced(modules) == ["datamaestro.stray"]


def test_the_core_contract_covers_every_layer():
    """The sources of "the core never imports compat" are the layers: a module added to a layer is core at once."""
    sources = contracts()["The core never imports the 1.x compatibility layer"]["source_modules"]
    assert sorted(sources) == sorted(layer_modules())


def test_the_1x_faces_say_so_in_their_first_line():
    modules = package_modules()
    faces = [m for m in modules if (within(m, one_x_faces()) and not within(m, ["datamaestro.compat"])) or m == "datamaestro.download"]
    assert faces, "no 1.x face found"
    assert [m for m in faces if not modules[m].read_text().startswith('"""1.x face: ')] == []


#: imports each module named on the command line in turn; prints the first after which datamaestro.compat is loaded
IMPORT_PROBE = """
import importlib, json, sys
culprit = None
for name in sys.argv[1:]:
    importlib.import_module(name)
    if culprit is None and "datamaestro.compat" in sys.modules:
        culprit = name
print(json.dumps({"culprit": culprit, "imported": len(sys.argv) - 1}))
"""


def first_module_loading_compat(modules: list[str]) -> str | None:
    """Imports the modules in one fresh interpreter, in order; the first one whose import loaded ``datamaestro.compat``."""
    done = subprocess.run([sys.executable, "-c", IMPORT_PROBE, *modules], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["imported"] == len(modules)
    return answer["culprit"]


def core_modules() -> list[str]:
    """Every module of the package in a layer (``__main__`` aside: importing it runs the command line)."""
    return [module for module in package_modules() if within(module, layer_modules()) and module != "datamaestro.__main__"]


def test_importing_any_core_module_leaves_compat_unloaded():
    """The contracts see no edge from a package's face (``download/__init__.py`` runs before ``download/single.py``): this does."""
    modules = core_modules()
    assert "datamaestro.download.single" in modules and "datamaestro.store" in modules
    assert first_module_loading_compat(modules) is None


def test_the_probe_names_a_module_that_loads_compat():
    assert first_module_loading_compat(["datamaestro.store", "datamaestro.definitions", "datamaestro.resource"]) == "datamaestro.definitions"


#: the 1.x faces that are nothing but a table of the lazy loader (``datamaestro.lazy.face``)
TABLE_FACES = [
    "datamaestro.download.links", "datamaestro.download.legacy", "datamaestro.download.manual", "datamaestro.download.sync",
    "datamaestro.stream", "datamaestro.stream.lines", "datamaestro.stream.compress", "datamaestro.record", "datamaestro.utils",
    "datamaestro.datafolders", "datamaestro.annotations.agreement", "datamaestro.helpers", "datamaestro.test", "datamaestro.test.checks",
]


def test_importing_a_face_loads_compat_only_when_a_name_is_used():
    """A face names its targets as strings: importing it imports nothing of the 1.x layer (no import runs up from download/ to compat/)."""
    assert first_module_loading_compat(TABLE_FACES) is None
    from datamaestro.compat.links import linkpath
    from datamaestro.download.links import linkpath as through_the_face

    assert through_the_face is linkpath


def rooms_graph(graph) -> dict[str, set[str]]:
    """The imports between rooms: a room is a top-level module or a top-level package (all its modules together)."""

    def room(module: str) -> str:
        return ".".join(module.split(".")[:2])

    edges: dict[str, set[str]] = {}
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            if room(module) != room(imported):
                edges.setdefault(room(module), set()).add(room(imported))
    return edges


class RoomGraph:
    """A graph of rooms with the interface :func:`strongly_connected` reads."""

    def __init__(self, edges: dict[str, set[str]]):
        self.edges = edges
        self.modules = set(edges) | {room for targets in edges.values() for room in targets}

    def find_modules_directly_imported_by(self, module: str) -> set[str]:
        return self.edges.get(module, set())


def test_no_import_cycle_between_rooms_type_checking_imports_included():
    """Rooms stand on floors: no room imports, even for a type checker, a room that imports it back (directly or not)."""
    graph = grimp.build_graph("datamaestro", exclude_type_checking_imports=False, cache_dir=None)
    assert strongly_connected(RoomGraph(rooms_graph(graph))) == []


def test_a_cycle_between_rooms_is_found_though_no_module_cycle_exists():
    """``a.low -> b`` and ``b -> a.high``: no module imports itself back, the rooms ``a`` and ``b`` do."""

    class Graph:
        modules = {"datamaestro.a.low", "datamaestro.a.high", "datamaestro.b", "datamaestro.c"}

        @staticmethod
        def find_modules_directly_imported_by(module):
            return {"datamaestro.a.low": {"datamaestro.b"}, "datamaestro.b": {"datamaestro.a.high"}, "datamaestro.a.high": set(), "datamaestro.c": {"datamaestro.b"}}[module]

    assert strongly_connected(Graph) == []
    assert strongly_connected(RoomGraph(rooms_graph(Graph))) == [["datamaestro.a", "datamaestro.b"]]
