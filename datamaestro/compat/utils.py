"""Helpers the original datamaestro's ``datamaestro.utils`` offered to plugins.

``HashCheck`` and ``FileChecker`` are the checkers of
:mod:`datamaestro.download.checks` (they verify the bytes while they are
downloaded, and ``check(path)`` verifies a local file)::

    from datamaestro.utils import HashCheck

    FileDownloader("data.csv", url, checker=HashCheck("80d664e496b8b7e50a39c6f6bb92e0ef"))
"""

from __future__ import annotations

import functools
import hashlib
import logging
import shutil
from pathlib import Path
from typing import Callable

from ..download import checks
from ..download.checks import Checker as FileChecker
from ..download.checks import Md5Check, Sha256Check, SizeCheck
from .legacy import CachedFile
from ..errors import DefinitionError

__all__ = ["CachedFile", "FileChecker", "HashCheck", "Md5Check", "Sha256Check", "SizeCheck", "TemporaryDirectory", "deprecated"]

logger = logging.getLogger(__name__)


class HashCheck(checks.HashCheck):
    """A checksum of the downloaded bytes (the original API: ``HashCheck(hexdigest, hashlib.md5)``).

    Unlike :class:`datamaestro.download.checks.HashCheck`, a malformed
    digest does not stop the plugin's module from importing: the error is
    raised when the file is checked, so that one bad definition does not
    hide the other datasets of its module.

    :param hashstr: the expected hex digest
    :param hasherfn: a hashlib constructor
    """

    def __init__(self, hashstr: str, hasherfn: Callable = hashlib.md5):
        self.error: DefinitionError | None = None
        try:
            super().__init__(hashstr, hasherfn)
        except DefinitionError as error:
            self.error = error
            self.hasher = hasherfn
            self.kind = getattr(hasherfn(), "name", "hash")
            self.hexdigest = str(hashstr)

    def start(self) -> checks.CheckState:
        """A fresh hash; raises the definition's error for a malformed digest."""
        if self.error is not None:
            raise self.error
        return super().start()


def deprecated(message: str, function: Callable) -> Callable:
    """Wraps ``function`` so that each call logs ``message`` (the original's helper)."""

    @functools.wraps(function)
    def wrapped(*args, **kwargs):
        logger.warning("deprecated: %s", message)
        return function(*args, **kwargs)

    return wrapped


class TemporaryDirectory:
    """A folder created on entry and removed on exit (unless ``delete`` is set to False).

    :param path: the folder
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.delete = True

    def __enter__(self) -> "TemporaryDirectory":
        self.path.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, *exc_info) -> None:
        if self.delete:
            shutil.rmtree(self.path, ignore_errors=True)


# recipes, pickles and messages keep naming the 1.x module
from . import keep_public_module  # noqa: E402

keep_public_module(globals(), 'datamaestro.utils')
