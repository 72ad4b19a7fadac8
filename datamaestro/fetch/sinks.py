"""Where downloaded bytes go: the :class:`Sink` protocol, :class:`BytesSink`, and what a download gave (:class:`FetchResult`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

CHUNK_SIZE = 1 << 20


@dataclass
class FetchResult:
    """What a download gave.

    :param url: the URL after redirects when the original URL served the
        bytes; the original URL when a mirror served them (mirrors are a
        local setting and are never recorded)
    :param size: raw bytes received (as downloaded, before transforms)
    :param source_digest: ``blake3:<hex>`` of the raw bytes
    :param served_by: the URL that actually served the bytes (a mirror or
        the original, after redirects)
    :param resumed: part of the bytes were kept by an earlier run (a
        resume): a check of the whole that only the caller can make (an
        archive that does not open) is worth one download from byte 0
    """

    url: str
    size: int
    source_digest: str
    served_by: str
    resumed: bool = False


class Sink(Protocol):
    """Where downloaded bytes go (a file, an object writer, transforms...)."""

    def write(self, data: bytes) -> None:
        """Appends raw bytes."""

    def reset(self) -> None:
        """Starts over from byte 0, dropping everything written so far."""


class BytesSink:
    """A sink that keeps the bytes in memory (small files, tests).

    Example::

        sink = BytesSink()
        Fetcher().fetch("https://example.org/README", sink)
        print(sink.getvalue().decode())
    """

    def __init__(self):
        self.buffer = bytearray()

    def write(self, data: bytes) -> None:
        """Appends bytes."""
        self.buffer += data

    def reset(self) -> None:
        """Drops every byte."""
        self.buffer.clear()

    def getvalue(self) -> bytes:
        """The bytes received."""
        return bytes(self.buffer)
