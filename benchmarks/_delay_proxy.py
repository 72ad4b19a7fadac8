"""A TCP proxy that adds a fixed latency to every round trip: a far S3 endpoint on 127.0.0.1.

This kernel has no ``netem``; a request to S3 over the Internet costs 20–50
ms of latency, one to a SeaweedFS server on 127.0.0.1 nearly nothing. Put
this proxy in front of the server's port and every request/response round
trip costs ``delay`` more: each byte is forwarded ``delay / 2`` seconds
after it arrived, in each direction, in order. Bandwidth is not limited
(chunks already in flight do not wait for each other), only latency is
added, as a long link would.

As a context manager (an asyncio loop on a thread of its own)::

    with DelayProxy(("127.0.0.1", 8333), delay=0.020) as proxy:
        endpoint = f"http://127.0.0.1:{proxy.port}"

or from a shell: ``python -m benchmarks._delay_proxy 127.0.0.1:8333 --delay-ms 20``.
"""

from __future__ import annotations

import argparse
import asyncio
import threading

#: bytes read from a socket at a time
CHUNK = 1 << 16


class DelayProxy:
    """Listens on 127.0.0.1 (:attr:`port`) and forwards to ``upstream`` with ``delay`` seconds per round trip."""

    def __init__(self, upstream: tuple[str, int], delay: float = 0.020, port: int = 0):
        self.upstream = upstream
        self.delay = delay
        self.port = port
        #: connections accepted so far
        self.connections = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copies ``reader`` to ``writer``, each chunk released ``delay / 2`` after it arrived."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()

        async def send() -> None:
            while True:
                due, data = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if data is None:
                    break
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()

        sender = asyncio.ensure_future(send())
        try:
            while data := await reader.read(CHUNK):
                queue.put_nowait((loop.time() + self.delay / 2, data))
        except (ConnectionError, OSError):
            pass
        queue.put_nowait((loop.time() + self.delay / 2, None))
        try:
            await sender
        except (ConnectionError, OSError):
            pass

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(self._forward(client_reader, server_writer), self._forward(server_reader, client_writer))
        for writer in (client_writer, server_writer):
            writer.close()

    async def _serve(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        async with self._server:
            await self._server.serve_forever()

    def start(self) -> "DelayProxy":
        """Starts the proxy on a thread of its own; returns once it listens."""
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(self._serve())
            except asyncio.CancelledError:
                pass

        self._thread = threading.Thread(target=run, name="delay proxy", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        return self

    def stop(self) -> None:
        """Stops listening and drops the connections."""
        if self._loop is not None and self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
            for task in asyncio.all_tasks(self._loop):
                self._loop.call_soon_threadsafe(task.cancel)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> "DelayProxy":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def main() -> None:
    """``python -m benchmarks._delay_proxy HOST:PORT [--delay-ms 20] [--port 0]``: runs until Ctrl-C."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("upstream", help="HOST:PORT to forward to")
    parser.add_argument("--delay-ms", type=float, default=20.0, help="added to every round trip (default 20)")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: any free one)")
    args = parser.parse_args()
    host, _, port = args.upstream.rpartition(":")
    with DelayProxy((host, int(port)), args.delay_ms / 1000, args.port) as proxy:
        print(f"http://127.0.0.1:{proxy.port} -> {args.upstream}, +{args.delay_ms:g} ms per round trip", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
