"""The hosts found down during a session (:class:`HostHealth`), so that later downloads do not wait on them again."""

from __future__ import annotations

import threading
from urllib.parse import urlsplit


def host_of(url: str) -> str:
    """``scheme://host:port`` of a URL: what :class:`HostHealth` remembers."""
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{(parts.netloc.rpartition('@')[2]).lower()}"


class HostHealth:
    """The hosts found down during a session, so that the following files do not wait on them again.

    A host is down when its name does not resolve, it refuses connections,
    it is unreachable, or it did not answer within the timeout. Every
    fetcher of a context shares one (the context's downloads and its web
    peers alike); it is thread-safe.

    Example::

        health = HostHealth()
        health.mark_down("http://mirror.example/a.gz", "connection refused")
        health.down("http://mirror.example/b.gz")   # "connection refused"
    """

    def __init__(self):
        self._down: dict[str, str] = {}
        self._lock = threading.Lock()

    def down(self, url: str) -> str | None:
        """Why the host of ``url`` was found down, or None when it was not."""
        with self._lock:
            return self._down.get(host_of(url))

    def mark_down(self, url: str, reason: str) -> None:
        """Remembers that the host of ``url`` is down, and why."""
        with self._lock:
            self._down.setdefault(host_of(url), reason)
