"""Leases: who is producing what, on a store shared by machines whose file locks do not meet.

flock/fcntl locks are not shared between the clients of many shared file
systems (NFS mounted ``nolock`` or without a lock manager, Lustre without
``flock``, most FUSE file systems), and ``O_CREAT|O_EXCL`` is not atomic
across them either. A lease uses what is atomic everywhere: ``mkdir``.

- **Taking** a lease is ``mkdir leases/<name>``; the winner writes who it
  is (host, pid, what, since) in a ``holder`` file inside.
- **Keeping** it: a heartbeat thread touches the folder every ``ttl / 5``
  seconds.
- **Expiry** compares the folder's mtime with the *file system's* clock (a
  probe file this process touches and reads back), never with the local
  clock, so that machines whose clocks disagree agree on what is stale. A
  holder of this very host whose process is gone is expired at once.
- **Breaking** an expired lease is serialised by a second ``mkdir``
  (``<name>.break``): the breaker checks again that the lease is the one it
  judged dead, renames it away and removes it, then takes its own.

A lease exists so that work is not done twice; correctness never depends
on it (objects are content-addressed and written to ``tmp/`` then renamed).
A holder that stalls beyond the ttl may see its lease broken: the work is
then done twice, and both copies are the same bytes.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import json
import logging
import os
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import LockTimeoutError, StoreError
from .layout import CREATE_NEW, HOST, SHARED_LEASE_DIR_MODE, Layout, _pid_alive, disk_error, read_regular, remove_tree

logger = logging.getLogger(__name__)

#: seconds without a heartbeat after which a lease is expired (setting ``lease_ttl``)
DEFAULT_TTL = 30.0
HOLDER = "holder"
BREAK_SUFFIX = ".break"
#: polling of a waiter: first delay, growth, and the longest delay (bounded by ttl / 4)
FIRST_POLL, POLL_GROWTH, LONGEST_POLL = 0.02, 1.5, 0.5


@dataclass(frozen=True)
class LeaseInfo:
    """What a lease says of its holder, and how old its last heartbeat is on the file system's clock."""

    name: str
    host: str
    pid: int
    what: str
    since: float
    age: float
    #: when the lease was taken, on the file system's clock (what ``store gc`` compares entries with)
    started: float = 0.0
    #: the user owning the lease folder (-1: unknown)
    uid: int = -1

    @property
    def mine(self) -> bool:
        """True for a lease this very process holds."""
        return self.host == HOST and self.pid == os.getpid()

    def describe(self) -> str:
        """``process 1234 on node-a (downloading x, since 12:03:10)``."""
        since = time.strftime("%H:%M:%S", time.localtime(self.since)) if self.since else "?"
        # in a group store, whose lease it is (a member could make one that claims anything)
        user = ""
        if self.uid >= 0 and self.uid != os.geteuid():
            from .integrity import owner_name

            user = f" of user {owner_name(self.uid)}"
        return f"process {self.pid} on {self.host}{user} ({self.what}, since {since})"


def lease_folder(layout: Layout) -> Path:
    """Where leases live: ``<store>/leases``."""
    return layout.leases


def safe_name(name: str) -> str:
    """A file name for a lease name (recipe keys hold ``:``)."""
    return name.replace(":", "-").replace("/", "_")


def filesystem_now(layout: Layout) -> float:
    """The file system's clock: touches a probe file of this process and reads its mtime back.

    On NFS and most FUSE file systems the server sets the time of a touch;
    comparing lease mtimes with it keeps clock skew between machines out.
    The probe lives in ``tmp/`` under this process's name, so that it is
    reaped with the process's other leftovers. A store this process may not
    write to has no probe: its local clock is then the best there is (it
    takes no lease there either).
    """
    probe = layout.tmp / f"{HOST}.{os.getpid()}.clock"
    # its name can be guessed: opened without following a link, and used
    # only when it is this user's own plain file (not one a member planted)
    flags = os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        try:
            fd = os.open(probe, flags)
        except FileNotFoundError:
            layout.mkdir(layout.tmp)
            fd = os.open(probe, flags | os.O_CREAT | os.O_EXCL, 0o644)
            atexit.register(_unlink_quietly, probe)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
                return time.time()
            os.utime(fd, None)
            return os.fstat(fd).st_mtime
        finally:
            os.close(fd)
    except OSError:
        return time.time()


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def read_lease(path: Path, now: float) -> LeaseInfo | None:
    """The holder of a lease folder and the age of its heartbeat (None when the lease is gone)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISDIR(st.st_mode):
        # no process makes anything but a folder here: a member planted it; expired at once, so that it is broken
        return LeaseInfo(path.name, "?", 0, "an entry that is no lease", 0.0, float("inf"), st.st_mtime, st.st_uid)
    try:
        raw, held = read_regular(path / HOLDER, limit=4096)  # never through a planted link
        data = json.loads(raw)
        host, pid, what, since = str(data["host"]), int(data["pid"]), str(data["what"]), float(data["since"])
        started = held.st_mtime  # written once, when the lease was taken
    except (OSError, ValueError, KeyError, TypeError):
        # taken a moment ago, its holder file not written yet (or the holder died in between)
        host, pid, what, since, started = "?", 0, "starting", 0.0, st.st_mtime
    return LeaseInfo(path.name, host, pid, what, since, max(0.0, now - st.st_mtime), started, st.st_uid)


def live_leases(layout: Layout, ttl: float = DEFAULT_TTL) -> list[LeaseInfo]:
    """Every lease whose heartbeat is younger than ``ttl`` (what ``store gc`` must respect)."""
    folder = lease_folder(layout)
    if not folder.is_dir():
        return []
    now = filesystem_now(layout)
    found = []
    for entry in os.scandir(folder):
        if entry.name.startswith(".") or entry.name.endswith(BREAK_SUFFIX) or not entry.is_dir(follow_symlinks=False):
            continue
        info = read_lease(Path(entry.path), now)
        if info is not None and not _expired(info, ttl):
            found.append(info)
    return found


def _expired(info: LeaseInfo, ttl: float) -> bool:
    """No heartbeat for ``ttl`` seconds, or a holder of this host whose process is gone."""
    if info.age > ttl:
        return True
    return info.host == HOST and info.pid > 0 and info.pid != os.getpid() and not _pid_alive(info.pid)


class Lease:
    """A lease held by this process (see the module documentation); release it with :meth:`release`."""

    def __init__(self, layout: Layout, path: Path, ttl: float):
        self.layout = layout
        self.path = path
        self.ttl = ttl
        self.lost = False
        self._stop = threading.Event()
        self._inode = os.stat(path).st_ino
        self._thread = threading.Thread(target=self._beat, name=f"lease {path.name}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl / 5):
            if not self.refresh():
                return

    def refresh(self) -> bool:
        """Touches the lease; False when it is no longer ours (broken by a waiter who judged us dead)."""
        try:
            # never through a link: the lease folder sits in a folder every member may write
            if os.stat(self.path, follow_symlinks=False).st_ino != self._inode:
                raise FileNotFoundError(self.path)
            os.utime(self.path, None, follow_symlinks=False)
            return True
        except OSError:
            if not self.lost:
                self.lost = True
                logger.warning("lost the lease %s (no heartbeat reached the store for %.0fs?): the work may be done twice", self.path.name, self.ttl)
            return False

    def release(self) -> None:
        """Stops the heartbeat and removes the lease (if it is still ours)."""
        self._stop.set()
        self._thread.join()
        try:
            if os.stat(self.path).st_ino == self._inode:
                _remove_lease(self.layout, self.path)
        except OSError:
            pass  # broken meanwhile: nothing of ours to remove

    def __enter__(self) -> "Lease":
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()


class NoLease:
    """What :func:`acquire` returns when the disk has no room for a lease: nothing to keep or release."""

    lost = False

    def release(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> "NoLease":
        return self

    def __exit__(self, *exc_info) -> None:
        pass


def _remove_lease(layout: Layout, path: Path) -> None:
    """Moves a lease folder out of the way in one rename, then deletes it."""
    tomb = path.with_name(f".{path.name}.{HOST}.{os.getpid()}.{time.monotonic_ns()}")
    try:
        os.rename(path, tomb)
    except OSError:
        return  # gone already (a FUSE loser of the race may get EIO rather than ENOENT)
    remove_tree(tomb)


def acquire(
    layout: Layout,
    name: str,
    *,
    ttl: float = DEFAULT_TTL,
    timeout: float = 3600,
    what: str = "work on the store",
    on_wait: Callable[[LeaseInfo], None] | None = None,
) -> "Lease | NoLease":
    """Takes the lease ``name``, waiting (with back-off) while someone else holds a live one.

    :param ttl: seconds without a heartbeat after which a lease is expired
    :param timeout: seconds to wait before giving up
    :param what: what this process does, shown to the processes that wait for it
    :param on_wait: called once with the holder when this process starts waiting
    :raises LockTimeoutError: a live lease is still held after ``timeout``
    """
    folder = lease_folder(layout)
    path = folder / safe_name(name)
    deadline = time.monotonic() + timeout
    delay = FIRST_POLL
    told = None
    while True:
        try:
            try:
                os.mkdir(path, 0o775 if layout.shared else 0o755)
            except FileNotFoundError:
                layout.mkdir(folder, mode=SHARED_LEASE_DIR_MODE if layout.shared else None)
                continue
            if layout.shared:
                # group-writable whatever the umask: a member breaking it when its holder died removes its note
                with contextlib.suppress(OSError):
                    os.chmod(path, SHARED_LEASE_DIR_MODE)
            _write_holder(layout, path, what)
            return Lease(layout, path, ttl)
        except FileExistsError:
            pass
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                # nothing can be written now: what the work writes fails with the
                # real cause; a lease only keeps work from being done twice
                logger.warning("no room for the lease of %s: going on without it", what)
                return NoLease()
            raise disk_error(exc, f"taking the lease for {what}") from None
        now = filesystem_now(layout)
        holder = read_lease(path, now)
        if holder is None:
            continue  # released meanwhile: try again at once
        if _expired(holder, ttl):
            _break(layout, path, holder, ttl)
            continue
        if told != (holder.host, holder.pid):
            told = (holder.host, holder.pid)
            if on_wait is not None:
                on_wait(holder)
            else:
                logger.info("waiting for %s", holder.describe())
        if time.monotonic() > deadline:
            raise LockTimeoutError(
                f"timed out after {timeout:.0f}s waiting for {holder.describe()} to finish {what}",
                hint=f"wait for it to finish; if it is dead, its lease expires {ttl:.0f}s after its last heartbeat",
            )
        time.sleep(delay)
        delay = min(delay * POLL_GROWTH, LONGEST_POLL, ttl / 4)


#: the name of a working lease starts with this (see :func:`hold_while_working`)
WORKING_PREFIX = "working."


def hold_while_working(layout: Layout, *, ttl: float = DEFAULT_TTL, what: str = "work on the store") -> "Lease | NoLease":
    """A lease of this process alone, held from before it produces outputs until it has published them.

    What a process downloads stays unreachable until its manifest is
    published (view, root marker, readable link); the lease of each download
    is gone by then. ``store gc`` keeps everything younger than the oldest
    live lease of another process, so this lease, taken before the first
    output is produced and released once the publication is done, keeps that
    gc from collecting what the process is about to reference, on whichever
    machine it runs.

    A store this process may not write to gets no lease (it produces nothing
    there either: the production fails with its own message).
    """
    name = f"{WORKING_PREFIX}{HOST}.{os.getpid()}.{time.monotonic_ns()}"
    try:
        return acquire(layout, name, ttl=ttl, timeout=ttl, what=what)
    except StoreError:
        return NoLease()


def reap_expired_working_leases(layout: Layout, ttl: float = DEFAULT_TTL) -> int:
    """Removes the working leases of processes that died holding them; returns how many.

    Nobody waits for a working lease (its name is unique), so no waiter
    breaks it: ``store gc`` does.
    """
    folder = lease_folder(layout)
    if not folder.is_dir():
        return 0
    now = filesystem_now(layout)
    removed = 0
    for entry in os.scandir(folder):
        if not entry.name.startswith(WORKING_PREFIX) or entry.name.endswith(BREAK_SUFFIX):
            continue
        info = read_lease(Path(entry.path), now)
        if info is not None and _expired(info, ttl):
            _break(layout, Path(entry.path), info, ttl, taking_over=False)
            removed += 1
    return removed


def _write_holder(layout: Layout, path: Path, what: str) -> None:
    """Writes who holds a just-taken lease (written aside, then renamed: a reader never sees half of it)."""
    note = {"host": HOST, "pid": os.getpid(), "what": what, "since": time.time()}
    # ``leases/`` is not sticky: another member may rename the folder just
    # made and put a link in its place. The note is written relative to the
    # folder this process made (opened without following a link, and owned by
    # this user), never through its name.
    try:
        folder = os.open(path, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return
    try:
        if os.fstat(folder).st_uid != os.geteuid():
            return
        tmp = f".{HOLDER}.{os.getpid()}.{time.monotonic_ns()}"
        fd = os.open(tmp, CREATE_NEW, 0o644, dir_fd=folder)
        with open(fd, "w") as fp:
            fp.write(json.dumps(note))
        os.replace(tmp, HOLDER, src_dir_fd=folder, dst_dir_fd=folder)
    except OSError:
        pass  # the note is informative: waiters say "starting" and expiry still works
    finally:
        os.close(folder)


def _break(layout: Layout, path: Path, judged: LeaseInfo, ttl: float, *, taking_over: bool = True) -> None:
    """Removes an expired lease, unless another breaker is at it or the lease came back to life.

    :param taking_over: this process breaks it to take it (and says so)
    """
    breaker = path.with_name(path.name + BREAK_SUFFIX)
    try:
        os.mkdir(breaker)
    except FileExistsError:
        # another waiter is breaking it; a breaker that died leaves a folder nobody touches
        try:
            if filesystem_now(layout) - os.stat(breaker).st_mtime > ttl:
                os.rmdir(breaker)
        except OSError:
            pass
        time.sleep(FIRST_POLL)
        return
    except OSError as exc:
        raise disk_error(exc, "breaking an expired lease") from None
    try:
        again = read_lease(path, filesystem_now(layout))
        if again is not None and _expired(again, ttl) and (again.host, again.pid) == (judged.host, judged.pid):
            if taking_over:
                logger.warning("%s stopped (no heartbeat for %.0fs): taking over", judged.describe(), again.age)
            _remove_lease(layout, path)
            _reap_dead_writes(layout, judged, ttl)
    finally:
        try:
            os.rmdir(breaker)
        except OSError:
            pass


def _reap_dead_writes(layout: Layout, holder: LeaseInfo, ttl: float) -> None:
    """Removes what the dead holder left in ``tmp/`` (its entries are named ``<host>.<pid>.…``).

    Whatever their age: the holder gave no heartbeat for a whole ttl, so it
    is dead or stalled, and its lease is gone. A file it wrote after its last
    heartbeat (the heartbeat thread lags on a loaded machine) would otherwise
    stay until a gc. A holder that only stalled finds its file gone when it
    comes back and fails with an error (nothing of it was published; the
    bytes of an object are checked against their digest anyway).
    """
    if holder.pid <= 0 or not layout.tmp.is_dir():
        return
    prefix = f"{holder.host}.{holder.pid}."
    for entry in os.scandir(layout.tmp):
        if not entry.name.startswith(prefix):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
            # another member's files in a group store: tmp/ is sticky, the store's owner reaps them
            if layout.may_remove(st):
                remove_tree(Path(entry.path))
        except OSError:
            continue
