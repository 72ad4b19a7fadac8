"""Checkers: verify downloaded bytes (size, checksums) while they stream.

A :class:`Checker` is declared in a dataset definition; the fetcher calls
:meth:`Checker.start` for each download, feeds every raw chunk to the state
(:meth:`CheckState.update`) and calls :meth:`CheckState.verify` at the end::

    check = Sha256Check("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")
    state = check.start()
    state.update(b"test")
    state.verify("https://example.org/test.txt")   # passes

:meth:`Checker.recipe` describes the check in recipe keys: changing an
expected checksum in a definition changes the key.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any, Callable

from ..errors import DefinitionError, IntegrityError

CHUNK_SIZE = 1 << 20
HINT = "the file changed on the server or the download is corrupt; check the URL or update the definition"
_HEX = re.compile(r"^[0-9a-f]+$")


class CheckState:
    """The running state of a check over one download."""

    def __init__(self, checker: "Checker"):
        self.checker = checker

    def update(self, data: bytes) -> None:
        """Takes the next chunk of raw bytes."""
        raise NotImplementedError

    def actual(self) -> str:
        """What was measured, formatted like :meth:`Checker.expected`."""
        raise NotImplementedError

    def verify(self, url: str) -> None:
        """Compares what was seen with what was expected.

        :param url: the download's URL, named in the error message
        :raises IntegrityError: on a mismatch
        """
        actual = self.actual()
        expected = self.checker.expected()
        if actual != expected:
            kind = self.checker.kind
            raise IntegrityError(f"{kind} mismatch for {url}: expected {expected}, got {actual}", hint=HINT)


class Checker:
    """A check on the raw bytes of a download; subclasses define the measure.

    :attr:`kind` names the check in messages (``size``, ``sha256``...).
    """

    kind: str = ""

    def start(self) -> CheckState:
        """A fresh state for one download."""
        raise NotImplementedError

    def expected(self) -> str:
        """The expected value, as shown in messages."""
        raise NotImplementedError

    def recipe(self) -> dict[str, Any]:
        """A JSON description of the check, for recipe keys: ``{kind: expected}``."""
        return {self.kind: self.expected()}

    def check(self, path: Path | str) -> None:
        """Checks a local file (the API of datamaestro 1's ``HashCheck``): returns None when it matches.

        :raises ChecksumError: on a mismatch (an :class:`IntegrityError`, and
            an ``IOError`` as in datamaestro 1)
        :raises FileNotFoundError: no such file
        """
        from ..errors import ChecksumError

        state = self.start()
        with open(path, "rb") as fp:
            while chunk := fp.read(CHUNK_SIZE):
                state.update(chunk)
        try:
            state.verify(str(path))
        except IntegrityError as error:
            raise ChecksumError(error.message, hint=error.hint) from None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.expected()!r})"


class _SizeState(CheckState):
    def __init__(self, checker: "SizeCheck"):
        super().__init__(checker)
        self.size = 0

    def update(self, data: bytes) -> None:
        self.size += len(data)

    def actual(self) -> str:
        return f"{self.size} bytes"


class SizeCheck(Checker):
    """Checks the number of bytes downloaded.

    :param size: the expected size in bytes

    Example: ``FileDownloader("train.csv", url, checker=SizeCheck(1_048_576))``
    """

    kind = "size"

    def __init__(self, size: int):
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise DefinitionError(f"SizeCheck: the size must be a whole number of bytes >= 0, got {size!r}")
        self.size = size

    def start(self) -> CheckState:
        """A fresh byte counter."""
        return _SizeState(self)

    def expected(self) -> str:
        """``"<n> bytes"``."""
        return f"{self.size} bytes"

    def recipe(self) -> dict[str, Any]:
        """``{"size": n}``."""
        return {"size": self.size}


class _HashState(CheckState):
    def __init__(self, checker: "HashCheck"):
        super().__init__(checker)
        self.hash = checker.hasher()

    def update(self, data: bytes) -> None:
        self.hash.update(data)

    def actual(self) -> str:
        return self.checker.prefix + self.hash.hexdigest()


class HashCheck(Checker):
    """Checks a checksum of the downloaded bytes, with any hashlib constructor.

    :param hashstr: the expected hex digest (case does not matter)
    :param hasher: a hashlib constructor (``hashlib.md5``, ``hashlib.sha256``...)

    Example (the form used by published plugins)::

        from datamaestro.utils import HashCheck
        HashCheck("d41d8cd98f00b204e9800998ecf8427e", hashlib.md5)

    :raises DefinitionError: when ``hashstr`` is not a hex digest of the right length
    """

    #: prepended to hex digests in messages
    prefix = ""

    def __init__(self, hashstr: str, hasher: Callable = hashlib.md5):
        try:
            sample = hasher()
            self.kind = sample.name
            length = sample.digest_size * 2
        except Exception as exc:
            raise DefinitionError(f"HashCheck: {hasher!r} is not a hashlib constructor ({exc})") from None
        if not length:
            raise DefinitionError(f"HashCheck: {self.kind} has no fixed digest size; use another hash")
        self.hasher = hasher
        self.hexdigest = self._parse(hashstr, length)

    def _parse(self, hashstr: str, length: int) -> str:
        text = hashstr.strip().lower() if isinstance(hashstr, str) else ""
        if self.prefix and text.startswith(self.prefix):
            text = text[len(self.prefix) :]
        if len(text) != length or not _HEX.match(text):
            raise DefinitionError(
                f"{type(self).__name__}: {hashstr!r} is not a {self.kind} digest ({length} hex digits)",
                hint="copy the checksum published with the file",
            )
        return text

    def start(self) -> CheckState:
        """A fresh hash."""
        return _HashState(self)

    def expected(self) -> str:
        """The expected digest (``blake3:`` prefixed for :class:`Blake3Check`)."""
        return self.prefix + self.hexdigest


class Md5Check(HashCheck):
    """Checks the MD5 of the downloaded bytes.

    :param hexdigest: the expected MD5, 32 hex digits
    """

    def __init__(self, hexdigest: str):
        super().__init__(hexdigest, hashlib.md5)


class Sha256Check(HashCheck):
    """Checks the SHA-256 of the downloaded bytes.

    :param hexdigest: the expected SHA-256, 64 hex digits
    """

    def __init__(self, hexdigest: str):
        super().__init__(hexdigest, hashlib.sha256)


def _blake3():
    from blake3 import blake3

    return blake3()


class Blake3Check(HashCheck):
    """Checks the blake3 of the downloaded bytes (the store's own hash).

    :param hexdigest: the expected blake3, 64 hex digits, with or without
        the ``blake3:`` prefix
    """

    prefix = "blake3:"

    def __init__(self, hexdigest: str):
        super().__init__(hexdigest, _blake3)
