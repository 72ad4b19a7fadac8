"""Dataset definitions, as the original datamaestro's ``datamaestro.definitions`` offered them.

The definition itself is :mod:`datamaestro.definition` (and the id rules
:mod:`datamaestro.ids`); the decorators and generated datasets of the 1.x
API are in :mod:`datamaestro.compat`.
"""

from .compat.decorators import (  # noqa: F401
    DatasetAnnotation,
    argument,
    datatags,
    datatasks,
    hook,
    metadata,
    metadataset,
)
from .compat.generated import AbstractDataset, DataDefinition, GeneratedDefinition, GeneratedDownload  # noqa: F401
from .definition import (  # noqa: F401
    Dataset,
    DatasetDefinition,
    Location,
    dataset,
    resource_decorator,
    set_data_ids,
)
from .ids import camel_to_dotted  # noqa: F401

#: the original's class of ``X.__dataset__``
DatasetWrapper = DatasetDefinition

#: experimaestro names the original module re-exported (``from datamaestro.definitions import Param``)
_EXPERIMAESTRO_NAMES = ("Config", "Meta", "Option", "Param")


def __getattr__(name: str):
    # lazily, so that importing definitions (search, the CLI) does not load experimaestro
    if name in _EXPERIMAESTRO_NAMES:
        import experimaestro

        return getattr(experimaestro, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
