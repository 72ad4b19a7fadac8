"""The transport: HTTP(S) and ``file://`` downloads into a sink, in one pass.

:class:`Fetcher` streams a URL into a :class:`Sink` in 1 MiB chunks. Every
raw chunk is hashed (blake3, the *source digest*), given to the checkers and
written to the sink: constant memory, whatever the size. On the way it
retries (5xx, 429, connection errors, timeouts, truncated bodies) with
exponential backoff, resumes a broken body with a ``Range`` request, tries
the mirrors of the settings before the original URL and shows a progress
bar on a terminal. Every failure is a :class:`~datamaestro.errors.DownloadError`
(or :class:`~datamaestro.errors.IntegrityError` from a checker) that names
the URL and says what to do::

    fetcher = Fetcher(mirrors={"https://example.org/": ["https://mirror.example.net/"]})
    sink = BytesSink()
    result = fetcher.fetch("https://example.org/train.csv.gz", sink)
    print(result.size, result.source_digest, len(sink.getvalue()))

``requests`` and ``rich`` are imported on first use, so that importing this
module (the CLI's ``--help``) costs nothing.
"""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Protocol, Sequence
from urllib.parse import unquote, urlsplit

from .errors import DatamaestroError, DownloadError, IntegrityError, OfflineError

if TYPE_CHECKING:
    from .download.checks import Checker

CHUNK_SIZE = 1 << 20
#: longest wait between two attempts, in seconds
MAX_DELAY = 30.0
MAX_REDIRECTS = 20
RETRY_STATUSES = {408, 425, 429}

DEAD_HINT = "the URL is dead: check it or set a mirror in settings ([mirrors])"
DENIED_HINT = "the server refuses access: the data may need a login or a manual download; check the URL or set a mirror in settings ([mirrors])"
NETWORK_HINT = "check the network connection and the URL, try again later, or set a mirror in settings ([mirrors])"
TRUNCATED_HINT = "the connection keeps breaking: try again later, or set a mirror in settings ([mirrors])"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("datamaestro")
    except PackageNotFoundError:
        return "2.0.0"


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
    """

    url: str
    size: int
    source_digest: str
    served_by: str


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


class _Retry(Exception):
    """A transient failure of one attempt; never leaves this module."""

    def __init__(self, reason: str, hint: str = NETWORK_HINT, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.hint = hint
        self.retry_after = retry_after


def _failure(url: str, reason: str, hint: str, *, missing: bool = False) -> DownloadError:
    return DownloadError(f"cannot download {url}: {reason}", hint=hint, reason=reason, missing=missing)


class ProgressBar:
    """A rich progress bar on stderr, or nothing at all when disabled."""

    def __init__(self, enabled: bool, description: str):
        self.enabled = enabled
        self.description = description
        self._bar = None
        self._task = None

    def __enter__(self) -> "ProgressBar":
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
            )
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=None)
        return self

    def __exit__(self, *exc_info) -> None:
        if self._bar is not None:
            self._bar.stop()

    def set_total(self, total: int | None) -> None:
        """Sets the expected number of bytes."""
        if self._bar is not None:
            self._bar.update(self._task, total=total)

    def advance(self, count: int) -> None:
        """Counts received bytes."""
        if self._bar is not None:
            self._bar.advance(self._task, count)

    def reset(self) -> None:
        """Back to zero (another source, or a restart)."""
        if self._bar is not None:
            self._bar.reset(self._task, total=None)


class _Stream:
    """The raw bytes of one download, kept in step across the hasher, checkers, sink and bar."""

    def __init__(self, sink: Sink, checkers: Sequence["Checker"], progress: ProgressBar):
        self.sink = sink
        self.checkers = checkers
        self.progress = progress
        self.dirty = False
        self._fresh()

    def _fresh(self) -> None:
        from blake3 import blake3

        self.hasher = blake3()
        self.states = [checker.start() for checker in self.checkers]
        self.received = 0
        #: the size announced by the server, once known
        self.total: int | None = None

    def feed(self, chunk: bytes) -> None:
        """One raw chunk: hashed, checked, written, counted."""
        self.hasher.update(chunk)
        for state in self.states:
            state.update(chunk)
        self.dirty = True
        self.sink.write(chunk)
        self.received += len(chunk)
        self.progress.advance(len(chunk))

    def set_total(self, total: int | None) -> None:
        """Records the announced size."""
        self.total = total
        self.progress.set_total(total)

    def reset(self) -> None:
        """Starts over from byte 0 (the sink is reset only if it got bytes)."""
        if self.dirty:
            self.sink.reset()
            self.dirty = False
        self._fresh()
        self.progress.reset()

    @property
    def digest(self) -> str:
        """``blake3:<hex>`` of the bytes fed so far."""
        return "blake3:" + self.hasher.hexdigest()


def _content_range(header: str | None) -> tuple[int | None, int | None]:
    """``bytes 100-199/1000`` -> (100, 1000); unknown parts are None."""
    match = re.match(r"^\s*bytes\s+(\d+)-\d+/(\d+|\*)\s*$", header or "")
    if match is None:
        return None, None
    total = match.group(2)
    return int(match.group(1)), None if total == "*" else int(total)


def _integer(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _file_name(url: str) -> str:
    return PurePosixPath(unquote(urlsplit(url).path)).name or url


def _cause(exc: BaseException) -> BaseException:
    """The innermost exception that requests and urllib3 wrap around the real one."""
    seen = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        inner = getattr(exc, "reason", None)
        if not isinstance(inner, BaseException):
            inner = next((arg for arg in reversed(exc.args) if isinstance(arg, BaseException)), None)
        if inner is None:
            break
        exc = inner
    return exc


def _is_local(url: str) -> bool:
    """A ``file://`` URL of this machine (no network involved)."""
    parts = urlsplit(url)
    return parts.scheme.lower() == "file" and parts.netloc in ("", "localhost")


def _host(url: str) -> str:
    """Where a URL points, for a hint: its host, or its folder for a ``file://`` URL."""
    parts = urlsplit(url)
    if parts.scheme.lower() == "file":
        return str(PurePosixPath(unquote(parts.path)).parent)
    return parts.netloc or url


def _reason(exc: Exception) -> str:
    """What one source answered, without its URL."""
    return exc.reason if isinstance(exc, DownloadError) else getattr(exc, "message", str(exc))


def _answer(exc: Exception) -> str:
    """What a source answered, in a few words (``HTTP 404 Not Found``, ``refused the connection``...)."""
    if isinstance(exc, IntegrityError):
        return "served other bytes"
    reason = _reason(exc)
    lowered = reason.lower()
    if lowered.startswith("http "):
        return "answered " + reason.split(" (")[0]
    if "refused" in lowered:
        return "refused the connection"
    if any(word in lowered for word in ("name or service not known", "name resolution", "nodename nor servname", "getaddrinfo", "no such host")):
        return "has an unknown host name"
    if "timeout" in lowered or "timed out" in lowered:
        return "timed out"
    if lowered.startswith("no such file"):
        return "has no such file"
    return "failed (" + reason.split(": ")[0] + ")"


def _mirror_advice(mirror_failures: list[Exception]) -> str:
    """What to do when the mirrors were tried and failed, by what the first mirror answered."""
    first = mirror_failures[0] if mirror_failures else None
    if isinstance(first, IntegrityError):
        return "the mirror's copy differs from the original: replace it, or fix the [mirrors] setting"
    if isinstance(first, DownloadError) and (first.missing or _reason(first).startswith("no such file")):
        return "copy the file to the mirror, or fix its path in the [mirrors] setting"
    return "check that the mirror is up and reachable from here, or fix the [mirrors] setting"


def _describe(exc: BaseException) -> str:
    """A short text for a network exception, without urllib3's object reprs."""
    cause = _cause(exc)
    return re.sub(r"(?:<[^<>]*>|\w+\(host=[^()]*\)):\s*", "", str(cause)) or type(cause).__name__


class Fetcher:
    """Downloads URLs into sinks: one HTTP session, retries, resume, mirrors, progress.

    :param mirrors: URL prefix -> replacement prefixes, tried in order
        before the original URL (the longest matching prefix wins)
    :param connect_timeout: seconds to wait for a connection
    :param read_timeout: seconds to wait for data (between two reads)
    :param retries: attempts after the first, per source, on transient failures
    :param offline: never touch the network: :meth:`fetch` raises
        :class:`~datamaestro.errors.OfflineError`
    :param progress: show a progress bar on stderr (``None``: when stderr
        is a terminal)
    :param backoff: the first wait between attempts, in seconds; it doubles
        at each attempt (at most :data:`MAX_DELAY`)

    Example::

        with Fetcher(retries=2) as fetcher:
            sink = BytesSink()
            result = fetcher.fetch("https://example.org/data.csv", sink,
                                   checkers=[SizeCheck(1024)])
    """

    def __init__(
        self,
        *,
        mirrors: dict[str, list[str]] | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        retries: int = 5,
        offline: bool = False,
        progress: bool | None = None,
        backoff: float = 0.5,
    ):
        from .settings import normalise_mirrors

        self.mirrors = normalise_mirrors({prefix: [targets] if isinstance(targets, str) else list(targets) for prefix, targets in (mirrors or {}).items()})
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.retries = retries
        self.offline = offline
        self.progress = progress
        self.backoff = backoff
        self._session = None

    # -- session
    @property
    def session(self):
        """The ``requests.Session`` of this fetcher, created on first use."""
        if self._session is None:
            import requests

            session = requests.Session()
            session.headers["User-Agent"] = f"datamaestro/{_version()}"
            # Sizes and digests are those of the file itself, never of a
            # compressed transfer encoding of it
            session.headers["Accept-Encoding"] = "identity"
            session.max_redirects = MAX_REDIRECTS
            self._session = session
        return self._session

    def close(self) -> None:
        """Closes the HTTP session (its pooled connections)."""
        if self._session is not None:
            self._session.close()
            self._session = None

    def __enter__(self) -> "Fetcher":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- sources
    def candidates(self, url: str) -> list[str]:
        """The URLs to try for ``url``, in order: its mirrors, then itself.

        Example: with ``mirrors={"https://a.org/": ["file:///srv/a/"]}``,
        ``candidates("https://a.org/x.gz")`` is
        ``["file:///srv/a/x.gz", "https://a.org/x.gz"]``.
        """
        matching = [prefix for prefix in self.mirrors if url.startswith(prefix)]
        result = []
        if matching:
            prefix = max(matching, key=len)
            result = [target + url[len(prefix) :] for target in self.mirrors[prefix]]
        return list(dict.fromkeys(result + [url]))

    def mirrors_of(self, url: str) -> list[str]:
        """The mirror URLs tried for ``url`` before it (what ``datamaestro info`` shows), in order."""
        return [candidate for candidate in self.candidates(url) if candidate != url]

    def local_candidates(self, url: str) -> list[str]:
        """The sources of ``url`` on this machine (``file://``): what offline mode may still read."""
        return [candidate for candidate in self.candidates(url) if _is_local(candidate)]

    # -- downloads
    def fetch(self, url: str, sink: Sink, *, checkers: Sequence["Checker"] = (), description: str | None = None) -> FetchResult:
        """Downloads ``url`` into ``sink``, checking the raw bytes.

        :param url: an ``http://``, ``https://`` or ``file://`` URL
        :param sink: receives the raw bytes (``reset`` when starting over)
        :param checkers: checks on the raw bytes, verified at the end
        :param description: the progress bar's label (default: the file name)
        :raises OfflineError: in offline mode, before any network access
        :raises DownloadError: when no source could serve the URL
        :raises IntegrityError: when the original URL's bytes fail a check
        """
        candidates = self.candidates(url)
        if self.offline:
            # a folder of this machine is not the network: file:// mirrors still serve
            candidates = self.local_candidates(url)
            if not candidates:
                raise OfflineError([url])
        show = self.progress if self.progress is not None else bool(sys.stderr and sys.stderr.isatty())
        failures: list[tuple[str, Exception]] = []
        with ProgressBar(show, description or _file_name(url)) as progress:
            stream = _Stream(sink, checkers, progress)
            for candidate in candidates:
                stream.reset()
                is_mirror = candidate != url
                try:
                    served_by = self._transfer(candidate, stream)
                    label = f"{candidate} (mirror of {url})" if is_mirror else url
                    for state in stream.states:
                        state.verify(label)
                except IntegrityError as exc:
                    # A bad mirror must not hide a good original
                    if not is_mirror:
                        raise
                    failures.append((candidate, exc))
                except DownloadError as exc:
                    failures.append((candidate, exc))
                else:
                    return FetchResult(
                        url=url if is_mirror else served_by,
                        size=stream.received,
                        source_digest=stream.digest,
                        served_by=served_by,
                    )
        raise self._all_failed(url, failures)

    def _all_failed(self, url: str, failures: list[tuple[str, Exception]]) -> DatamaestroError:
        """The error of a URL no source could serve: each source tried, what it answered, and a hint that knows the mirrors."""
        if self.offline and all(candidate != url for candidate, _ in failures):
            error = OfflineError([url])
            tried = "; ".join(f"{candidate}: {_reason(exc)}" for candidate, exc in failures)
            error.hint = f"its file:// mirror could not serve it ({tried}); " + (error.hint or "")
            return error
        if len(failures) == 1:
            return failures[0][1]
        listing = "\n".join(
            f"  - {'original' if candidate == url else 'mirror'} {candidate}: {_reason(exc)}" for candidate, exc in failures
        )
        mirrors = [(candidate, exc) for candidate, exc in failures if candidate != url]
        answers = ", ".join(f"the mirror {_host(candidate)} {_answer(exc)}" for candidate, exc in mirrors)
        original = next((exc for candidate, exc in failures if candidate == url), None)
        if original is not None:
            answers += f", and the original URL {_answer(original)}"
        return DownloadError(
            f"cannot download {url} from any of its {len(failures)} sources:\n{listing}",
            hint=f"{answers}: {_mirror_advice([exc for _, exc in mirrors])} (`datamaestro info ID` shows the mirrors of each URL)",
            missing=all(isinstance(exc, DownloadError) and exc.missing for _, exc in failures),
        )

    def _transfer(self, url: str, stream: _Stream) -> str:
        """Streams one source into ``stream``; returns the URL that served it."""
        scheme = urlsplit(url).scheme.lower()
        if scheme == "file":
            return self._transfer_file(url, stream)
        if scheme not in ("http", "https"):
            raise _failure(
                url,
                f"unsupported URL scheme {scheme!r}",
                "datamaestro downloads http://, https:// and file:// URLs: download the file by hand, or set a mirror in settings ([mirrors])",
            )
        attempt = 0
        while True:
            try:
                return self._attempt(url, stream)
            except _Retry as exc:
                if attempt >= self.retries:
                    tries = f" (gave up after {attempt + 1} attempts)" if attempt else ""
                    raise _failure(url, exc.reason + tries, exc.hint) from None
                delay = max(self.backoff * 2**attempt, exc.retry_after or 0.0)
                time.sleep(min(delay, MAX_DELAY))
                attempt += 1

    def _transfer_file(self, url: str, stream: _Stream) -> str:
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise _failure(url, f"file:// URLs on another host ({parts.netloc}) are not supported", "use a local path: file:///path/to/file")
        from urllib.request import url2pathname

        path = Path(url2pathname(parts.path))
        try:
            with path.open("rb") as fp:
                stream.set_total(path.stat().st_size)
                while chunk := fp.read(CHUNK_SIZE):
                    stream.feed(chunk)
        except FileNotFoundError:
            raise _failure(url, f"no such file {path}", "check the path (or the file:// mirror in settings [mirrors])") from None
        except IsADirectoryError:
            raise _failure(url, f"{path} is a folder, not a file", "point the URL at a file") from None
        except PermissionError:
            raise _failure(url, f"no permission to read {path}", "check the file's permissions") from None
        return url

    def _attempt(self, url: str, stream: _Stream) -> str:
        """One HTTP request: resumes from ``stream.received``; raises _Retry on transient failures."""
        import requests
        import urllib3

        headers = {"Range": f"bytes={stream.received}-"} if stream.received else {}
        try:
            response = self.session.get(url, headers=headers, stream=True, timeout=(self.connect_timeout, self.read_timeout))
        except requests.RequestException as exc:
            raise self._request_error(url, exc) from None
        with response:
            self._check_status(url, response, stream)
            skip = self._body_start(response, stream)
            chunks = response.raw.stream(CHUNK_SIZE, decode_content=False)
            while True:
                try:
                    chunk = next(chunks, None)
                except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as exc:
                    raise self._broken(exc, stream) from None
                if chunk is None:
                    break
                if skip:
                    # The server ignored Range: drop what we already have
                    if len(chunk) <= skip:
                        skip -= len(chunk)
                        continue
                    chunk, skip = chunk[skip:], 0
                stream.feed(chunk)
            if skip or (stream.total is not None and stream.received < stream.total):
                total = stream.total if stream.total is not None else "?"
                raise _Retry(f"truncated body: received {stream.received} of {total} bytes", TRUNCATED_HINT)
            return response.url

    def _request_error(self, url: str, exc: Exception) -> Exception:
        """Classifies an error raised before the body: a _Retry or a final DownloadError."""
        import requests

        if isinstance(exc, requests.TooManyRedirects):
            return _failure(
                url,
                f"too many redirects (more than {MAX_REDIRECTS}): the server redirects in a loop",
                "check the URL in a browser; if the server is broken, set a mirror in settings ([mirrors])",
            )
        if isinstance(exc, requests.exceptions.SSLError):
            return _failure(
                url,
                f"TLS/SSL error: {_describe(exc)}",
                "the server's certificate is not trusted here: check the system's CA certificates (REQUESTS_CA_BUNDLE) or the URL",
            )
        if isinstance(exc, requests.ConnectTimeout):
            return _Retry(f"connection timeout: no connection within {self.connect_timeout:g} s")
        if isinstance(exc, requests.ReadTimeout):
            return _Retry(f"read timeout: no answer within {self.read_timeout:g} s", "the server is slow: try again later, or raise read_timeout in settings")
        if isinstance(exc, (requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
            return _Retry(f"connection failed: {_describe(exc)}")
        return _failure(url, f"invalid request: {_describe(exc)}", "check the URL")

    def _broken(self, exc: Exception, stream: _Stream) -> _Retry:
        """Classifies an error met while reading the body (always worth a retry)."""
        import urllib3

        cause = _cause(exc)
        if isinstance(cause, (urllib3.exceptions.ReadTimeoutError, TimeoutError)):
            return _Retry(
                f"read timeout: no data for {self.read_timeout:g} s after {stream.received} bytes",
                "the server is slow: try again later, or raise read_timeout in settings",
            )
        if stream.total is not None:
            return _Retry(
                f"truncated body: connection lost after {stream.received} of {stream.total} bytes ({_describe(exc)})",
                TRUNCATED_HINT,
            )
        return _Retry(f"connection lost after {stream.received} bytes ({_describe(exc)})", TRUNCATED_HINT)

    @staticmethod
    def _check_status(url: str, response, stream: _Stream) -> None:
        """Raises on an HTTP error status: _Retry when it may pass, DownloadError when not."""
        status = response.status_code
        if status < 300:
            return
        reason = f"HTTP {status} {response.reason or ''}".rstrip()
        if response.url and response.url != url:
            reason += f" (redirected to {response.url})"
        if status in RETRY_STATUSES or status >= 500:
            retry_after = _integer(response.headers.get("Retry-After"))
            raise _Retry(reason, "the server has trouble: try again later, or set a mirror in settings ([mirrors])", retry_after)
        if status == 416 and stream.received:
            # The server cannot resume from where we are: start over
            stream.reset()
            raise _Retry(f"the server refused to resume the download ({reason})")
        if status in (404, 410):
            hint = DEAD_HINT
        elif status in (401, 403, 407, 451):
            hint = DENIED_HINT
        else:
            hint = "the server refused the request: check the URL, or set a mirror in settings ([mirrors])"
        # the URL serves nothing (as opposed to a server that fails): a copy elsewhere may
        raise _failure(url, reason, hint, missing=status in (404, 410))

    @staticmethod
    def _body_start(response, stream: _Stream) -> int:
        """Reads the size and range of a response; returns how many bytes of it to skip."""
        offset = stream.received
        length = _integer(response.headers.get("Content-Length"))
        if response.status_code == 206:
            start, total = _content_range(response.headers.get("Content-Range"))
            if start is None or start > offset:
                stream.reset()
                raise _Retry(f"the server answered a resume request with an unexpected range ({response.headers.get('Content-Range')})")
            skip = offset - start
            if total is None and length is not None:
                total = start + length
        else:
            # A 200 to a Range request: the server sends the whole file again
            skip = offset
            total = length
        if offset and None not in (total, stream.total) and total != stream.total:
            # The file changed on the server between two attempts: what we have is stale
            stream.reset()
            if response.status_code == 206:
                raise _Retry("the file changed on the server during the download")
            skip = 0
        stream.set_total(total)
        return skip
