"""Inter-process locks on the store: a local lock, then a lease that other machines see.

A store lock is two things, taken in this order:

1. a ``filelock.FileLock`` (``flock``): processes of one machine queue in the
   kernel and wake up at once when the holder is done; a dead holder's lock
   is released by the kernel. Next to it the holder writes who it is, so
   that a waiting process can say whom it waits for.
2. a lease (:mod:`datamaestro.store.leases`), made with ``mkdir``: it works
   where ``flock`` does not cross machines (NFS ``nolock``, Lustre without
   ``flock``, FUSE file systems). Only the process holding the local lock
   polls it, so the other processes of its machine cost nothing.

Neither is needed for correctness (objects are content-addressed and
renamed into place): they only keep work from being done twice.
"""

from __future__ import annotations

import json
import logging
import os
import time
from contextlib import contextmanager
from pathlib import Path

from ..errors import LockTimeoutError
from . import leases
from .objects import HOST, Layout, disk_error

logger = logging.getLogger(__name__)


def describe_holder(note: Path) -> str:
    """A human description of the process that wrote a holder note."""
    try:
        data = json.loads(note.read_text())
        # the time of day as leases say it; the date too when it is not today
        today = time.strftime("%Y-%m-%d") == time.strftime("%Y-%m-%d", time.localtime(data["time"]))
        since = time.strftime("%H:%M:%S" if today else "%Y-%m-%d %H:%M:%S", time.localtime(data["time"]))
        return f"process {data['pid']} on {data['host']} ({data['what']}, since {since})"
    except (OSError, ValueError, KeyError, TypeError):
        return "an unknown process"


@contextmanager
def store_lock(layout: Layout, name: str, *, timeout: float, what: str, lease_ttl: float = leases.DEFAULT_TTL):
    """Holds the store lock ``name`` for the duration of a ``with`` block, on every machine.

    :param name: a file name (recipe keys are turned into one)
    :param timeout: seconds to wait, in all, before giving up
    :param what: what the holder does, shown to waiting processes
    :param lease_ttl: seconds without a heartbeat after which the lease of a
        holder on another machine is taken as dead
    :raises LockTimeoutError: when the lock is still held after ``timeout``
    """
    deadline = time.monotonic() + timeout
    with _local_lock(layout, name, timeout=timeout, what=what):
        remaining = max(0.0, deadline - time.monotonic())
        with leases.acquire(layout, name, ttl=lease_ttl, timeout=remaining, what=what):
            yield


@contextmanager
def _local_lock(layout: Layout, name: str, *, timeout: float, what: str):
    """The ``flock`` of this machine's processes, with a note naming its holder."""
    from filelock import FileLock, Timeout

    safe = leases.safe_name(name)
    path = layout.locks / f"{safe}.lock"
    note = layout.locks / f"{safe}.holder"
    lock = FileLock(str(path), mode=0o666 if layout.shared else 0o644)
    try:
        layout.mkdir(layout.locks)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            # say at once whom we wait for, then wait
            logger.info("waiting for %s", describe_holder(note))
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
