"""1.x face: ``datamaestro.utils``, the checksums and files of the 1.x API (see :mod:`datamaestro.compat.utils`)."""

from datamaestro.compat.utils import (  # noqa: F401
    CachedFile,
    FileChecker,
    HashCheck,
    Md5Check,
    Sha256Check,
    SizeCheck,
    TemporaryDirectory,
    deprecated,
)

__all__ = ["CachedFile", "FileChecker", "HashCheck", "Md5Check", "Sha256Check", "SizeCheck", "TemporaryDirectory", "deprecated"]
