"""Folders a user provides by hand (the 1.x module; see :mod:`datamaestro.compat.datafolders`)."""

from datamaestro.compat.datafolders import (  # noqa: F401
    ResolvablePath,
    DatafolderPath,
    describe_proposal,
)

__all__ = ['ResolvablePath', 'DatafolderPath', 'describe_proposal']
