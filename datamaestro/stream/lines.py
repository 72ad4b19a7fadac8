"""1.x face: ``datamaestro.stream.lines``, line transforms (see :mod:`datamaestro.compat.stream.lines`)."""

from datamaestro.compat.stream.lines import (  # noqa: F401
    _LineState,
    _LineStreaming,
    LineTransform,
    Replace,
    Filter,
)

__all__ = ['LineTransform', 'Replace', 'Filter']
