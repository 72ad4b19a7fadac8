"""A real HTTP server for tests and benchmarks, with per-path fault injection.

:class:`ControlledServer` serves the files of a folder on 127.0.0.1 (random
port, one thread per connection), honours ``Range`` and ``If-Range`` requests (files carry an ``ETag`` and a
``Last-Modified`` from their mtime and size, as nginx gives), records every
request and misbehaves on demand::

    with ControlledServer(root) as server:
        (server.root / "a.gz").write_bytes(data)
        server.set_fault("a.gz", "500", times=2)   # two 500s, then the file
        url = server.url("a.gz")
        ...
        assert server.count("a.gz") == 3
        server.sent_bytes("a.gz")   # bytes of body written, over every request

Faults (``set_fault(path, kind, times=None, **params)``; ``times`` is how many
requests the fault applies to, ``None`` for all of them):

- ``"404"``, ``"500"``, ``"503"``... (any status code): answer with it;
  ``"500-then-200"`` is ``"500"`` with ``times=1`` by default;
  ``retry_after=<seconds>`` adds a Retry-After header
- ``"truncate"``: announce the full Content-Length, send ``fraction``
  (default 0.5) of the body, close
- ``"reset"``: send ``after`` bytes of the body (default: no response at
  all), wait a little so that the client reads them, then reset the
  connection (TCP RST)
- ``"slow"``: wait ``delay`` seconds (default 2) before answering
- ``"wrong-bytes"``: serve ``content`` (default: the file with every byte
  changed, same size) instead of the file
- ``"redirect"``: redirect (``status``, default 302) to ``to``, a path of
  this server or a URL
- ``"redirect-loop"``: redirect to the same path, forever
- ``"no-range"``: ignore ``Range`` headers (always 200 and the whole file);
  it combines with the faults above
- ``"throttle"``: send the body in pieces of ``chunk`` bytes (default
  16 KiB) with a pause of ``pause`` seconds (default 0.02) after each, so
  that a client can be killed in the middle of a body; it combines with the
  faults above

The fixture :func:`http_server` gives a started server on a fresh folder.
"""

from __future__ import annotations

import email.utils
import http.server
import re
import socket
import struct
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

import pytest

# Faults that change a response; "no-range" only modifies how the file is served
_ACTIONS = {"truncate", "reset", "slow", "wrong-bytes", "redirect", "redirect-loop"}
_MODIFIERS = {"no-range", "throttle"}
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")
# Every byte changed, so that "wrong-bytes" keeps the size but not the content
_GARBLE = bytes((i + 1) % 256 for i in range(256))


@dataclass
class Fault:
    """One fault on one path.

    :param kind: what goes wrong (see the module documentation)
    :param times: how many more requests it applies to (``None``: all)
    :param params: the fault's parameters
    """

    kind: str
    times: int | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def take(self) -> bool:
        """True when the fault applies to this request (and counts it)."""
        if self.times is None:
            return True
        if self.times <= 0:
            return False
        self.times -= 1
        return True


def _normalize(path: str) -> str:
    return "/" + unquote(urlsplit(path).path).lstrip("/")


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without this, Nagle and
    # delayed ACKs add 40 ms to every small response
    disable_nagle_algorithm = True
    server: "_Server"

    def setup(self) -> None:
        super().setup()
        self.server.owner._register(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.server.owner._unregister(self.connection)

    def log_message(self, format: str, *args) -> None:
        """Quiet: tests read ``server.requests`` instead."""

    def do_GET(self) -> None:
        try:
            self.server.owner._serve(self)
        except OSError:
            # The client hung up (or a fault closed the socket): drop the connection
            self.close_connection = True

    do_HEAD = do_GET


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    # stop() closes the connections and joins their threads itself, with a timeout
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, owner: "ControlledServer"):
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request, client_address) -> None:
        """Quiet: a client that hangs up is part of the tests."""


class ControlledServer:
    """Serves the files of ``root`` over HTTP on 127.0.0.1, with faults on demand.

    :param root: the folder served (default: a new temporary folder,
        removed on :meth:`stop`)

    Use as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(self, root: Path | str | None = None):
        self._tmp = None if root is not None else tempfile.TemporaryDirectory(prefix="httpserver-")
        self.root = Path(root if root is not None else self._tmp.name)
        #: every request received: (method, path, headers)
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        #: bytes of body written to the network, per path (what a client cost the server)
        self.sent: dict[str, int] = {}
        self._faults: dict[str, list[Fault]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle
    def start(self) -> "ControlledServer":
        """Starts serving in a background thread."""
        self._stopping.clear()
        self._server = _Server(self)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True, name="httpserver")
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops serving: open connections are closed and their threads joined."""
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            connections = dict(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in connections.values():
            thread.join(timeout=2)
        self._thread.join(timeout=2)
        self._server = None
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> "ControlledServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # -- what tests use
    @property
    def port(self) -> int:
        """The port the server listens on."""
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        """The URL of a path of the served folder."""
        return f"{self.base_url}/{path.lstrip('/')}"

    def count(self, path: str) -> int:
        """How many requests (any method) were made for ``path``."""
        path = _normalize(path)
        with self._lock:
            return sum(1 for _, p, _ in self.requests if p == path)

    def sent_bytes(self, path: str) -> int:
        """How many bytes of body were written for ``path`` (received or not by the client)."""
        with self._lock:
            return self.sent.get(_normalize(path), 0)

    def _count_sent(self, path: str, count: int) -> None:
        with self._lock:
            self.sent[path] = self.sent.get(path, 0) + count

    def requests_for(self, path: str) -> list[tuple[str, str, dict[str, str]]]:
        """The requests made for ``path``, in order."""
        path = _normalize(path)
        with self._lock:
            return [r for r in self.requests if r[1] == path]

    def set_fault(self, path: str, kind: str, *, times: int | None = None, **params) -> None:
        """Makes requests for ``path`` misbehave (see the module documentation).

        Setting a fault of a kind already set on the path replaces it.
        Example: ``server.set_fault("a.gz", "500", times=2)``.
        """
        if kind == "500-then-200":
            kind, times = "500", 1 if times is None else times
        if kind not in _ACTIONS | _MODIFIERS and not (kind.isdigit() and len(kind) == 3):
            raise ValueError(f"unknown fault {kind!r}")
        path = _normalize(path)
        with self._lock:
            faults = [f for f in self._faults.get(path, []) if f.kind != kind]
            faults.append(Fault(kind, times, params))
            self._faults[path] = faults

    def clear_faults(self, path: str | None = None) -> None:
        """Removes the faults of ``path`` (default: of every path)."""
        with self._lock:
            if path is None:
                self._faults.clear()
            else:
                self._faults.pop(_normalize(path), None)

    # -- serving
    def _register(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections[connection] = threading.current_thread()

    def _unregister(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.pop(connection, None)

    def _faults_for(self, path: str) -> tuple[Fault | None, dict[str, dict[str, Any]]]:
        """The action fault that applies to this request, and the active modifiers with their parameters."""
        action = None
        modifiers = {}
        with self._lock:
            for fault in self._faults.get(path, []):
                if fault.kind in _MODIFIERS:
                    if fault.take():
                        modifiers[fault.kind] = fault.params
                elif action is None and fault.take():
                    action = fault
        return action, modifiers

    def _serve(self, handler: _Handler) -> None:
        path = _normalize(handler.path)
        with self._lock:
            self.requests.append((handler.command, path, dict(handler.headers.items())))
        fault, modifiers = self._faults_for(path)
        kind = fault.kind if fault else None
        params = fault.params if fault else {}

        if kind == "slow":
            if self._stopping.wait(params.get("delay", 2.0)):
                handler.close_connection = True
                return
        elif kind and kind.isdigit():
            headers = {"Retry-After": str(params["retry_after"])} if "retry_after" in params else {}
            return self._status(handler, int(kind), headers)
        elif kind in ("redirect", "redirect-loop"):
            target = path if kind == "redirect-loop" else params["to"]
            location = urljoin(self.base_url + "/", target.lstrip("/")) if "://" not in target else target
            return self._status(handler, params.get("status", 302), {"Location": location})
        elif kind == "reset" and params.get("after") is None:
            return self._reset(handler)

        file = self._file(path)
        if file is None:
            return self._status(handler, 404)
        content = None
        if kind == "wrong-bytes":
            content = params.get("content")
            if content is None:
                content = file.read_bytes().translate(_GARBLE)
        size = len(content) if content is not None else file.stat().st_size

        # validators as nginx gives them, so that a client can resume safely (If-Range)
        stat = file.stat()
        etag = f'"{stat.st_mtime_ns:x}-{size:x}"'
        last_modified = email.utils.formatdate(stat.st_mtime, usegmt=True)
        start, end = 0, size - 1
        requested = handler.headers.get("Range")
        condition = handler.headers.get("If-Range")
        if condition is not None and condition not in (etag, last_modified):
            requested = None  # the file changed: the whole file, 200
        partial = requested is not None and "no-range" not in modifiers
        if partial:
            match = _RANGE.match(requested.strip())
            if match is None or int(match.group(1)) >= size:
                return self._status(handler, 416, {"Content-Range": f"bytes */{size}"})
            start = int(match.group(1))
            if match.group(2):
                end = min(int(match.group(2)), size - 1)
        length = end - start + 1

        handler.send_response(206 if partial else 200)
        handler.send_header("Content-Type", "application/octet-stream")
        handler.send_header("Content-Length", str(length))
        handler.send_header("Accept-Ranges", "none" if "no-range" in modifiers else "bytes")
        handler.send_header("ETag", etag)
        handler.send_header("Last-Modified", last_modified)
        if partial:
            handler.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        if kind in ("truncate", "reset"):
            handler.send_header("Connection", "close")
            handler.close_connection = True
        handler.end_headers()
        if handler.command == "HEAD":
            return

        count = length
        if kind == "truncate":
            count = int(length * params.get("fraction", 0.5))
        elif kind == "reset":
            count = min(length, params["after"])
        if "throttle" in modifiers:
            self._send_throttled(handler, path, content, file, start, count, modifiers["throttle"])
        elif content is not None:
            handler.wfile.write(content[start : start + count])
            self._count_sent(path, count)
        elif count > 0:  # sendfile() reads a count of 0 as "up to the end"
            with file.open("rb") as fp:
                self._count_sent(path, handler.connection.sendfile(fp, start, count))
        if kind == "reset":
            # Give the client time to read what was sent: an RST drops unread data
            self._stopping.wait(params.get("pause", 0.2))
            self._reset(handler)

    def _send_throttled(self, handler: _Handler, path: str, content: bytes | None, file: Path, start: int, count: int, params: dict) -> None:
        """Sends ``count`` bytes from ``start`` in small pieces, pausing after each one."""
        if content is None:
            with file.open("rb") as fp:
                fp.seek(start)
                content, start = fp.read(count), 0
        chunk = params.get("chunk", 16 * 1024)
        for offset in range(start, start + count, chunk):
            piece = content[offset : min(offset + chunk, start + count)]
            handler.wfile.write(piece)
            handler.wfile.flush()
            self._count_sent(path, len(piece))
            if self._stopping.wait(params.get("pause", 0.02)):
                return

    def _file(self, path: str) -> Path | None:
        candidate = (self.root / path.lstrip("/")).resolve()
        root = self.root.resolve()
        if candidate != root and root not in candidate.parents:
            return None
        return candidate if candidate.is_file() else None

    @staticmethod
    def _status(handler: _Handler, status: int, headers: dict[str, str] | None = None) -> None:
        body = f"{status} {http.server.BaseHTTPRequestHandler.responses.get(status, ('',))[0]}\n".encode()
        handler.send_response(status)
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.send_header("Content-Type", "text/plain")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(body)

    @staticmethod
    def _reset(handler: _Handler) -> None:
        """Closes the connection with a TCP RST (SO_LINGER 0) instead of a FIN."""
        handler.close_connection = True
        connection = handler.connection
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        connection.close()


class BlackHole:
    """A TCP server on 127.0.0.1 that accepts connections and never answers (a hung server).

    :ivar accepted: how many connections it accepted
    """

    def __init__(self):
        self.accepted = 0
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(64)
        self._held: list[socket.socket] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True, name="blackhole")
        self._thread.start()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self._socket.getsockname()[1]}"

    def url(self, path: str) -> str:
        """A URL of this server."""
        return f"{self.base_url}/{path.lstrip('/')}"

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            self.accepted += 1
            self._held.append(connection)  # kept open, never read nor written

    def stop(self) -> None:
        """Closes the listening socket and every held connection."""
        self._stopping.set()
        try:
            self._socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._socket.close()
        for connection in self._held:
            connection.close()
        self._thread.join(timeout=2)

    def __enter__(self) -> "BlackHole":
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


@pytest.fixture
def black_hole():
    """A started :class:`BlackHole`."""
    with BlackHole() as server:
        yield server


@pytest.fixture
def http_server(tmp_path_factory):
    """A started :class:`ControlledServer` serving a fresh folder (``server.root``)."""
    with ControlledServer(tmp_path_factory.mktemp("http")) as server:
        yield server


__all__ = ["BlackHole", "ControlledServer", "Fault", "black_hole", "http_server"]
