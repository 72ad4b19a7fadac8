"""Inter-process locks on the store, safe across machines sharing it over NFS.

A lock is a ``filelock.FileLock`` (``fcntl``/``flock``; on a Linux NFS client
these become POSIX locks held by the server's lock manager, so they hold
across machines when the store is mounted *with* locking — not ``nolock``).
Next to it the holder writes who it is, so that a waiting process can say
whom it waits for. A lock of a dead process is released by the kernel (or,
over NFS, by the lock manager); the holder note it leaves is only a note.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from pathlib import Path

from ..errors import LockTimeoutError
from .objects import HOST, Layout, disk_error


def describe_holder(note: Path) -> str:
    """A human description of the process that wrote a holder note."""
    try:
        data = json.loads(note.read_text())
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(data["time"]))
        return f"process {data['pid']} on {data['host']} ({data['what']}, since {since})"
    except (OSError, ValueError, KeyError, TypeError):
        return "an unknown process"


@contextmanager
def store_lock(layout: Layout, name: str, *, timeout: float, what: str):
    """Holds the store lock ``name`` for the duration of a ``with`` block.

    :param name: a file name (recipe keys are turned into one)
    :param timeout: seconds to wait before giving up
    :param what: what the holder does, shown to waiting processes
    :raises LockTimeoutError: when the lock is still held after ``timeout``
    """
    from filelock import FileLock, Timeout

    safe = name.replace(":", "-").replace("/", "_")
    path = layout.locks / f"{safe}.lock"
    note = layout.locks / f"{safe}.holder"
    lock = FileLock(str(path), mode=0o666 if layout.shared else 0o644)
    try:
        layout.mkdir(layout.locks)
        lock.acquire(timeout=timeout)
    except Timeout:  # an OSError too: caught first
        raise LockTimeoutError(
            f"timed out after {timeout:.0f}s waiting for {describe_holder(note)} to finish {what}",
            hint="wait for it to finish; if it is dead, its lock is released by the system and the next try proceeds",
        ) from None
    except OSError as exc:
        # the lock file cannot be created: a full disk, a store one may only read
        raise disk_error(exc, f"taking the lock for {what}") from None
    try:
        try:
            note.write_text(json.dumps({"host": HOST, "pid": os.getpid(), "time": time.time(), "what": what}))
        except OSError:
            pass  # the note is informative only
        yield
    finally:
        try:
            note.unlink(missing_ok=True)
        except OSError:
            pass
        lock.release()
