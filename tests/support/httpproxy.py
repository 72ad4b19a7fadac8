"""A TCP proxy in front of an HTTP server (an S3 endpoint) that sees each request, for tests.

It counts the requests that pass (method and path), and can hold one: the
first request that ``hold`` matches has its head and half of its body sent
on, then nothing more, and :attr:`HttpProxy.held` is set; the client waits
for an answer that never comes (a test then kills it with ``kill -9``, in
the middle of an upload). Responses pass through untouched::

    with HttpProxy(server_port) as proxy:
        proxy.hold = lambda method, path: method == "PUT" and path.endswith(".idx")
        ...
        proxy.held.wait(60)

Requests are parsed only as far as their framing (``Content-Length`` or
chunked): what S3 clients send.
"""

from __future__ import annotations

import socket
import threading
from typing import Callable


class HttpProxy:
    """Forwards 127.0.0.1:<:attr:`port`> to ``127.0.0.1:upstream``, counting and maybe holding requests."""

    def __init__(self, upstream: int):
        self.upstream = upstream
        self.requests: list[tuple[str, str]] = []
        #: (method, path) -> True for the request to hold (the first one only)
        self.hold: Callable[[str, str], bool] | None = None
        self.held = threading.Event()
        self._lock = threading.RLock()  # ``hold`` may call :meth:`count`
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._sockets: list[socket.socket] = []
        self._stopped = False

    @property
    def port(self) -> int:
        return self._listener.getsockname()[1]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def count(self, predicate: Callable[[str, str], bool] = lambda method, path: True) -> int:
        """How many requests that passed match ``predicate(method, path)``."""
        with self._lock:
            return sum(1 for method, path in self.requests if predicate(method, path))

    def start(self) -> "HttpProxy":
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopped = True
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                try:
                    sock.close()
                except OSError:
                    pass

    def __enter__(self) -> "HttpProxy":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream))
            with self._lock:
                self._sockets += [client, upstream]
            threading.Thread(target=self._requests, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(1 << 16):
                target.sendall(data)
        except OSError:
            pass
        for sock in (source, target):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _requests(self, client: socket.socket, upstream: socket.socket) -> None:
        buffer = bytearray()

        def fill(needed: int) -> bool:
            while len(buffer) < needed:
                data = client.recv(1 << 16)
                if not data:
                    return False
                buffer.extend(data)
            return True

        def take(count: int) -> bytes:
            data = bytes(buffer[:count])
            del buffer[:count]
            return data

        try:
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = client.recv(1 << 16)
                    if not data:
                        raise OSError("closed")
                    buffer.extend(data)
                head = take(buffer.index(b"\r\n\r\n") + 4)
                lines = head.decode("latin-1").split("\r\n")
                method, path = lines[0].split(" ")[:2]
                headers = {line.split(":", 1)[0].strip().lower(): line.split(":", 1)[1].strip() for line in lines[1:] if ":" in line}
                body = bytearray()
                if headers.get("transfer-encoding", "").lower() == "chunked":
                    while True:
                        while b"\r\n" not in buffer:
                            if not fill(len(buffer) + 1):
                                raise OSError("closed")
                        size_line = take(buffer.index(b"\r\n") + 2)
                        size = int(size_line.split(b";")[0], 16)
                        if not fill(size + 2):
                            raise OSError("closed")
                        body += size_line + take(size + 2)
                        if size == 0:
                            break
                else:
                    length = int(headers.get("content-length", "0") or 0)
                    if not fill(length):
                        raise OSError("closed")
                    body += take(length)
                with self._lock:
                    self.requests.append((method, path))
                    hold = self.hold is not None and not self.held.is_set() and self.hold(method, path)
                if hold:
                    upstream.sendall(head + bytes(body[: len(body) // 2]))
                    self.held.set()
                    while client.recv(1 << 16):
                        pass  # until the client goes (killed): the upload stays half-sent
                    raise OSError("held")
                upstream.sendall(head + bytes(body))
        except (OSError, ValueError, IndexError):
            for sock in (client, upstream):
                try:
                    sock.close()
                except OSError:
                    pass
