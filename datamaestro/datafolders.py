"""1.x face: ``datamaestro.datafolders``, folders a user provides by hand (see :mod:`datamaestro.compat.datafolders`)."""

from datamaestro.compat.datafolders import (  # noqa: F401
    ResolvablePath,
    DatafolderPath,
    describe_proposal,
)

__all__ = ['ResolvablePath', 'DatafolderPath', 'describe_proposal']
