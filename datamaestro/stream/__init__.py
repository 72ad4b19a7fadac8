"""1.x face: ``datamaestro.stream``, stream transforms of the 1.x API (see :mod:`datamaestro.compat.stream`)."""

from datamaestro.compat.stream.base import (  # noqa: F401
    Transform,
    Identity,
    TransformList,
    describe,
    _WholeStreamState,
    FileObjectTransform,
)

__all__ = ['Transform', 'Identity', 'TransformList', 'describe', 'FileObjectTransform']
