"""The progress bar of downloads on a terminal (rich, imported on first use), with the log lines kept above it."""

from __future__ import annotations

import logging
import sys
import threading


class ProgressBar:
    """A rich progress bar on stderr, or nothing at all when disabled.

    Downloads that run at once (the independent resources of a dataset)
    share one live display, one line each: rich allows one at a time.
    """

    #: the live display shared by the bars of this process, and how many bars use it
    _shared = None
    _users = 0
    _redirected: list = []
    _lock = threading.Lock()

    def __init__(self, enabled: bool, description: str):
        self.enabled = enabled
        self.description = description
        self._bar = None
        self._task = None

    def __enter__(self) -> "ProgressBar":
        if self.enabled:
            cls = ProgressBar
            with cls._lock:
                if cls._shared is None:
                    from rich.console import Console
                    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

                    cls._shared = Progress(
                        TextColumn("{task.description}"),
                        BarColumn(),
                        DownloadColumn(),
                        TransferSpeedColumn(),
                        TimeRemainingColumn(),
                        console=Console(stderr=True),
                    )
                    cls._shared.start()
                    cls._redirected = _redirect_logs()
                cls._users += 1
                self._bar = cls._shared
                self._task = self._bar.add_task(self.description, total=None)
        return self

    def __exit__(self, *exc_info) -> None:
        if self._bar is None:
            return
        cls = ProgressBar
        with cls._lock:
            cls._users -= 1
            if cls._users:
                # the others go on: this line stays, complete, until the display stops
                return
            for handler, stream in cls._redirected:
                handler.setStream(stream)
            cls._redirected = []
            cls._shared.stop()
            cls._shared = None

    def note(self, text: str | None) -> None:
        """Shows what is going on next to the label (``retrying in 4 s``); None clears it."""
        if self._bar is not None:
            label = f"{self.description} [{text}]" if text else self.description
            self._bar.update(self._task, description=label)

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


def _redirect_logs() -> list:
    """Sends the log lines written to the terminal above the live bar, instead of through it.

    rich replaces ``sys.stderr`` by a proxy that prints above the live
    bar; the log handlers made before the bar still hold the real stderr,
    and are pointed at the proxy while the bar lives. Returns (handler,
    former stream) pairs, to restore.
    """
    proxy = sys.stderr
    if proxy is sys.__stderr__:
        return []  # rich did not redirect (not a terminal)
    return [
        (handler, handler.setStream(proxy))
        for handler in logging.getLogger().handlers
        if isinstance(handler, logging.StreamHandler) and handler.stream is sys.__stderr__
    ]
