"""1.x face: ``datamaestro.stream.compress``, decompression transforms (see :mod:`datamaestro.compat.stream.compress`)."""

from datamaestro.compat.stream.compress import (  # noqa: F401
    Gunzip,
)

__all__ = ['Gunzip']
