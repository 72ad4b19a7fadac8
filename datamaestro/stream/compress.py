"""Decompression transforms of the 1.x API (see :mod:`datamaestro.compat.stream.compress`)."""

from datamaestro.compat.stream.compress import (  # noqa: F401
    Gunzip,
)

__all__ = ['Gunzip']
