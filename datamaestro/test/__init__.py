"""1.x face: ``datamaestro.test``, test helpers for plugins.

A plugin's test module declares::

    import unittest
    from datamaestro.test import DatasetTests

    class MainTest(DatasetTests, unittest.TestCase):
        pass

and gets tests that import every config module, check that ids are unique
and build every dataset's config (nothing is downloaded).
"""

from ..lazy import face

__all__ = ["DatasetTests"]

__getattr__, __dir__ = face(__name__, {"datamaestro.compat.testing": __all__})
