"""1.x face: ``datamaestro.download.legacy``, resources of the 1.x API run through the store (see :mod:`datamaestro.compat.legacy`)."""

from datamaestro.compat.legacy import (  # noqa: F401
    _state,
    _NOT_PARAMETERS,
    legacy_parameters,
    _describe,
    run_legacy,
    _store_output,
    CachedFile,
    LegacyContext,
    LegacyResourceMixin,
    _overrides_prepare,
    Resource,
    FileResource,
    FolderResource,
    ValueResource,
    Download,
    LocalResourceMixin,
)

__all__ = ['legacy_parameters', 'run_legacy', 'CachedFile', 'LegacyContext', 'LegacyResourceMixin', 'Resource', 'FileResource', 'FolderResource', 'ValueResource', 'Download', 'LocalResourceMixin']
