"""1.x face: ``datamaestro.test``, test helpers for plugins.

A plugin's test module declares::

    import unittest
    from datamaestro.test import DatasetTests

    class MainTest(DatasetTests, unittest.TestCase):
        pass

and gets tests that import every config module, check that ids are unique
and build every dataset's config (nothing is downloaded).
"""

from .checks import DatasetTests

__all__ = ["DatasetTests"]
