"""datamaestro: datasets by id, prepared once into a content-addressed store.

The public API, imported lazily so that ``datamaestro --help`` stays fast::

    from datamaestro import prepare_dataset, get_dataset, Context
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import session
from .lazy import lazy_dir, lazy_getattr
from .version import __version__

#: public name -> where it is defined (imported on first access)
_LAZY = {
    "prepare_dataset": "datamaestro.api:prepare_dataset",
    "get_dataset": "datamaestro.api:get_dataset",
    "Context": "datamaestro.context:Context",
    "Location": "datamaestro.definition:Location",
    "Repository": "datamaestro.repository:Repository",
    "DatamaestroError": "datamaestro.errors:DatamaestroError",
    "dataset": "datamaestro.definition:dataset",
    "Dataset": "datamaestro.definition:Dataset",
    # names the published plugins import from the original datamaestro
    "metadata": "datamaestro.compat.decorators:metadata",
    "BaseRepository": "datamaestro.repository:BaseRepository",
    "Base": "datamaestro.data:Base",
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


__getattr__ = lazy_getattr(__name__, _LAZY, cache=True)
__dir__ = lazy_dir(__name__, _LAZY)
