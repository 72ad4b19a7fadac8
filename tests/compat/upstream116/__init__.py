"""datamaestro 1.16.1's own test suite, run unchanged against this datamaestro.

The ``test_*.py`` files and ``conftest.py`` are copied byte for byte from
the ``datamaestro/test/`` folder of the datamaestro 1.16.1 wheel (GPL-3.0,
like this project); ``tests/compat/conftest.py`` marks the tests that fail
here on purpose (see docs/plugins.md, "What differs"). This file replaces the
wheel's ``__init__.py``, which imports its ``checks`` module (it needs
``docutils``, and is not a test).
"""
