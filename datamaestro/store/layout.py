"""The bottom of the store: the folders of a store (:class:`Layout`), how entries are created and read in them, and the errors of the disk (:func:`disk_error`).

Every other module of the store imports from here; this module imports none of them (but :mod:`.digests`)."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import socket
import stat
import threading
import uuid
from pathlib import Path
from typing import BinaryIO, Protocol

from ..errors import StoreError
from .digests import hex_of

HOST = socket.gethostname()
#: what ``link()`` fails with where a hard link cannot be made (another file system, too many links, refused): another way is taken
LINK_REFUSALS = (errno.EXDEV, errno.EMLINK, errno.EPERM, errno.ENOTSUP)

#: per thread, an event after which this thread may create nothing in ``tmp/`` (see :func:`stop_new_tmp_files`)
_stopping = threading.local()


@contextlib.contextmanager
def stop_new_tmp_files(event: threading.Event):
    """Within the block, this thread creates nothing new in ``tmp/`` once ``event`` is set.

    A thread of a process stopping on a signal may still be waiting (for a
    lock, a server) when the process cleans its ``tmp/`` entries and exits:
    whatever it created afterwards would stay behind. Such a thread gets a
    ``KeyboardInterrupt`` instead of a new tmp name, as a Ctrl-C would give it.
    """
    former = getattr(_stopping, "event", None)
    _stopping.event = event
    try:
        yield
    finally:
        _stopping.event = former


#: held by a thread from its check that it may still create in ``tmp/`` to the
#: creation itself, and by :func:`~datamaestro.store.tmpsweep.drop_own_tmp`
#: while it sweeps: a thread that passed its check just before the process
#: began to stop (a loaded machine may then leave it unscheduled for seconds)
#: creates its entry before the sweep, which removes it, never after (found
#: under load: a ``.part`` and a partial download created after the sweep
#: stayed in ``tmp/``)
TMP_CREATION = threading.RLock()


def refuse_new_tmp_when_stopping() -> None:
    """Raises ``KeyboardInterrupt`` when this thread may create nothing more in ``tmp/`` (see :func:`stop_new_tmp_files`)."""
    event = getattr(_stopping, "event", None)
    if event is not None and event.is_set():
        raise KeyboardInterrupt("stopping: nothing new in the store's tmp/")


@contextlib.contextmanager
def creating_in_tmp():
    """Within the block, this thread names and creates its ``tmp/`` entry, if it may still (see :func:`stop_new_tmp_files`).

    :raises KeyboardInterrupt: this thread's process is stopping: nothing new in ``tmp/``
    """
    with TMP_CREATION:
        refuse_new_tmp_when_stopping()
        yield


#: Mode of the folders of a group store: setgid (new entries take the group),
#: group-writable, and sticky: a member adds entries but never renames,
#: replaces or unlinks another member's (only the folder's owner, the
#: store's owner, may)
SHARED_DIR_MODE = 0o3775
#: Mode of the lease folder of a group store: not sticky, since any member
#: must be able to break the expired lease of another member's dead process
SHARED_LEASE_DIR_MODE = 0o2775
#: File systems whose inode numbers may change while a file exists (FUSE
#: mounts without ``use_ino``, 9p) and whose mtime another mount may see to
#: the second only: an object's stamp there holds its size and mtime in seconds
COARSE_STAT_FS = ("fuse", "9p", "virtiofs")
#: File systems on a local disk or in memory: a ``stat`` or a small read
#: there costs microseconds, so one thread goes fastest through many small
#: files (threads only fight for the interpreter); elsewhere each call waits
#: on the network, and many threads hide that wait
LOCAL_FS = ("ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "zfs", "f2fs", "apfs", "hfs", "overlay", "ramfs", "bcachefs")

#: how a file is created in a store folder: never through a symbolic link, never over an existing entry
#: (in a group store's shared folders another member may have planted either at a name it could guess)
CREATE_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
#: how a file of a store folder is read: never through a symbolic link, never blocking on a planted FIFO
READ_NOFOLLOW = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)


def create_new(path: Path | str, mode: int = 0o644) -> BinaryIO:
    """Opens a new file for writing (``O_CREAT|O_EXCL|O_NOFOLLOW``): an entry of that name, even a dangling link, is ``FileExistsError``."""
    return open(os.open(path, CREATE_NEW, mode), "wb")


def write_new(path: Path | str, data: bytes, mode: int = 0o644, *, sync: bool = False) -> None:
    """Writes ``data`` to a new file (see :func:`create_new`); ``sync``: fsynced before it is closed."""
    with create_new(path, mode) as fp:
        fp.write(data)
        if sync:
            fp.flush()
            os.fsync(fp.fileno())


def write_aside(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replaces ``path`` by a file holding ``data``: written new under a private name beside it, then renamed.

    The rename replaces whatever entry ``path`` is (a link is replaced, never
    followed); in a sticky folder it fails with ``PermissionError`` when that
    entry is another member's.
    """
    tmp = Path(path).with_name(f".{Path(path).name}.{HOST}.{os.getpid()}.{uuid.uuid4().hex[:12]}")
    try:
        write_new(tmp, data, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_regular(path: Path | str, limit: int = 1 << 20) -> tuple[bytes, os.stat_result]:
    """The bytes (at most ``limit``) and the ``stat`` of a regular file, read without following a link.

    :raises OSError: a link (``ELOOP``), no such file, or not a regular file (``EINVAL``)
    """
    fd = os.open(path, READ_NOFOLLOW)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        return os.read(fd, limit), st
    finally:
        os.close(fd)


def read_only_store_error(exc: OSError) -> bool:
    """True for the errors of a store this process may only read: no permission, or a read-only file system."""
    return exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS)


def disk_error(exc: OSError, what: str) -> StoreError:
    """Turns an OSError met while writing the store into a clear StoreError."""
    if exc.errno == errno.ENOSPC:
        return StoreError(f"no space left on device while {what}", hint="free some disk space (see `datamaestro store gc`) and run again")
    if exc.errno == errno.EDQUOT:
        return StoreError(f"disk quota exceeded while {what}", hint="free some space or raise your quota, then run again")
    if exc.errno == errno.EFBIG:
        return StoreError(f"file too large while {what}", hint="the file-size limit of this process (ulimit -f) is too small")
    if exc.errno == errno.EROFS:
        return StoreError(
            f"the store is on a read-only file system: cannot write it while {what}",
            hint="the data it holds is served as it is; to add data, point DATAMAESTRO_STORE at a store you may write",
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return StoreError(
            f"no permission to write the store while {what}: {exc.filename or ''}",
            hint="ask the store's owner for write access, or point DATAMAESTRO_STORE at a store of your own",
        )
    return StoreError(f"cannot write the store while {what}: {exc}")


class Layout:
    """The folders of a store and how new entries are created in them.

    :param root: the store folder
    :param shared: a group store: folders setgid and group-writable
    """

    def __init__(self, root: Path, shared: bool = False):
        self.root = Path(root)
        self.shared = shared
        self.objects = self.root / "objects"
        self.trees = self.root / "trees"
        self.actions = self.root / "actions"
        self.views = self.root / "views"
        self.roots = self.root / "roots"
        self.tmp = self.root / "tmp"
        self.locks = self.root / "locks"
        self.quarantine = self.root / "quarantine"
        self.leases = self.root / "leases"
        self.stamps = self.root / "stamps"
        self._privileged: bool | None = None
        self._precise_stat: bool | None = None
        self._local: bool | None = None

    @property
    def dir_mode(self) -> int:
        """Mode of new folders: setgid, group-writable and sticky in a group store."""
        return SHARED_DIR_MODE if self.shared else 0o755

    def mkdir(self, path: Path, *, mode: int | None = None) -> None:
        """Creates a folder of the store (and its parents) with the store's folder mode.

        :param mode: the mode of ``path`` itself (default :attr:`dir_mode`)
        :raises StoreError: the store folder itself is gone: it was deleted
            while in use, and recreating folders in its place would make a
            store without its VERSION file
        """
        if path.is_dir():
            return
        if path == self.root:
            raise StoreError(f"the store {self.root} was deleted while in use", hint="run again: a new store is created")
        self.mkdir(path.parent) if path.parent != path and not path.parent.is_dir() else None
        mode = self.dir_mode if mode is None else mode
        try:
            os.mkdir(path, mode)
        except FileExistsError:
            return
        if self.shared:
            # umask may have removed the group bits; mkdir ignores the sticky bit
            os.chmod(path, mode)

    @property
    def privileged(self) -> bool:
        """True when this process may remove any entry: root, the store folder's owner, or a private store."""
        if self._privileged is None:
            uid = os.geteuid()
            try:
                owner = os.stat(self.root).st_uid
            except OSError:
                owner = uid
            self._privileged = not self.shared or uid in (0, owner)
        return self._privileged

    def may_remove(self, st: os.stat_result) -> bool:
        """True when this process may rename or unlink an entry of the given ``stat`` (sticky folders)."""
        return self.privileged or st.st_uid == os.geteuid()

    @property
    def local(self) -> bool:
        """True when the store is on a local file system (see :data:`LOCAL_FS`); False on network ones and when unknown."""
        if self._local is None:
            self._local = on_local_disk(self.root)
        return self._local

    @property
    def precise_stat(self) -> bool:
        """False on file systems that may renumber inodes or keep mtimes to the second (FUSE, 9p): stamps say less there."""
        if self._precise_stat is None:
            self._precise_stat = not _filesystem_type(self.root).startswith(COARSE_STAT_FS)
        return self._precise_stat

    def stamp_path(self, digest: str) -> Path:
        """Where the stamp of an object is (see :func:`record_stamp`)."""
        return self.fanout(self.stamps, digest)

    def fanout(self, base: Path, digest: str, suffix: str = "") -> Path:
        """``base/ab/cdef...`` for a digest (two-level fan-out keeps folders small)."""
        hexdigest = hex_of(digest)
        return base / hexdigest[:2] / (hexdigest[2:] + suffix)

    def install_folder(self, work: Path, target: Path) -> bool:
        """Renames a finished work folder into place; False if another process was first.

        Content-addressed folders with one name have one content, so the
        loser simply drops its copy. In a group store the folder of another
        member cannot be replaced (sticky folders: ``EPERM``): it is there,
        which is all that counts.
        """
        self.mkdir(target.parent)
        try:
            os.rename(work, target)
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY) and not (read_only_store_error(exc) and os.path.isdir(target)):
                raise
            remove_tree(work)
            return False
        return True

    def tmp_path(self, hint: str = "") -> Path:
        """A unique name in ``tmp/`` that says which host and process writes it."""
        refuse_new_tmp_when_stopping()
        try:
            self.mkdir(self.tmp)
        except OSError as exc:
            raise disk_error(exc, "creating the store's tmp folder") from None
        return self.tmp / f"{HOST}.{os.getpid()}.{uuid.uuid4().hex[:12]}{hint}"


def on_local_disk(path: Path) -> bool:
    """True when ``path`` is on a local file system (:data:`LOCAL_FS`): there one thread goes fastest through many small files."""
    return _filesystem_type(path) in LOCAL_FS


def _filesystem_type(path: Path) -> str:
    """The type of the file system holding ``path`` (longest mount point of ``/proc/self/mounts``), '' if unknown."""
    try:
        with open("/proc/self/mounts") as fp:
            mounts = [line.split() for line in fp]
    except OSError:
        return ""
    real = os.path.realpath(path)
    best, kind = "", ""
    for fields in mounts:
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        if (real == point or real.startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


_syncfs = None


def sync_filesystem(path: Path) -> None:
    """Flushes the file system holding ``path`` to disk (Linux ``syncfs``; ``sync`` elsewhere)."""
    global _syncfs
    if _syncfs is None:
        try:
            import ctypes

            _syncfs = ctypes.CDLL(None, use_errno=True).syncfs
        except (OSError, AttributeError):
            _syncfs = False
    if _syncfs:
        fd = os.open(path, os.O_RDONLY)
        try:
            if _syncfs(fd) == 0:
                return
        finally:
            os.close(fd)
    os.sync()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def make_writable(folder: Path) -> None:
    """Gives the owner write access to every folder below ``folder`` (links are not followed).

    A link inside a work folder may point anywhere (a hostile archive): its
    target's permissions must never change.
    """
    if os.path.islink(folder) or not os.path.isdir(folder):
        return
    os.chmod(folder, 0o755)
    for dirpath, dirnames, _ in os.walk(folder):
        for name in dirnames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                try:
                    os.chmod(path, 0o755)
                except OSError:
                    pass


def remove_tree(path: Path) -> None:
    """Removes a file or a folder (read-only sub-folders included) without following links."""
    if not os.path.lexists(path):
        return
    if os.path.isdir(path) and not os.path.islink(path):
        try:
            make_writable(Path(path))
        except OSError:
            pass
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


class ObjectArea(Protocol):
    """What the object writer and the peer linker use of the object store (:class:`~datamaestro.store.objects.ObjectStore` is one).

    A protocol rather than an import: the object store is built over the
    writer and the linker, which sit below it and never import it.
    """

    layout: Layout

    def fan(self, prefix: str) -> str:
        """The fan-out folder ``objects/<prefix>``, made when missing."""

    def adopt(self, tmp: Path, digest: str, *, chmod: bool = True, folder_exists: bool = False) -> None:
        """Renames a complete, hashed tmp file into place as ``digest``."""
