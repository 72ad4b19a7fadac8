"""1.x face: ``datamaestro.download``, the resources as the published plugins import them.

The resource protocol is :mod:`datamaestro.resource`; the resources
themselves are the modules of this package (:mod:`~datamaestro.download.single`,
:mod:`~datamaestro.download.archive`, :mod:`~datamaestro.download.custom`,
:mod:`~datamaestro.download.references`, ...), which are the core and never
need this face. The base classes offered here add the original
datamaestro's API (``download()``/``_download()``, ``self.context``) for the
resources plugins write themselves (see :mod:`datamaestro.compat.legacy`).
Every name is imported on first use, so that importing a core resource
module (which runs this file first) loads nothing of ``datamaestro.compat``;
the 1.x base classes are named here as strings only (never imported, not
even for type checkers), since the 1.x layer sits above the resources.
"""

from typing import TYPE_CHECKING

from ..lazy import lazy_dir, lazy_getattr

#: public name -> where it is defined
_NAMES = {
    "CheckStatus": "datamaestro.resource:CheckStatus",
    "ResourceCheckResult": "datamaestro.resource:ResourceCheckResult",
    "_deprecation_warned": "datamaestro.lazy:_warned",  # 1.16's name of the warned-once set
    "custom_download": "datamaestro.download.custom:custom_download",
    "FilesCopy": "datamaestro.download.files:FilesCopy",
    # ``from datamaestro.download import reference``: importing the references module loads the definitions
    "reference": "datamaestro.download.references:reference",
    "SingleDownload": "datamaestro.download.single:SingleDownload",
    # the base classes of the 1.x API
    "Download": "datamaestro.compat.legacy:Download",
    "FileResource": "datamaestro.compat.legacy:FileResource",
    "FolderResource": "datamaestro.compat.legacy:FolderResource",
    "LocalResourceMixin": "datamaestro.compat.legacy:LocalResourceMixin",
    "Resource": "datamaestro.compat.legacy:Resource",
    "ResourceState": "datamaestro.compat.legacy:ResourceState",
    "ValueResource": "datamaestro.compat.legacy:ValueResource",
    "ResourceStateFile": "datamaestro.compat.folder:ResourceStateFile",
}

__all__ = [
    "CheckStatus", "Download", "FileResource", "FilesCopy", "ResourceCheckResult", "FolderResource", "ResourceStateFile", "LocalResourceMixin", "Resource", "ResourceState", "ValueResource",
    "custom_download", "reference",
]

__getattr__ = lazy_getattr(__name__, _NAMES)
__dir__ = lazy_dir(__name__, _NAMES)

if TYPE_CHECKING:
    from ..resource import CheckStatus, ResourceCheckResult  # noqa: F401
    from .custom import custom_download  # noqa: F401
    from .files import FilesCopy  # noqa: F401
