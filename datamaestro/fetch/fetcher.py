"""The fetcher: :class:`Fetcher` streams a URL into a sink, with retries, resume, parallel parts, mirrors and a progress bar."""

from __future__ import annotations

import errno
import logging
import re
import socket
import sys
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol, Sequence
from urllib.parse import unquote, urlsplit

from ..errors import DatamaestroError, DownloadError, IntegrityError, OfflineError
from .failures import DEAD_HINT, DENIED_HINT, TIMEOUT_HINT, TRUNCATED_HINT, UNREACHABLE_ERRNOS, UNREACHABLE_HINT, _answer, _cause, _describe, _failure, _host, _mirror_advice, _reason
from .health import HostHealth, host_of
from .partial import PART_CHECKPOINT, PART_MIN, PartialDownload
from .progress import ProgressBar
from .retry import MAX_DELAY, PACE_BYTES, RETRY_STATUSES, _NoRanges, _Pace, _Retry, _SlowHead, _get_within
from .sinks import CHUNK_SIZE, FetchResult, Sink



class CheckState(Protocol):
    """One check running over the raw bytes of one download."""

    def update(self, data: bytes) -> None:
        """Reads the next bytes."""

    def verify(self, url: str) -> None:
        """Raises an :class:`~datamaestro.errors.IntegrityError` when the bytes read do not pass."""


class Checker(Protocol):
    """A check on the raw bytes of a download, as the fetcher runs it (:class:`datamaestro.download.checks.Checker` is one).

    A protocol rather than an import: the checks are resources' declarations,
    above the fetcher that runs them.
    """

    def start(self) -> CheckState:
        """A fresh state for one download."""

logger = logging.getLogger(__name__)

MAX_REDIRECTS = 20


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("datamaestro")
    except PackageNotFoundError:
        return "2.0.0"


@dataclass
class _Position:
    """Where a part stands, for the messages of a broken transfer."""

    received: int
    total: int | None


class _Stream:
    """The raw bytes of one download, kept in step across the hasher, checkers, sink and bar."""

    def __init__(self, sink: Sink, checkers: Sequence["Checker"], progress: ProgressBar):
        self.sink = sink
        self.checkers = checkers
        self.progress = progress
        self.dirty = False
        #: where the raw bytes are kept for a later run (None: not kept)
        self.partial: PartialDownload | None = None
        #: the server refused the ranges of a parallel download: one stream from now on
        self.single = False
        self._fresh()

    def _fresh(self) -> None:
        from blake3 import blake3

        self.hasher = blake3()
        self.states = [checker.start() for checker in self.checkers]
        self.received = 0
        #: the size announced by the server, once known
        self.total: int | None = None
        #: bytes kept by an earlier run, not yet confirmed by the server (If-Range)
        self.carried = 0
        #: some of the bytes were kept by an earlier run (see FetchResult.resumed); a reset starts from byte 0
        self.resumed = False

    def feed(self, chunk: bytes, *, keep: bool = True, show: bool = True) -> None:
        """One raw chunk: hashed, checked, written, counted (and kept for a later run unless ``keep`` is false).

        ``show=False``: the progress bar counted these bytes already (the parts of a parallel download).
        """
        self.hasher.update(chunk)
        for state in self.states:
            state.update(chunk)
        self.dirty = True
        self.sink.write(chunk)
        if keep and self.partial is not None:
            self.partial.append(chunk)
        self.received += len(chunk)
        if show:
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
        if self.partial is not None:
            self.partial.truncate()
        self._fresh()
        self.progress.reset()

    def resume(self) -> None:
        """Feeds the bytes an earlier run kept (when they can be confirmed with the server)."""
        partial = self.partial
        length = partial.resumable() if partial is not None else 0
        if not length:
            return
        for chunk in partial.read(length):
            self.feed(chunk, keep=False)
        partial.seek(length)
        self.carried = length
        self.set_total(partial.meta["size"])
        logger.info("resuming %s at byte %d of %d (kept by an earlier run)", partial.meta["url"], length, partial.meta["size"])

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


def _is_local(url: str) -> bool:
    """A ``file://`` URL of this machine (no network involved)."""
    parts = urlsplit(url)
    return parts.scheme.lower() == "file" and parts.netloc in ("", "localhost")


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
    :param timeout: the longest a source may go without sending a byte,
        retries and their waits included, before it is given up (and its
        host left out for the session)
    :param hosts: the hosts found down, shared by the fetchers of a session
        (default: this fetcher's own)
    :param connections: connections of a parallel download (1: never split)
    :param parallel_min_size: files at least this large (bytes), from a
        server that serves ranges, are downloaded in parts over
        ``connections`` connections (when the fetch keeps a partial file)

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
        read_timeout: float = 20.0,
        retries: int = 5,
        offline: bool = False,
        progress: bool | None = None,
        backoff: float = 0.5,
        timeout: float = 60.0,
        hosts: HostHealth | None = None,
        connections: int = 8,
        parallel_min_size: int = 64 << 20,
    ):
        from ..settings import normalise_mirrors

        self.mirrors = normalise_mirrors({prefix: [targets] if isinstance(targets, str) else list(targets) for prefix, targets in (mirrors or {}).items()})
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.retries = retries
        self.offline = offline
        self.progress = progress
        self.backoff = backoff
        self.timeout = timeout
        self.hosts = hosts if hosts is not None else HostHealth()
        self.connections = connections
        self.parallel_min_size = parallel_min_size
        self._local = threading.local()
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

    @contextmanager
    def cancellable(self, event: threading.Event, creation_lock=None):
        """Within the block, downloads of this thread stop at the next chunk once ``event`` is set.

        They stop as a Ctrl-C would (``KeyboardInterrupt``): what was
        received is kept for a later run. The pipeline uses it for the
        downloads it runs in threads, which signals do not reach.

        :param creation_lock: held from the check of ``event`` to the
            creation of a partial download's files, and by whoever sweeps
            them when the process stops (the store's ``TMP_CREATION``), so
            that no file is created after that sweep
        """
        former = getattr(self._local, "cancel", None), getattr(self._local, "creation_lock", None)
        self._local.cancel, self._local.creation_lock = event, creation_lock
        try:
            yield
        finally:
            self._local.cancel, self._local.creation_lock = former

    def _check_cancel(self) -> None:
        event = getattr(self._local, "cancel", None)
        if event is not None and event.is_set():
            raise KeyboardInterrupt("download cancelled")

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
    def fetch(
        self, url: str, sink: Sink, *, checkers: Sequence["Checker"] = (), description: str | None = None, partial_dir: Path | None = None
    ) -> FetchResult:
        """Downloads ``url`` into ``sink``, checking the raw bytes.

        :param url: an ``http://``, ``https://`` or ``file://`` URL
        :param sink: receives the raw bytes (``reset`` when starting over)
        :param checkers: checks on the raw bytes, verified at the end
        :param description: the progress bar's label (default: the file name)
        :param partial_dir: where the raw bytes of an interrupted download are
            kept, so that a later run resumes it (:class:`PartialDownload`);
            None: not kept
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
                why_down = self.hosts.down(candidate) if urlsplit(candidate).scheme.lower() in ("http", "https") else None
                if why_down is not None:
                    reason = f"left out: {host_of(candidate)} failed for another download of this session ({why_down})"
                    logger.debug("%s: %s", candidate, reason)
                    failures.append((candidate, _failure(candidate, reason, UNREACHABLE_HINT)))
                    continue
                # a cancelled thread creates no partial file (the process cleaning up would miss it)
                creation_lock = getattr(self._local, "creation_lock", None)
                with creation_lock or nullcontext():
                    self._check_cancel()
                    stream.partial = PartialDownload.open(partial_dir, candidate, creation_lock)
                # kept for a later run when the network failed or the user stopped us; bytes
                # that fail a check, a source that has no such file, a full disk: not worth it
                keep = False
                try:
                    try:
                        served_by = self._transfer_verified(candidate, url, stream)
                    except DownloadError as exc:
                        keep = not exc.missing
                        raise
                    except (KeyboardInterrupt, SystemExit):
                        keep = True
                        raise
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
                        resumed=stream.resumed,
                    )
                finally:
                    if stream.partial is not None:
                        stream.partial.close(keep=keep)
                        stream.partial = None
        raise self._all_failed(url, failures)

    def fetch_range(self, url: str, start: int, end: int) -> bytes | None:
        """Bytes ``start`` to ``end`` (excluded) of ``url``, in one ranged GET; None when the server has no such file.

        A server that ignores ``Range`` sends the whole file: its first
        ``end`` bytes are read (never more), and the range cut from them. Fewer bytes than asked come back
        when the file is shorter. No mirrors, no retries: the caller (a
        remote cache) has other sources.

        :raises OfflineError: in offline mode
        :raises DownloadError: the server failed, or could not be reached
        """
        if self.offline:
            raise OfflineError([url])
        self._check_cancel()
        try:
            response = self.session.get(url, headers={"Range": f"bytes={start}-{end - 1}"}, stream=True, timeout=(self.connect_timeout, self.read_timeout))
        except Exception as exc:  # requests' own classes: imported lazily
            raise _failure(url, f"{type(exc).__name__}: {exc}"[:300], UNREACHABLE_HINT) from None
        with response:
            if response.status_code in (404, 410):
                return None
            if response.status_code == 416:
                return b""
            if response.status_code == 206:
                first, _ = _content_range(response.headers.get("Content-Range"))
                if first != start:
                    raise _failure(url, f"asked for bytes {start}-{end - 1}, answered {response.headers.get('Content-Range')}", UNREACHABLE_HINT)
                bound, skip = end - start, 0
            elif response.status_code == 200:
                bound, skip = end, start  # the whole file, read up to the range's end only
            else:
                raise _failure(url, f"the server answered {response.status_code}", UNREACHABLE_HINT)
            data = bytearray()
            try:
                for chunk in response.iter_content(1 << 16):
                    data += chunk
                    self._check_cancel()
                    if len(data) >= bound:
                        break
            except Exception as exc:
                raise _failure(url, f"{type(exc).__name__}: {exc}"[:300], UNREACHABLE_HINT) from None
            return bytes(data[skip:bound])

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

    def _transfer_verified(self, candidate: str, url: str, stream: _Stream) -> str:
        """Streams one source and verifies the checks; returns the URL that served it.

        A resumed download whose whole fails a check is downloaded again
        from byte 0, once: the bytes kept by the earlier run may be stale.
        """
        stream.resume()
        resumed = bool(stream.carried or (stream.partial is not None and stream.partial.meta.get("parts")))
        stream.resumed = resumed
        label = f"{candidate} (mirror of {url})" if candidate != url else url
        try:
            served_by = self._transfer(candidate, stream)
            for state in stream.states:
                state.verify(label)
        except IntegrityError as exc:
            if not resumed:
                raise
            logger.warning("%s: the resumed download fails its check (%s): downloading it again from the start", label, exc.message)
            stream.reset()
            served_by = self._transfer(candidate, stream)
            for state in stream.states:
                state.verify(label)
        return served_by

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
        if stream.partial is not None and stream.partial.meta.get("parts"):
            # an earlier run downloaded parts of it: fetch the others
            served_by = self._parallel(url, stream, stream.partial.meta["size"])
            if served_by is not None:
                return served_by
        attempt = 0
        # the budget of `timeout` seconds runs while the source sends nothing
        quiet_since, received = time.monotonic(), stream.received
        while True:
            try:
                remaining = self.timeout - (time.monotonic() - quiet_since)
                return self._attempt(url, stream, max(remaining, 0.05))
            except _Retry as exc:
                if stream.received != received:
                    quiet_since, received = time.monotonic(), stream.received
                self._pause(url, exc, attempt, quiet_since, stream.progress)
                attempt += 1

    def _pause(self, url: str, exc: _Retry, attempt: int, quiet_since: float, progress: ProgressBar, what: str = "") -> None:
        """Waits before the next try of a transient failure (saying so), or gives up with a DownloadError.

        Gives up after ``retries`` tries, or when the source would have sent
        nothing for ``timeout`` seconds by the next try; a source given up
        for timeouts leaves its host out for the session.
        """
        delay = min(max(self.backoff * 2**attempt, exc.retry_after or 0.0), MAX_DELAY)
        quiet = time.monotonic() - quiet_since
        why_down = self.hosts.down(url)
        if why_down is not None:
            # another download of the session (a thread beside this one) found the host down meanwhile
            raise _failure(url, f"{exc.reason}; left out: {host_of(url)} failed meanwhile ({why_down})", exc.hint) from None
        if attempt >= self.retries or quiet + delay >= self.timeout:
            tries = f" (gave up after {attempt + 1} attempts" + (f", {quiet:.0f} s without data)" if quiet >= 1 else ")") if attempt else ""
            if exc.timeout:
                self.hosts.mark_down(url, "no answer in time")
            raise _failure(url, exc.reason + tries, exc.hint) from None
        logger.info("retrying %s%s (%d/%d) in %g s: %s", host_of(url), what, attempt + 2, self.retries + 1, delay, exc.reason)
        progress.note(f"retrying in {delay:g} s: {exc.reason}")
        time.sleep(delay)
        progress.note(None)

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

    def _attempt(self, url: str, stream: _Stream, budget: float) -> str:
        """One HTTP request: resumes from ``stream.received``; raises _Retry on transient failures.

        :param budget: seconds left to this source before it is given up (caps the timeouts)
        """
        import requests
        import urllib3

        headers = {"Range": f"bytes={stream.received}-"} if stream.received else {}
        if stream.carried and stream.partial is not None and stream.partial.validator():
            # bytes of an earlier run: the server sends the rest only if the file is the same
            headers["If-Range"] = stream.partial.validator()
        timeouts = (min(self.connect_timeout, budget), min(self.read_timeout, budget))
        try:
            response = _get_within(self.session, url, timeouts[0] + budget, headers=headers, stream=True, timeout=timeouts)
        except requests.RequestException as exc:
            raise self._request_error(url, exc, timeouts) from None
        except _SlowHead:
            raise self._slow_head(url, budget) from None
        with response:
            self._check_status(url, response, stream)
            skip = self._body_start(response, stream)
            if self._splits(response, stream):
                response.close()
                served_by = self._parallel(response.url, stream, stream.total)
                if served_by is not None:
                    return served_by
                return self._attempt(url, stream, budget)  # in one stream, from byte 0
            pace = _Pace(self.timeout)
            while True:
                try:
                    # what has arrived, at once: a body dripping a byte at a time is seen (and cut) as it drips
                    chunk = response.raw.read1(CHUNK_SIZE, decode_content=False)
                except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as exc:
                    raise self._broken(exc, stream, timeouts[1]) from None
                if not chunk:
                    break
                self._check_cancel()
                if not pace.advance(len(chunk)):
                    self.hosts.mark_down(url, "too slow")
                    raise _failure(
                        url,
                        f"too slow: fewer than {PACE_BYTES // 1024} KiB in {self.timeout:.3g} s after {stream.received} bytes (a body sent drop by drop)",
                        TIMEOUT_HINT,
                    )
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

    # -- parallel range downloads
    def _splits(self, response, stream: _Stream) -> bool:
        """True when a fresh download is large enough, and served with ranges, to be fetched in parts."""
        return (
            self.connections > 1
            and stream.partial is not None
            and not stream.single
            and stream.received == 0
            and response.status_code == 200
            and response.headers.get("Accept-Ranges", "").strip().lower() == "bytes"
            and stream.total is not None
            and stream.total >= max(self.parallel_min_size, 2 * PART_MIN)
        )

    def _parallel(self, url: str, stream: _Stream, size: int) -> str | None:
        """Downloads ``url`` in parts over ``connections`` connections, into the partial file at their offsets.

        Each part is retried on its own; parts finished by an earlier run are
        kept. Once every part is there the whole file is read back through
        the hash, the checks and the sink (transforms stream from it).
        Returns the URL that served it, or None when the server does not
        serve ranges after all (the caller falls back to one stream).
        """
        import queue

        import requests
        from requests.adapters import HTTPAdapter

        partial = stream.partial
        meta = partial.meta
        if not meta.get("parts"):
            part_size = max(PART_MIN, -(-size // (self.connections * 4)))
            partial.start_parts(size, part_size)
            logger.info("downloading %s in %d parts over %d connections", url, -(-size // part_size), self.connections)
        part_size = partial.meta["parts"]["size"]
        done = set(partial.meta["parts"]["done"])
        pending: queue.Queue = queue.Queue()
        kept: dict[int, int] = {}
        for index in range(-(-size // part_size)):
            if index not in done:
                kept[index] = partial.part_kept(index, min(part_size, size - index * part_size))
                pending.put(index)
        stream.set_total(size)
        already = sum(min(part_size, size - index * part_size) for index in done) + sum(kept.values())
        stream.progress.advance(already)
        if already:
            started = sum(1 for count in kept.values() if count)
            logger.info("resuming %s: %d of %d parts kept by an earlier run, %d more begun (%d of %d bytes)", url, len(done), -(-size // part_size), started, already, size)

        session = requests.Session()
        session.headers.update(self.session.headers)
        session.max_redirects = MAX_REDIRECTS
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=self.connections)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        stop = threading.Event()
        errors: list[BaseException] = []

        def work() -> None:
            while not stop.is_set():
                try:
                    index = pending.get_nowait()
                except queue.Empty:
                    return
                start = index * part_size
                try:
                    self._part(session, url, partial, index, start, min(size, start + part_size) - 1, size, stream.progress, stop, kept[index])
                except BaseException as exc:  # handed to the main thread
                    errors.append(exc)
                    stop.set()
                    return

        workers = [threading.Thread(target=work, name=f"part {n}", daemon=True) for n in range(min(self.connections, pending.qsize()))]
        try:
            for worker in workers:
                worker.start()
            for worker in workers:
                while worker.is_alive():
                    worker.join(0.1)  # wakes up for Ctrl-C and SIGTERM
                    self._check_cancel()
        except BaseException:
            stop.set()  # the finished parts are recorded: the next run resumes them
            for worker in workers:
                worker.join(1.0)
            self._checkpoint(partial)  # and how far each other part got
            raise
        finally:
            session.close()
        refusal = next((e for e in errors if isinstance(e, _NoRanges)), None)
        if refusal is not None:
            logger.info("%s: %s: downloading in one stream", url, refusal)
            stream.reset()
            stream.single = True
            return None
        if errors:
            self._checkpoint(partial)
            raise errors[0]
        # the whole, read back: hashed, checked, and through the transforms into the sink
        for chunk in partial.read(size):
            stream.feed(chunk, keep=False, show=False)
        return url

    @staticmethod
    def _checkpoint(partial: "PartialDownload") -> None:
        """Records the parts' progress on the way out; a failure to record only costs a later run some bytes."""
        try:
            partial.checkpoint()
        except (OSError, ValueError) as exc:
            logger.debug("cannot record the parts of %s: %s", partial.url, exc)

    def _part(
        self, session, url: str, partial: "PartialDownload", index: int, start: int, end: int, size: int, progress: ProgressBar, stop: threading.Event, kept: int = 0
    ) -> None:
        """Downloads bytes ``start..end`` (inclusive) into the partial file, with retries of its own.

        ``kept``: bytes from ``start`` an earlier run left on disk; the part resumes after them.
        """
        import requests
        import urllib3

        offset, attempt = start + kept, 0
        unrecorded = 0
        quiet_since = time.monotonic()
        validator = partial.validator()
        while not stop.is_set():
            before = offset
            try:
                budget = max(self.timeout - (time.monotonic() - quiet_since), 0.05)
                timeouts = (min(self.connect_timeout, budget), min(self.read_timeout, budget))
                headers = {"Range": f"bytes={offset}-{end}"}
                if validator:
                    headers["If-Range"] = validator
                try:
                    response = _get_within(session, url, timeouts[0] + budget, headers=headers, stream=True, timeout=timeouts)
                except requests.RequestException as exc:
                    raise self._request_error(url, exc, timeouts) from None
                except _SlowHead:
                    raise self._slow_head(url, budget) from None
                with response:
                    if response.status_code == 200:
                        raise _NoRanges("the server answered a range with the whole file (it changed, or it serves no ranges)")
                    self._check_status(url, response, _Position(0, None))
                    first, total = _content_range(response.headers.get("Content-Range"))
                    if first != offset or (total is not None and total != size):
                        raise _NoRanges(f"the server answered bytes {offset}-{end} with {response.headers.get('Content-Range')}")
                    # what has arrived, not a full CHUNK_SIZE: a Ctrl-C loses no bytes that were received
                    pace = _Pace(self.timeout)
                    while offset <= end and not stop.is_set():
                        try:
                            chunk = response.raw.read1(CHUNK_SIZE, decode_content=False) or None
                        except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as exc:
                            raise self._broken(exc, _Position(offset - start, end + 1 - start), timeouts[1]) from None
                        if chunk is None or stop.is_set():
                            break  # stopped: the file may be closed already
                        if not pace.advance(len(chunk)):
                            self.hosts.mark_down(url, "too slow")
                            raise _failure(url, f"too slow: part {index} brought fewer than {PACE_BYTES // 1024} KiB in {self.timeout:.3g} s (a body sent drop by drop)", TIMEOUT_HINT)
                        chunk = chunk[: end + 1 - offset]
                        partial.write_at(offset, chunk)
                        offset += len(chunk)
                        partial.part_received(index, offset - start)
                        progress.advance(len(chunk))
                        unrecorded += len(chunk)
                        if unrecorded >= PART_CHECKPOINT:
                            self._checkpoint(partial)
                            unrecorded = 0
                if stop.is_set():
                    return
                if offset <= end:
                    raise _Retry(f"truncated body: part {index} received {offset - start} of {end + 1 - start} bytes", TRUNCATED_HINT)
                partial.part_done(index)
                return
            except _Retry as exc:
                if offset != before:
                    quiet_since = time.monotonic()
                self._pause(url, exc, attempt, quiet_since, progress, f" part {index}")
                attempt += 1

    def _slow_head(self, url: str, budget: float) -> DownloadError:
        """The final failure of a server whose answer's head did not come whole in time (not retried: the host is left out)."""
        self.hosts.mark_down(url, "too slow")
        return _failure(url, f"too slow: no complete answer (status and headers) within {budget:.3g} s (headers sent drop by drop)", TIMEOUT_HINT)

    def _request_error(self, url: str, exc: Exception, timeouts: tuple[float, float]) -> Exception:
        """Classifies an error raised before the body: a _Retry or a final DownloadError.

        A host name that does not resolve and a connection refused or
        unreachable are final at once (another try meets them again), and
        the host is remembered as down; timeouts and broken connections are
        worth a retry.
        """
        import requests
        import urllib3

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
            return _Retry(f"connection timeout: no connection within {timeouts[0]:.3g} s", TIMEOUT_HINT, timeout=True)
        if isinstance(exc, requests.ReadTimeout):
            return _Retry(f"read timeout: no answer within {timeouts[1]:.3g} s", TIMEOUT_HINT, timeout=True)
        cause = _cause(exc)
        host = urlsplit(url).hostname or url
        unreachable = None
        if isinstance(cause, (urllib3.exceptions.NameResolutionError, socket.gaierror)):
            unreachable = f"the host name {host} does not resolve (no DNS answer: no network, or a wrong name)"
        elif isinstance(cause, urllib3.exceptions.NewConnectionError) or (isinstance(cause, OSError) and cause.errno in UNREACHABLE_ERRNOS):
            inner = (cause.__cause__ or cause.__context__) if isinstance(cause, urllib3.exceptions.NewConnectionError) else cause
            code = getattr(inner, "errno", None)
            if code == errno.ECONNREFUSED or "refused" in str(cause).lower():
                unreachable = f"{host} refused the connection (nothing listens on {urlsplit(url).port or 'the default port'})"
            elif code in (errno.ENETUNREACH, errno.EHOSTUNREACH) or "unreachable" in str(cause).lower():
                unreachable = f"{host} is unreachable (no route: no network?)"
            else:
                unreachable = f"cannot connect to {host} ({_describe(exc)})"
        if unreachable is not None:
            self.hosts.mark_down(url, unreachable)
            return _failure(url, f"connection failed: {unreachable}", UNREACHABLE_HINT)
        if isinstance(exc, (requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
            return _Retry(f"connection failed: {_describe(exc)}")
        return _failure(url, f"invalid request: {_describe(exc)}", "check the URL")

    def _broken(self, exc: Exception, stream: _Stream, read_timeout: float) -> _Retry:
        """Classifies an error met while reading the body (always worth a retry)."""
        import urllib3

        cause = _cause(exc)
        if isinstance(cause, (urllib3.exceptions.ReadTimeoutError, TimeoutError, socket.timeout)):
            return _Retry(f"read timeout: no data for {read_timeout:.3g} s after {stream.received} bytes", TIMEOUT_HINT, timeout=True)
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
        elif stream.carried:
            # A 200 to If-Range: the file changed since the earlier run (or ranges are not served)
            logger.info("%s changed on the server since the earlier run (or it serves no ranges): downloading it whole", response.url)
            stream.reset()
            offset = skip = 0
            total = length
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
            offset = 0
        stream.carried = 0
        stream.set_total(total)
        if stream.partial is not None and offset == 0:
            headers = response.headers
            stream.partial.start(total, headers.get("ETag"), headers.get("Last-Modified"))
        return skip
