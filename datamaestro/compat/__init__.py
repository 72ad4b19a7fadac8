"""The original datamaestro's (1.x) API, mapped onto datamaestro 2's design.

The published plugins and code written for datamaestro 1.16 import these
names from their 1.x paths (``datamaestro.definitions``, ``datamaestro.stream``,
``datamaestro.utils``, ...), which re-export them from here. The core never
imports this package: it offers hooks (``as_definition()``, a definition's
``production_checks``, a transform's ``streaming()``, a bound object's
``attach_resource()``) that these classes fill.
"""

from __future__ import annotations


def keep_public_module(namespace: dict, module: str) -> None:
    """Names the classes and functions of a moved module after the 1.x module users import them from.

    A class's module is part of resource recipes (hence of action-cache keys
    and lock fingerprints), of pickles and of messages: moving the code here
    must change none of them.

    :param namespace: the moved module's ``globals()``
    :param module: the 1.x module path (``datamaestro.stream.lines``)
    """
    for value in list(namespace.values()):
        if isinstance(value, type) or callable(value) and hasattr(value, "__code__"):
            if getattr(value, "__module__", None) == namespace["__name__"]:
                value.__module__ = module
