"""1.x face: ``datamaestro.stream.compress``, decompression transforms (see :mod:`datamaestro.compat.stream.compress`)."""

from ..lazy import face

__all__ = ["Gunzip"]

__getattr__, __dir__ = face(__name__, {"datamaestro.compat.stream.compress": [*__all__]})
