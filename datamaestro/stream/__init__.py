"""1.x face: ``datamaestro.stream``, stream transforms of the 1.x API (see :mod:`datamaestro.compat.stream`)."""

from ..lazy import face

__all__ = ["Transform", "Identity", "TransformList", "describe", "FileObjectTransform"]

__getattr__, __dir__ = face(__name__, {"datamaestro.compat.stream.base": [*__all__, "_WholeStreamState"]})
