"""Resources: what the published plugins import as ``datamaestro.download``.

The resource protocol is :mod:`datamaestro.resource`; the resources
themselves are the modules of this package (:mod:`~datamaestro.download.single`,
:mod:`~datamaestro.download.archive`, :mod:`~datamaestro.download.custom`,
:mod:`~datamaestro.download.references`, ...). The base classes exported
here add the original datamaestro's API (``download()``/``_download()``,
``self.context``) for the resources plugins write themselves (see
:mod:`datamaestro.compat.legacy`).
"""

from ..compat.legacy import Download, FileResource, FolderResource, LocalResourceMixin, Resource, ResourceState, ValueResource
from ..compat.folder import ResourceStateFile
from ..resource import CheckStatus, ResourceCheckResult
from ..resource import _warned as _deprecation_warned  # noqa: F401 (1.16's name of the warned-once set)
from .custom import custom_download
from .files import FilesCopy

__all__ = [
    "CheckStatus", "Download", "FileResource", "FilesCopy", "ResourceCheckResult", "FolderResource", "ResourceStateFile", "LocalResourceMixin", "Resource", "ResourceState", "ValueResource",
    "custom_download", "reference",
]


def __getattr__(name: str):
    # ``from datamaestro.download import reference`` (the original's import path),
    # resolved lazily: importing the references module loads the definitions
    if name == "reference":
        from .references import reference

        return reference
    if name == "SingleDownload":
        from .single import SingleDownload

        return SingleDownload
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
