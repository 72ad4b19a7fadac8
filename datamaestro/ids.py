"""Dataset ids, by the original datamaestro's rules (so that ids, hence experimaestro identifiers, are equal)."""

from __future__ import annotations

import re

from .errors import DefinitionError

_CAMEL_BOUNDARIES = (re.compile(r"([A-Z]+)([A-Z][a-z])"), re.compile(r"([a-z0-9])([A-Z])"))


def camel_to_dotted(name: str) -> str:
    """``TrainTexttripleFull`` -> ``train.texttriple.full`` (how the original names class ids).

    Runs of capitals stay together (``MNIST`` -> ``mnist``, ``ProcessedMNIST``
    -> ``processed.mnist``), so that ids equal the original datamaestro's.
    """
    for pattern in _CAMEL_BOUNDARIES:
        name = pattern.sub(r"\1.\2", name)
    return name.lower()


def dataset_id(module: str, qualname: str, explicit: str | None = None) -> str:
    """The id of a dataset declared in ``module`` as ``qualname``.

    Module components below the ``config`` package, lower-cased, then the
    class or function name with CamelCase split by dots (``explicit=None``);
    ``explicit="x"`` or ``".x.y"`` replaces the name; ``""`` is the module
    path alone; a dotted ``explicit`` id is used as is.

    :raises DefinitionError: no id can be derived
    """
    if explicit and "." in explicit and not explicit.startswith("."):
        return explicit
    components = module.split(".")
    if "config" not in components[1:]:
        # Outside a repository's config package (a script, a test): the
        # module path itself, lower-cased name appended.
        base = components
    else:
        base = components[components.index("config", 1) + 1 :]
    base = [part.lower() for part in base]
    if explicit is None:
        base = base + [camel_to_dotted(qualname.split(".")[-1])]
    elif explicit:
        base = base + [explicit.lstrip(".")]
    if not base:
        raise DefinitionError(f"{module}.{qualname}: cannot derive a dataset id")
    return ".".join(base)


def dataset_of_path(path) -> tuple[str, str]:
    """``(repository, dataset id)`` of a dataset folder relative to ``<data dir>/data``.

    The inverse of the readable path rule (``image/com/lecun/mnist`` ->
    ``("image", "com.lecun.mnist")``): a dataset id's components are the
    folders below its repository's.
    """
    from pathlib import PurePath

    repository, *components = PurePath(path).parts
    return repository, ".".join(components)
