"""The transient failures of one attempt and the deadlines that end it: retry errors (``_Retry``, ``_NoRanges``), the pace a body must keep, a head that comes too slowly."""

from __future__ import annotations

import threading
import time

from .failures import NETWORK_HINT

#: longest wait between two attempts, in seconds
MAX_DELAY = 30.0
RETRY_STATUSES = {408, 425, 429}

#: a body must bring this many bytes (or end) every ``timeout`` seconds: a deadline a dripping body cannot dodge
PACE_BYTES = 64 << 10


class _Pace:
    """The progress a body makes: at least :data:`PACE_BYTES` (or its end) every ``timeout`` seconds.

    The read timeout bounds each read only; a server that sends a byte
    before each read times out would hold a download for ever. With this,
    a body of n bytes takes at most about ``timeout × (1 + n / PACE_BYTES)``
    seconds (at the default 60 s, a source slower than 1 KiB/s is given up).
    """

    def __init__(self, timeout: float):
        self.timeout = timeout
        self.since = time.monotonic()
        self.count = 0

    def advance(self, received: int) -> bool:
        """Counts bytes received; False when the window ran out before enough came."""
        self.count += received
        now = time.monotonic()
        if self.count >= PACE_BYTES:
            self.since, self.count = now, 0
            return True
        return now - self.since <= self.timeout


class _SlowHead(Exception):
    """A server sent its status line and headers drop by drop, past the deadline; caught by the :class:`~datamaestro.fetch.fetcher.Fetcher`, never leaves the fetch package."""


def _get_within(session, url: str, deadline: float, **kwargs):
    """``session.get(url, **kwargs)``, given up when the answer's head (status line, headers) takes more than ``deadline`` seconds.

    The read timeout bounds each read only: a server sending a byte of its
    headers before each read times out would hold the request for ever
    (http.client reads a header line of up to 64 KiB, and 100 of them). The
    request runs on a daemon thread; once given up, its answer is closed
    when it comes (its connection is never reused).

    :raises _SlowHead: no complete head within ``deadline``
    """
    outcome: dict = {}
    done = threading.Event()
    abandoned = threading.Event()

    def request() -> None:
        try:
            outcome["response"] = session.get(url, **kwargs)
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc
        finally:
            done.set()
            if abandoned.is_set() and "response" in outcome:
                outcome["response"].close()

    threading.Thread(target=request, name="datamaestro-head", daemon=True).start()
    if not done.wait(min(deadline, threading.TIMEOUT_MAX)):
        abandoned.set()
        if done.is_set() and "response" in outcome:  # came just now
            outcome["response"].close()
        raise _SlowHead()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["response"]


class _Retry(Exception):
    """A transient failure of one attempt; caught by the :class:`~datamaestro.fetch.fetcher.Fetcher`, never leaves the fetch package."""

    def __init__(self, reason: str, hint: str = NETWORK_HINT, retry_after: float | None = None, *, timeout: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.hint = hint
        self.retry_after = retry_after
        #: the server did not answer in time (the host is taken as down when this is the last word)
        self.timeout = timeout


class _NoRanges(Exception):
    """The server does not serve the ranges of a parallel download (or its file changed); caught by the :class:`~datamaestro.fetch.fetcher.Fetcher`, never leaves the fetch package."""
