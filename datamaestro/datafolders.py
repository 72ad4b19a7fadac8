"""1.x face: ``datamaestro.datafolders``, folders a user provides by hand (see :mod:`datamaestro.compat.datafolders`)."""

from .lazy import face

__all__ = ["ResolvablePath", "DatafolderPath", "describe_proposal"]

__getattr__, __dir__ = face(__name__, {"datamaestro.compat.datafolders": [*__all__]})
