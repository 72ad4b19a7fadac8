"""1.x face: ``datamaestro.test.checks``, test helpers for plugins (see :mod:`datamaestro.compat.testing`)."""

from datamaestro.compat.testing import DatamaestroAnalyzer, DatasetTests

__all__ = ["DatamaestroAnalyzer", "DatasetTests"]
