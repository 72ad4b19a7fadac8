"""Web pages from the Internet Archive's Wayback Machine: :class:`wayback_documents`.

For every URL a function lists, the snapshot closest to a date is looked
up and downloaded; the result is one JSON line per page (``link``, ``id``
— the snapshot's URL — and ``contents``, or ``available: false``). Requests
go through datamaestro's fetcher: mirrors, retries and offline mode apply.
"""

from __future__ import annotations

import json
import logging
import re
import urllib.parse
from typing import TYPE_CHECKING, Callable, Iterator

from ..errors import DownloadError
from ..store import Output
from ..resource import FileResource
from ..store.actions import Kind

if TYPE_CHECKING:
    from ..resource import Job

logger = logging.getLogger(__name__)

_WAYBACK = re.compile(r"^https?://web\.archive\.org/web/")
_SNAPSHOT = re.compile(r"(web\.archive\.org/web/\d+)")


class _Bytes:
    """A fetch sink keeping the body in memory (small API answers and pages)."""

    def __init__(self):
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        self.data.extend(data)

    def reset(self) -> None:
        self.data.clear()


class wayback_documents(FileResource):
    """Pages archived by the Wayback Machine, as JSON lines.

    :param timestamp: the wanted date, ``YYYYMMDD[hhmmss]``
    :param urls_fn: a function returning the pages' URLs (called at prepare time)
    :param name: the file's name in the dataset folder
    """

    def __init__(self, timestamp: str, urls_fn: Callable[[], Iterator[str]], name: str | None = None):
        super().__init__(name)
        self.timestamp = timestamp
        self.urls_fn = urls_fn

    def recipe(self) -> dict:
        """The date and the URL function's name."""
        function = f"{getattr(self.urls_fn, '__module__', '')}.{getattr(self.urls_fn, '__qualname__', '')}"
        return {**super().recipe(), "timestamp": self.timestamp, "urls": function}

    def _get(self, job: "Job", url: str) -> bytes:
        sink = _Bytes()
        job.download(url, sink, description=url)
        return bytes(sink.data)

    def _page(self, job: "Job", link: str) -> dict:
        try:
            if _WAYBACK.match(link):
                url = link
            else:
                query = f"https://archive.org/wayback/available?url={urllib.parse.quote(link)}&timestamp={self.timestamp}"
                closest = json.loads(self._get(job, query)).get("archived_snapshots", {}).get("closest")
                if not closest:
                    return {"link": link, "available": False}
                url = closest["url"]
            raw = _SNAPSHOT.sub(lambda m: f"{m.group(1)}id_", url, count=1)
            return {"link": link, "id": raw, "contents": self._get(job, raw).decode("utf-8")}
        except (DownloadError, ValueError, KeyError) as exc:
            # one missing page must not lose the others
            logger.warning("wayback: %s: %s", link, exc)
            return {"link": link, "available": False}

    def produce(self, job: "Job") -> Output:
        """Fetches every page; writes the JSON lines into one object."""
        with job.store.writer() as writer:
            for link in self.urls_fn():
                writer.write((json.dumps(self._page(job, link)) + "\n").encode("utf-8"))
            digest = writer.commit()
        return Output(Kind.FILE, digest)
