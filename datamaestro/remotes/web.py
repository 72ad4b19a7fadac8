"""A remote published by a static web server (read-only), reached through the context's fetcher."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Callable

from ..errors import DownloadError, OfflineError, UntrustedInputError
from .base import MAX_RECORD_BYTES, Remote, RemoteUnavailable, action_key, object_key

if TYPE_CHECKING:
    from ..fetch import Fetcher
    from ..store import Store
    from ..store.objects import Staged


class BoundedSink:
    """Keeps at most ``limit`` bytes of a small document (an action record): what a remote sends past it is dropped.

    The caller sees ``limit`` bytes and refuses the document as too large;
    a server streaming without end never fills memory.
    """

    def __init__(self, limit: int):
        self.limit = limit
        self._data = bytearray()

    def write(self, data: bytes) -> None:
        """Appends bytes (up to the limit); past it, the transfer stops (the document is refused as too large)."""
        room = self.limit - len(self._data)
        self._data += data[:room]
        if len(data) > room:
            raise UntrustedInputError(f"a document of more than {self.limit - 1} bytes: refused")

    def reset(self) -> None:
        """Drops what was received (a transfer restarts)."""
        self._data.clear()

    def getvalue(self) -> bytes:
        """The bytes received."""
        return bytes(self._data)


class HttpRemote(Remote):
    """A store's folder published by a web server: ``<base>/objects/ab/cdef...``.

    :param base_url: the URL of the store's folder (``http://host:8000/``)
    :param fetcher_factory: makes a :class:`~datamaestro.fetch.Fetcher`; one
        is made per thread
    """

    def __init__(self, base_url: str, fetcher_factory: Callable[[], "Fetcher"]):
        self.base = base_url.rstrip("/") + "/"
        self.label = self.base
        self.fetcher_factory = fetcher_factory
        self._local = threading.local()

    def url_of(self, digest: str) -> str:
        """The URL of an object."""
        return self.base + object_key(digest)

    def _fetcher(self) -> "Fetcher":
        fetcher = getattr(self._local, "fetcher", None)
        if fetcher is None:
            fetcher = self._local.fetcher = self.fetcher_factory()
        return fetcher

    def get_action(self, key: str) -> bytes | None:
        """Downloads the record (a small JSON document)."""
        sink = BoundedSink(MAX_RECORD_BYTES + 1)
        try:
            if not self._fetch(self.base + action_key(key), sink, f"action {key[7:19]} from {self.base}"):
                return None
        except UntrustedInputError:
            pass  # cut off: the caller refuses a record of this size
        return sink.getvalue()

    def _fetch(self, url: str, sink, description: str) -> bool:
        """Fetches ``url`` into ``sink``; False when the server has no such file.

        :raises RemoteUnavailable: offline, or the server fails otherwise
        """
        try:
            self._fetcher().fetch(url, sink, description=description)
        except OfflineError:
            raise RemoteUnavailable("offline mode") from None
        except DownloadError as error:
            if error.missing:
                return False
            raise RemoteUnavailable(error.message) from None
        return True

    def missing(self, digests: list[str]) -> list[str]:
        """A static web server is read-only: nothing can be pushed to it."""
        raise RemoteUnavailable(f"{self.label} is read-only (a static web server)")

    def stage(self, store: "Store", digest: str, limit: int | None = None) -> "Staged | None":
        """Downloads the object into the store's tmp, checking its digest (and cutting it off past ``limit`` bytes)."""
        with store.objects.writer(expect=digest, limit=limit) as writer:
            if not self._fetch(self.url_of(digest), writer, f"{digest[7:19]} from {self.base}"):
                return None
            return writer.stage()

