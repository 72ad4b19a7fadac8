"""Stream transforms of the original datamaestro (see :mod:`datamaestro.compat.stream.base`)."""

from .base import FileObjectTransform, Identity, Transform, TransformList, describe

__all__ = ["FileObjectTransform", "Identity", "Transform", "TransformList", "describe"]
