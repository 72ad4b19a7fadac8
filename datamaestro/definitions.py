"""1.x face: ``datamaestro.definitions``, dataset definitions as the original datamaestro offered them.

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
from .compat.folder import bind_class_resources as _bind_class_resources  # noqa: F401
from .compat.folder import compute_dependents as _compute_dependents  # noqa: F401
from .compat.folder import topological_sort  # noqa: F401
from .errors import DownloadError  # noqa: F401
from .ids import camel_to_dotted  # noqa: F401
from .lazy import lazy_getattr



class _DatasetWrapperType(type):
    """``DatasetWrapper``: every definition is one, and ``DatasetWrapper(annotation, target)`` builds one as 1.16 did."""

    def __instancecheck__(cls, instance) -> bool:
        return isinstance(instance, DatasetDefinition)

    def __subclasscheck__(cls, subclass) -> bool:
        return issubclass(subclass, DatasetDefinition)

    def __call__(cls, annotation, target=None, **metadata):
        if target is None:
            # this datamaestro's signature: DatasetWrapper(target, **metadata)
            return DatasetDefinition(annotation, **metadata)
        return DatasetDefinition(target, base=getattr(annotation, "base", None), **{**getattr(annotation, "metadata", {}), **metadata})


class DatasetWrapper(metaclass=_DatasetWrapperType):
    """The original's class of ``X.__dataset__``: a :class:`DatasetDefinition`."""

#: experimaestro names the original module re-exported (``from datamaestro.definitions import Param``)
_EXPERIMAESTRO_NAMES = ("Config", "Meta", "Option", "Param")


# lazily, so that importing definitions (search, the CLI) does not load experimaestro
__getattr__ = lazy_getattr(__name__, {name: f"experimaestro:{name}" for name in _EXPERIMAESTRO_NAMES})
