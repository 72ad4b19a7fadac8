"""Names a module offers without importing them before first use, read from one table.

A public face (the package's names, a 1.x path) must stay cheap to import,
and some of its names live in modules that import it. Such a module gives
its names as a table ``{name: "module:attribute"}`` and ends with::

    __getattr__ = lazy_getattr(__name__, {"Context": "datamaestro.context:Context"})

A name kept only for old code gives the line its first use warns with
(``deprecated={name: message}``; once per name and process). A 1.x face
(a module kept only for the import paths of the published plugins) is
nothing but its table, by target module (:func:`face`)::

    __getattr__, __dir__ = face(__name__, {"datamaestro.compat.links": ["linkfile", "linkfolder"]})
 This module
imports nothing of datamaestro: every layer may use it. Note that an import
through this table is a string: the import contracts do not see it, and
``tests/test_layers.py`` checks instead that no core module loads
``datamaestro.compat`` when imported.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, Callable

#: the names :func:`warn_once` has warned about in this process
_warned: set[str] = set()


def warn_once(name: str, message: str) -> None:
    """Emits a ``DeprecationWarning`` the first time only (per name and process), pointing at the caller's caller."""
    if name not in _warned:
        _warned.add(name)
        import warnings

        warnings.warn(message, DeprecationWarning, stacklevel=3)


def resolve(target: str) -> Any:
    """The object a table names: ``"package.module:attribute"`` (the attribute may be dotted: ``Class.method``)."""
    module, _, attribute = target.partition(":")
    value: Any = importlib.import_module(module)
    for part in attribute.split("."):
        value = getattr(value, part)
    return value


def lazy_getattr(module_name: str, table: dict[str, str], *, deprecated: dict[str, str] | None = None, cache: bool = False) -> Callable[[str], Any]:
    """A module ``__getattr__`` answering the names of ``table`` (the module's own names are found before it is asked).

    :param module_name: the module's ``__name__`` (for messages, warnings and the cache)
    :param table: name -> ``"module:attribute"``, imported on first use
    :param deprecated: name -> the warning its use gives (once per process); never cached
    :param cache: keep a resolved name in the module (later uses cost nothing)
    """
    deprecated = deprecated or {}

    def __getattr__(name: str) -> Any:
        target = table.get(name)
        if target is None:
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        message = deprecated.get(name)
        if message is not None:
            warn_once(f"{module_name}.{name}", message)
        value = resolve(target)
        if cache and message is None:
            setattr(sys.modules[module_name], name, value)
        return value

    return __getattr__


def lazy_dir(module_name: str, table: dict[str, str]) -> Callable[[], list[str]]:
    """A module ``__dir__`` listing the module's own names and those of ``table``."""

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[module_name]), *table})

    return __dir__


def face(module_name: str, targets: dict[str, list[str]], *, deprecated: dict[str, str] | None = None) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of a face module: each name of ``targets`` is taken from its module on first use.

    A face imports nothing it offers: the modules are named as strings, so a
    face of a low package (``datamaestro.download.links``) may offer names of
    a package above it (``datamaestro.compat``) without an import running up.

    :param module_name: the face's ``__name__``
    :param targets: target module -> the names the face offers from it
    :param deprecated: name -> the warning its use gives (once per process)
    """
    table = {name: f"{target}:{name}" for target, names in targets.items() for name in names}
    return lazy_getattr(module_name, table, deprecated=deprecated, cache=True), lazy_dir(module_name, table)
