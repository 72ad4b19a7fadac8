"""datamaestro: datasets by id, prepared once into a content-addressed store.

The public API, imported lazily so that ``datamaestro --help`` stays fast::

    from datamaestro import prepare_dataset, get_dataset, Context
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from . import session

__version__ = "2.0.0"

#: public name -> the module that defines it (imported on first access)
_LAZY = {
    "prepare_dataset": "datamaestro.api",
    "get_dataset": "datamaestro.api",
    "Context": "datamaestro.context",
    "Location": "datamaestro.definition",
    "Repository": "datamaestro.repository",
    "DatamaestroError": "datamaestro.errors",
    "dataset": "datamaestro.definition",
    "Dataset": "datamaestro.definition",
    # names the published plugins import from the original datamaestro
    "metadata": "datamaestro.compat.decorators",
    "BaseRepository": "datamaestro.repository",
    "Base": "datamaestro.data",
}

__all__ = ["__version__", *_LAZY]

if TYPE_CHECKING:
    from .api import get_dataset, prepare_dataset  # noqa: F401
    from .compat.decorators import metadata  # noqa: F401
    from .context import Context  # noqa: F401
    from .data import Base  # noqa: F401
    from .definition import Dataset, Location, dataset  # noqa: F401
    from .errors import DatamaestroError  # noqa: F401
    from .repository import BaseRepository, Repository  # noqa: F401


def _default_context():
    """The session used outside any ``with Context()``: settings from the environment."""
    from .context import Context  # noqa: F401

    return Context()


session.set_default_factory(_default_context)


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'datamaestro' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
