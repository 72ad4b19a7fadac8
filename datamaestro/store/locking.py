"""Inter-process locks on the store: a local lock, then a lease that other machines see.

A store lock is two things, taken in this order:

1. an ``flock`` on a lock file (opened without following a link, and used
   only when it is a plain file: see :func:`_open_lock_file`): processes of
   one machine wait for it, polling every :data:`POLL_INTERVAL`; a dead
   holder's lock is released by the kernel. Next to it the holder writes who
   it is (under a private name, then renamed), so that a waiting process
   can say whom it waits for.
2. a lease (:mod:`datamaestro.store.leases`), made with ``mkdir``: it works
   where ``flock`` does not cross machines (NFS ``nolock``, Lustre without
   ``flock``, FUSE file systems). Only the process holding the local lock
   polls it, so the other processes of its machine cost nothing.

Neither is needed for correctness (objects are content-addressed and
renamed into place): they only keep work from being done twice.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import stat
import time
from contextlib import contextmanager
from pathlib import Path

from ..errors import LockTimeoutError
from . import leases
from .integrity import owner_name
from .layout import HOST, Layout, disk_error, read_regular, write_aside

logger = logging.getLogger(__name__)


#: how often a waiting process tries the local lock again (seconds)
POLL_INTERVAL = 0.05


def describe_holder(note: Path) -> str:
    """A human description of the process that wrote a holder note (read without following a link).

    In a group store the note may be another member's: its owner's user name
    is said, so that a note planted by a member is traced back to it.
    """
    try:
        raw, st = read_regular(note, limit=4096)
        data = json.loads(raw)
        # the time of day as leases say it; the date too when it is not today
        today = time.strftime("%Y-%m-%d") == time.strftime("%Y-%m-%d", time.localtime(data["time"]))
        since = time.strftime("%H:%M:%S" if today else "%Y-%m-%d %H:%M:%S", time.localtime(data["time"]))
        user = "" if st.st_uid == os.geteuid() else f" of user {owner_name(st.st_uid)}"
        return f"process {data['pid']} on {data['host']}{user} ({data['what']}, since {since})"
    except (OSError, ValueError, KeyError, TypeError, OverflowError):
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


class PlantedLockFile(Exception):
    """The lock file is not one this process may lock safely: a link, a special file, a hard link, or unreadable."""

    def __init__(self, path: Path, why: str):
        super().__init__(why)
        self.path = path
        self.why = why


def _open_lock_file(path: Path, mode: int) -> int:
    """Opens (creating it) the lock file, never through a link, and checks it is a plain file of its own.

    A lock file is only ever locked, never written: even so, a descriptor
    of another file (a member's planted link or hard link) must not be held.

    :raises PlantedLockFile: the name holds what no process of datamaestro makes
    :raises OSError: the lock file cannot be created (full disk, read-only store)
    """
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags, mode)
    except PermissionError as refused:
        # an existing lock file of another member in a sticky folder: O_CREAT
        # may be refused (protected_regular); open it as it is
        if not os.path.lexists(path):
            raise  # a folder this user may not write: a store one may only read
        try:
            fd = os.open(path, flags & ~os.O_CREAT & ~os.O_RDWR | os.O_RDONLY)
        except OSError as exc:
            if os.path.lexists(path):
                raise PlantedLockFile(path, f"this user may not open it ({exc.strerror})") from None
            raise refused from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise PlantedLockFile(path, "it is a symbolic link") from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        os.close(fd)
        raise PlantedLockFile(path, "it is a special file" if not stat.S_ISREG(st.st_mode) else "it is a hard link to another file")
    if st.st_mode & 0o777 != mode and st.st_uid == os.geteuid():
        with contextlib.suppress(OSError):
            os.fchmod(fd, mode)  # whatever the umask: every member takes the same lock
    return fd


def _planted(layout: Layout, error: PlantedLockFile, what: str) -> None:
    """Says that a lock file cannot be used, and whose it is; the lease alone keeps work from being done twice."""
    try:
        owner = owner_name(os.lstat(error.path).st_uid)
    except OSError:
        owner = "?"
    logger.warning(
        "the lock file %s cannot be used (%s; it belongs to %s): %s goes on with the store's lease alone "
        "(ask %s or the store's owner to remove it)", error.path, error.why, owner, what, owner,
    )


@contextmanager
def _local_lock(layout: Layout, name: str, *, timeout: float, what: str):
    """The ``flock`` of this machine's processes, with a note naming its holder."""
    import fcntl

    safe = leases.safe_name(name)
    path = layout.locks / f"{safe}.lock"
    note = layout.locks / f"{safe}.holder"
    fd = None
    try:
        layout.mkdir(layout.locks)
        fd = _open_lock_file(path, 0o666 if layout.shared else 0o644)
        deadline = time.monotonic() + timeout
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                pass
            if not told:
                # say at once whom we wait for, then wait
                logger.info("waiting for %s", describe_holder(note))
                told = True
            if time.monotonic() >= deadline:
                raise LockTimeoutError(
                    f"timed out after {timeout:.0f}s waiting for {describe_holder(note)} to finish {what}",
                    hint="wait for it to finish; if it is dead, its lock is released by the system and the next try proceeds",
                )
            time.sleep(POLL_INTERVAL)
    except PlantedLockFile as planted:
        _planted(layout, planted, what)
        fd = None
    except OSError as exc:
        if fd is not None:
            os.close(fd)
        # the lock file cannot be created: a full disk, a store one may only read
        raise disk_error(exc, f"taking the lock for {what}") from None
    except BaseException:  # a timeout, a signal while waiting
        if fd is not None:
            os.close(fd)
        raise
    if fd is None:
        yield
        return
    wrote = False
    try:
        try:
            # written under a private name, then renamed: never through a link a member planted
            write_aside(note, json.dumps({"host": HOST, "pid": os.getpid(), "time": time.time(), "what": what}).encode(), 0o644)
            wrote = True
        except OSError as exc:
            logger.debug("cannot write the holder note %s: %s", note, exc)  # informative only
        yield
    finally:
        try:
            if wrote:
                note.unlink(missing_ok=True)
        except OSError:
            pass
        os.close(fd)  # releases the flock
