"""The transport: HTTP(S) and ``file://`` downloads into a sink, in one pass.

:class:`Fetcher` streams a URL into a :class:`Sink` in 1 MiB chunks. Every
raw chunk is hashed (blake3, the *source digest*), given to the checkers and
written to the sink: constant memory, whatever the size. On the way it
retries (5xx, 429, connection errors, timeouts, truncated bodies) with
exponential backoff, resumes a broken body with a ``Range`` request, tries
the mirrors of the settings before the original URL and shows a progress
bar on a terminal. What cannot pass on a retry is not retried: a host name
that does not resolve, a refused connection, a 4xx; a host found down is
left out for the rest of the session (:class:`HostHealth`), and a source
that sends nothing for ``timeout`` seconds, retries included, is given up. Every failure is a :class:`~datamaestro.errors.DownloadError`
(or :class:`~datamaestro.errors.IntegrityError` from a checker) that names
the URL and says what to do::

    fetcher = Fetcher(mirrors={"https://example.org/": ["https://mirror.example.net/"]})
    sink = BytesSink()
    result = fetcher.fetch("https://example.org/train.csv.gz", sink)
    print(result.size, result.source_digest, len(sink.getvalue()))

``requests`` and ``rich`` are imported on first use, so that importing this
package (the CLI's ``--help``) costs nothing.

The rooms of this package:

- :mod:`.fetcher`: :class:`Fetcher`, the download loop (attempts, mirrors, resume, parallel parts);
- :mod:`.sinks`: :class:`Sink`, :class:`BytesSink`, :class:`FetchResult`;
- :mod:`.partial`: :class:`PartialDownload`, the bytes kept for a later run;
- :mod:`.progress`: :class:`ProgressBar`;
- :mod:`.failures`: failures translated into :class:`~datamaestro.errors.DownloadError`, and the hint texts;
- :mod:`.health`: :class:`HostHealth`, the hosts found down;
- :mod:`.retry`: the transient failures of one attempt and its deadlines.
"""

from .fetcher import Fetcher
from .health import HostHealth
from .progress import ProgressBar
from .sinks import BytesSink, FetchResult, Sink

__all__ = ["BytesSink", "FetchResult", "Fetcher", "HostHealth", "ProgressBar", "Sink"]
