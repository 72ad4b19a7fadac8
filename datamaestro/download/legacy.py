"""1.x face: ``datamaestro.download.legacy``, resources of the 1.x API run through the store (see :mod:`datamaestro.compat.legacy`)."""

from ..lazy import face

__all__ = ["legacy_parameters", "run_legacy", "CachedFile", "LegacyContext", "LegacyResourceMixin", "Resource", "FileResource", "FolderResource", "ValueResource", "Download", "LocalResourceMixin"]

__getattr__, __dir__ = face(
    __name__,
    {"datamaestro.compat.legacy": [*__all__, "_state", "_NOT_PARAMETERS", "_describe", "_store_output", "_overrides_prepare"]},
)
