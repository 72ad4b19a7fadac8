"""1.x face: ``datamaestro.stream.lines``, line transforms (see :mod:`datamaestro.compat.stream.lines`)."""

from ..lazy import face

__all__ = ["LineTransform", "Replace", "Filter"]

__getattr__, __dir__ = face(__name__, {"datamaestro.compat.stream.lines": [*__all__, "_LineState", "_LineStreaming"]})
