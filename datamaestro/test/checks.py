"""1.x face: ``datamaestro.test.checks``, test helpers for plugins (see :mod:`datamaestro.compat.testing`)."""

from ..lazy import face

__all__ = ["DatamaestroAnalyzer", "DatasetTests"]

__getattr__, __dir__ = face(__name__, {"datamaestro.compat.testing": __all__})
