"""Test helpers for plugins (the 1.x module; see :mod:`datamaestro.compat.testing`)."""

from datamaestro.compat.testing import DatamaestroAnalyzer, DatasetTests

__all__ = ["DatamaestroAnalyzer", "DatasetTests"]
