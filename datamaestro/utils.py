"""1.x face: ``datamaestro.utils``, the checksums and files of the 1.x API (see :mod:`datamaestro.compat.utils`)."""

from .lazy import face

__all__ = ["CachedFile", "FileChecker", "HashCheck", "Md5Check", "Sha256Check", "SizeCheck", "TemporaryDirectory", "deprecated"]

__getattr__, __dir__ = face(__name__, {"datamaestro.compat.utils": [*__all__]})
