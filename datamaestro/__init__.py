"""datamaestro: datasets by id, prepared once into a content-addressed store.

The public API (imported lazily, so that ``datamaestro --help`` stays fast)::

    from datamaestro import prepare_dataset, get_dataset, Context
"""

from __future__ import annotations

import importlib

from . import session

__version__ = "2.0.0"


def _default_context():
    """The session used outside any ``with Context()``: settings from the environment."""
    from .context import Context

    return Context()


session.set_default_factory(_default_context)

_LAZY = {
    "prepare_dataset": "datamaestro.api",
    "get_dataset": "datamaestro.api",
    "Context": "datamaestro.context",
    "Repository": "datamaestro.repository",
    "DatamaestroError": "datamaestro.errors",
    "dataset": "datamaestro.definitions",
    "Dataset": "datamaestro.definitions",
    # names the published plugins import from the original datamaestro
    "metadata": "datamaestro.definitions",
    "BaseRepository": "datamaestro.repository",
    "Base": "datamaestro.data",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'datamaestro' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
