"""Calls run one way too: the rooms below the Context never call it back (docs/architecture.md, "Who calls whom").

The import contracts (``tests/test_layers.py``) leave out imports made only
for type checking and say nothing of calls made on an object handed down.
This test reads the code of the rooms below the Context and refuses:

- any import of ``datamaestro.context``, ``datamaestro.api`` or ``datamaestro.cli``, type-checking ones included;
- any use of a name ``context``/``ctx``, or of an attribute ``.context``/``.plugin_context``,
  other than handing it on (``job.context`` is given to plugin code, never called here);
- a read of the session in scope (``session.current()``) beyond the 1.x
  conveniences of model objects listed in :data:`SESSION_READS`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "datamaestro"

#: the rooms below the Context, as globs under the package (folders whole, so that a module moved inside them stays covered)
BELOW_CONTEXT = [
    "pipeline.py",
    "resource.py",
    "registry.py",
    "codecache.py",
    "entrypoints.py",
    "variants.py",
    "ids.py",
    "lazy.py",
    "hf_resolvers.py",
    "settings.py",
    "errors.py",
    "store/**/*.py",
    "fetch.py",
    "fetch/**/*.py",
    "remotes/**/*.py",
    "lock/model.py",
    "lock/fileformat.py",
    "lock/fingerprint.py",
    "download/single.py",
    "download/archive.py",
    "download/custom.py",
    "download/multiple.py",
    "download/files.py",
    "download/huggingface.py",
    "download/wayback.py",
    "download/todo.py",
    "download/references.py",
    "download/transforms.py",
    "download/checks.py",
]

#: ``session.current()`` calls allowed per module: model objects' conveniences of the 1.x API, off the corridor
SESSION_READS = {
    "resource.py": 1,  # Resource.state (the original's attribute)
    "download/references.py": 1,  # a reference named by a dataset id
}

UPPER_MODULES = ("datamaestro.context", "datamaestro.api", "datamaestro.cli")
CONTEXT_NAMES = {"context", "ctx"}
CONTEXT_ATTRIBUTES = {"context", "plugin_context"}


def modules_below_context() -> list[Path]:
    """The module files of the rooms below the Context."""
    found = {path for pattern in BELOW_CONTEXT for path in PACKAGE.glob(pattern)}
    return sorted(found)


def _imported(node: ast.AST, module: str) -> list[str]:
    """The absolute module names an import statement of ``module`` names."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        if node.level == 0:
            base = node.module or ""
        else:
            parts = module.split(".")[: -node.level]
            base = ".".join(parts + ([node.module] if node.module else []))
        return [base] + [f"{base}.{alias.name}" for alias in node.names]
    return []


def call_problems(path: Path) -> list[str]:
    """What a module does against "calls run one way", one line each (empty: nothing)."""
    relative = path.relative_to(PACKAGE).as_posix()
    module = "datamaestro." + relative[: -len(".py")].replace("/", ".").removesuffix(".__init__")
    if relative.endswith("__init__.py"):
        module += ".__init__"  # a package's relative imports start from the package itself
    tree = ast.parse(path.read_text(), filename=str(path))
    problems = []
    session_reads = 0
    parents = {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}
    for node in ast.walk(tree):
        for name in _imported(node, module):
            if name in UPPER_MODULES:
                problems.append(f"{relative}:{node.lineno}: imports {name}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "current":
            if isinstance(node.func.value, ast.Name) and node.func.value.id == "session":
                session_reads += 1
        used = None
        if isinstance(node, ast.Name) and node.id in CONTEXT_NAMES:
            used = node.id
        elif isinstance(node, ast.Attribute) and node.attr in CONTEXT_ATTRIBUTES:
            used = node.attr
        if used is not None and isinstance(parents.get(node), ast.Attribute):
            # reading an attribute of the context (or calling one of its methods): a call back up
            problems.append(f"{relative}:{node.lineno}: uses {used}.{parents[node].attr}")
    if session_reads > SESSION_READS.get(relative, 0):
        problems.append(f"{relative}: reads the session in scope {session_reads} time(s), {SESSION_READS.get(relative, 0)} allowed")
    return problems


def test_the_rooms_below_the_context_are_found():
    """The globs name real modules (a move that left them empty would make the next test pass for nothing)."""
    names = {path.relative_to(PACKAGE).as_posix() for path in modules_below_context()}
    assert {"pipeline.py", "resource.py", "download/single.py", "lock/fingerprint.py"} <= names
    assert any(name.startswith("store/") for name in names) and any(name.startswith("fetch") for name in names)


@pytest.mark.parametrize("path", modules_below_context(), ids=lambda path: path.relative_to(PACKAGE).as_posix())
def test_no_call_back_up_to_the_context(path):
    """No room below the Context imports it, calls it, or reads the session beyond its listed 1.x conveniences."""
    assert call_problems(path) == []


def test_a_call_back_up_is_seen(tmp_path, monkeypatch):
    """The check fails on the calls it is meant to refuse."""
    fake = tmp_path / "datamaestro"
    (fake / "download").mkdir(parents=True)
    module = fake / "download" / "single.py"
    module.write_text(
        "from typing import TYPE_CHECKING\n"
        "from .. import session\n"
        "if TYPE_CHECKING:\n"
        "    from ..context import Context\n"
        "def produce(job):\n"
        "    job.pipeline.plugin_context.fetcher()\n"
        "    return session.current().store\n"
    )
    monkeypatch.setattr(f"{__name__}.PACKAGE", fake)
    problems = call_problems(module)
    assert any("imports datamaestro.context" in line for line in problems)
    assert any("uses plugin_context.fetcher" in line for line in problems)
    assert any("reads the session in scope" in line for line in problems)
