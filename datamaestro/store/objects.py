"""File objects: immutable files named by the blake3 digest of their bytes.

Every write goes to ``tmp/`` on the store's file system, is hashed while it
is written, fsynced, made read-only and only then renamed into
``objects/ab/cdef...``: a reader never sees a partial object and a crash
leaves nothing but garbage in ``tmp/`` (reaped by :func:`reap_tmp`).
A small object hard-linked from a peer store is the exception: its bytes
are already durable and immutable, so the very inode hashed is linked into
place (see :meth:`ObjectStore.stage_files`).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import socket
import stat
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterable

from ..errors import IntegrityError, StoreError, UntrustedInputError
from .digests import CHUNK_SIZE, digest_bytes, digest_of_file, format_digest, hasher, hex_of, read_small_fd, read_small_file, small_file_buffer
from . import expansion

logger = logging.getLogger(__name__)

OBJECT_MODE = 0o444
HOST = socket.gethostname()

#: a file open in this process can be linked by its descriptor (``linkat`` of ``/proc/self/fd/N``): the inode hashed is the inode linked
PROC_FD = os.path.isdir("/proc/self/fd")
#: what ``link()`` fails with where a hard link cannot be made (another file system, too many links, refused): another way is taken
LINK_REFUSALS = (errno.EXDEV, errno.EMLINK, errno.EPERM, errno.ENOTSUP)
#: :meth:`_PeerLinker.take` may not link this peer's objects: copy them
LINK_REFUSED = object()
#: :meth:`_PeerLinker.take` leaves a large object to be linked through ``tmp/`` and hashed by threads
LINK_LARGE = object()

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
# A tmp entry of another host cannot be checked for liveness: reap it only
# when it is this old (seconds).
STALE_FOREIGN_TMP = 24 * 3600
# Files up to this size are imported with one read (hashed in memory)
SMALL_FILE = 1 << 20
#: the folder of ``tmp/`` where interrupted downloads wait for a later run to resume them
PARTIAL_FOLDER = "partial"
#: an interrupted download untouched for this long is not resumed but removed (seconds)
STALE_PARTIAL = 7 * 24 * 3600


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


def mismatch(source, actual: str, digest: str) -> IntegrityError:
    """The error of a file said to hold ``digest`` whose bytes hash to ``actual``."""
    return IntegrityError(f"{source}: content hashes to {actual}, not {digest}")


def not_a_file(source) -> IntegrityError:
    """The refusal of an object source that is not a regular file (a device that never ends, a fifo that blocks)."""
    return UntrustedInputError(f"refused {source}: not a regular file")


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
        event = getattr(_stopping, "event", None)
        if event is not None and event.is_set():
            raise KeyboardInterrupt("stopping: nothing new in the store's tmp/")
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


def stamp_text(st: os.stat_result, precise: bool) -> str:
    """What a stamp records of an object: size, mtime and inode (``precise``), else size and mtime in seconds."""
    if precise:
        return f"size={st.st_size},mtime={st.st_mtime_ns},ino={st.st_ino}"
    return f"size={st.st_size},mtime_s={st.st_mtime_ns // 1_000_000_000}"


def stamp_matches(recorded: str, st: os.stat_result, precise: bool) -> tuple[bool, str]:
    """Whether ``st`` is what the stamp ``recorded`` says, and the stamp text of ``st`` it was compared with.

    The comparison is made at the precision of the stamp, which another
    machine (another mount of the store's file system) may have written.
    """
    now = stamp_text(st, precise)
    if recorded == now:
        return True, now
    if precise and ",ino=" in recorded:
        return False, now
    # one side saw the file system coarsely (a FUSE mount): size and mtime to the second
    fields = dict(part.split("=", 1) for part in recorded.split(",") if "=" in part)
    seconds = fields.get("mtime_s") or (str(int(fields["mtime"]) // 1_000_000_000) if fields.get("mtime", "").isdigit() else None)
    coarse = f"size={fields.get('size')},mtime_s={seconds}"
    now = stamp_text(st, False)
    return coarse == now, now


def read_stamp(layout: Layout, digest: str) -> str | None:
    """The stamp recorded for an object, or None."""
    try:
        return os.readlink(layout.stamp_path(digest))
    except OSError:
        return None


def record_stamp(layout: Layout, digest: str, st: os.stat_result, *, replace: bool = False) -> bool:
    """Records what an object looked like when it was committed; True when the stamp is (now) right.

    A stamp is a symbolic link ``stamps/ab/cdef...`` whose target text is
    :func:`stamp_text`: made in one call, read in one call (no open, no
    fsync: a stamp lost in a crash is recorded again on the next use). It is
    what :func:`datamaestro.store.integrity.check_on_use` compares with a
    ``stat`` of the object, so that an object changed in place is never
    served silently.

    :param replace: replace a stamp that says something else (an object
        committed anew after its stamp outlived it; ``store verify`` after a
        rehash); otherwise the first stamp stays
    """
    text = stamp_text(st, layout.precise_stat)
    path = layout.stamp_path(digest)
    try:
        try:
            os.symlink(text, path)
            return True
        except FileNotFoundError:
            layout.mkdir(path.parent)
            os.symlink(text, path)
            return True
    except FileExistsError:
        pass
    except OSError as exc:
        logger.debug("cannot record the stamp of %s: %s", digest, exc)
        return False
    if read_stamp(layout, digest) == text:
        return True
    if not replace:
        return False
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}")
    try:
        os.symlink(text, tmp)
        os.replace(tmp, path)
        return True
    except OSError as exc:
        # another member's stamp in a sticky folder: only the store's owner may replace it
        logger.warning("cannot replace the outdated stamp of object %s (%s): the store's owner can, with `datamaestro store verify`", digest, exc.strerror or exc)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        return False


def record_stamps(layout: Layout, committed: list[tuple[str, os.stat_result, str | None]]) -> None:
    """Stamps many objects just committed: ``(digest, stat, stamp source or None)``.

    An object hard-linked from a peer store is the peer's inode: when the
    peer's stamp (``stamp source``) says exactly what this object's stat
    says, it is hard-linked as this object's stamp, which allocates no
    inode (a new symbolic link per object would double the inodes a sync
    makes). Otherwise, or when the link is refused, :func:`record_stamp`.
    """
    precise = layout.precise_stat
    stamps = os.fspath(layout.stamps)
    made: set[str] = set()
    for digest, st, source in committed:
        if source is not None:
            hexdigest = hex_of(digest)
            fan = f"{stamps}/{hexdigest[:2]}"
            try:
                if os.readlink(source) == stamp_text(st, precise):
                    if fan not in made:
                        layout.mkdir(Path(fan))
                        made.add(fan)
                    os.link(source, f"{fan}/{hexdigest[2:]}", follow_symlinks=False)
                    continue
            except FileExistsError:
                pass  # stamped by another process: record_stamp checks what it says
            except OSError:
                pass  # no stamp there, another file system, or linking refused: a new one
        record_stamp(layout, digest, st, replace=True)


@dataclass(frozen=True)
class Staged:
    """A checked object waiting in ``tmp/`` to be made visible (see :meth:`ObjectStore.commit_staged`), or already linked in place and waiting for its stamp.

    :param read_only: the file already has the objects' mode (no chmod needed)
    :param stamp_source: the stamp of the file it was hard-linked from (a
        peer store's): linked as this object's stamp when it describes the
        same inode, which costs no new inode (see :func:`record_stamps`)
    """

    tmp: Path | None
    digest: str
    size: int
    read_only: bool = False
    stamp_source: str | None = None
    #: already in ``objects/`` (``tmp`` is None): linked there by :meth:`ObjectStore.stage_files`, this is its inode's stat
    in_place: os.stat_result | None = None


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


class ObjectWriter:
    """Streams bytes into a new object: hashed while written, committed by rename.

    Use as a context manager; leaving the block without :meth:`commit`
    (an exception, a kill) leaves only a tmp file, removed on abort::

        with store.objects.writer() as out:
            for chunk in chunks:
                out.write(chunk)
            digest = out.commit()

    :param expect: the digest the bytes must have (bytes taken from another
        store): :meth:`commit` and :meth:`stage` refuse anything else, and
        nothing enters the store
    :param limit: the most bytes the object has (its size, when a document
        names it): a source sending more is cut off there
    """

    def __init__(self, objects: "ObjectStore", expect: str | None = None, limit: int | None = None):
        self.objects = objects
        self.expect = expect
        self.limit = limit
        self.tmp = objects.layout.tmp_path(".part")
        self.size = 0
        self._hasher = hasher()
        try:
            self._fp: BinaryIO | None = create_new(self.tmp)
        except OSError as exc:
            raise disk_error(exc, "writing an object") from None
        self.digest: str | None = None
        self._next_space_check = 0

    def _check_space(self, needed: int) -> None:
        """Refuses the object when the store's disk would keep less than its reserve free (:func:`~datamaestro.store.expansion.free_space_reserve`)."""
        try:
            st = os.statvfs(self.objects.layout.tmp)
        except OSError:
            return
        free = st.f_bavail * st.f_frsize
        reserve = expansion.free_space_reserve(st)
        if free - needed < reserve:
            self.abort()
            raise UntrustedInputError(
                f"refused {self.expect}: no document names its size, and after {self.size} bytes the store's disk has "
                f"{free >> 20} MiB free ({reserve >> 20} MiB are always left free): cut off"
            )

    def write(self, data: bytes) -> None:
        """Appends bytes to the object.

        :raises UntrustedInputError: past ``limit`` bytes (a source streaming without end: cut off, dropped)
        """
        if self.limit is not None and self.size + len(data) > self.limit:
            self.abort()
            raise UntrustedInputError(f"refused {self.expect or 'an object'}: more than the {self.limit} bytes it has (cut off)")
        if self.limit is None and self.expect is not None and self.size >= self._next_space_check:
            # bytes of another store whose size no document names (a derived file): a peer
            # streaming without end is cut off before the disk is full
            self._next_space_check = self.size + expansion.FREE_SPACE_EVERY
            self._check_space(len(data))
        self._hasher.update(data)
        try:
            self._fp.write(data)
        except OSError as exc:
            raise disk_error(exc, "writing an object") from None
        self.size += len(data)

    def reset(self) -> None:
        """Drops everything written so far (a transfer restarts from byte 0)."""
        self._fp.seek(0)
        self._fp.truncate()
        self._hasher = hasher()
        self.size = 0

    def _close(self, fsync: bool) -> str:
        """Closes the tmp file; returns the digest (checked against ``expect``)."""
        try:
            self._fp.flush()
            if fsync:
                os.fsync(self._fp.fileno())
            self._fp.close()
        except OSError as exc:
            raise disk_error(exc, "writing an object") from None
        self._fp = None
        digest = format_digest(self._hasher.hexdigest())
        if self.expect is not None and digest != self.expect:
            self.tmp.unlink(missing_ok=True)
            raise IntegrityError(f"content hashes to {digest}, not {self.expect}")
        self.digest = digest
        return digest

    def commit(self) -> str:
        """Makes the object durable and visible; returns its digest.

        :raises IntegrityError: the bytes do not hash to ``expect`` (dropped)
        """
        digest = self._close(fsync=True)
        self.objects.adopt(self.tmp, digest)
        return digest

    def stage(self) -> "Staged":
        """Closes and checks the object without making it visible (see :meth:`ObjectStore.commit_staged`).

        :raises IntegrityError: the bytes do not hash to ``expect`` (dropped)
        """
        return Staged(self.tmp, self._close(fsync=False), self.size)

    def abort(self) -> None:
        """Drops what was written."""
        if self._fp is not None:
            self._fp.close()
            self._fp = None
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> "ObjectWriter":
        return self

    def __exit__(self, *exc_info) -> None:
        if self.digest is None:
            self.abort()


class _PeerLinker:
    """Links small objects of a peer store into ``objects/`` by their open descriptor (see :meth:`ObjectStore.stage_files`).

    Entered once per batch: the file system is flushed (the peer's bytes
    reach the disk before they become objects of this store) and
    ``/proc/self/fd`` opened (per batch, not per process: a forked child
    must name its own descriptors).
    """

    def __init__(self, objects: "ObjectStore"):
        self.objects = objects
        self.euid = os.geteuid()

    def __enter__(self) -> "_PeerLinker":
        sync_filesystem(self.objects.layout.tmp)
        self.device = os.stat(self.objects.layout.tmp).st_dev
        self.open_files = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY)
        return self

    def __exit__(self, *exc_info) -> None:
        os.close(self.open_files)

    def take(self, digest: str, source: str, buffer: bytearray, view: memoryview) -> "Staged | IntegrityError | None | object":
        """Hashes a small peer object from an open file and links that inode as the object, or says why not (:data:`LINK_REFUSED`, :data:`LINK_LARGE`).

        None: another writer stored the object first (its stamp is its own).
        """
        fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK)  # a fifo planted in a peer folder must not block
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return not_a_file(source)
            # another user's file (they could change it), another file system, a writable file (not an object)
            if st.st_uid != self.euid or st.st_dev != self.device or st.st_mode & 0o222:
                return LINK_REFUSED
            if st.st_size > SMALL_FILE:
                return LINK_LARGE
            size = read_small_fd(fd, buffer, st.st_size)
            if size != st.st_size:  # changing under our eyes: not an object
                return LINK_REFUSED
            actual = format_digest(blake3_of(view[:size]))
            if actual != digest:
                return mismatch(source, actual, digest)
            hexdigest = hex_of(digest)
            fan = self.objects.fan(hexdigest[:2])
            try:
                # linkat(AT_SYMLINK_FOLLOW) of the descriptor's entry: the inode itself (plain link() would link the magic link)
                os.link(str(fd), f"{fan}{os.sep}{hexdigest[2:]}", src_dir_fd=self.open_files, follow_symlinks=True)
            except FileExistsError:
                return None
            except OSError as exc:
                if exc.errno in LINK_REFUSALS:
                    return LINK_REFUSED
                raise
            return Staged(None, digest, size, read_only=True, in_place=st)
        finally:
            os.close(fd)


class ObjectStore:
    """The ``objects/`` folder: put, test and open file objects by digest."""

    def __init__(self, layout: Layout):
        self.layout = layout
        #: fan-out folders known to exist (made or seen by this process)
        self._fans: set[str] = set()

    def path_of(self, digest: str) -> Path:
        """Where the object of ``digest`` is (whether or not it exists)."""
        return self.layout.fanout(self.layout.objects, digest)

    def has(self, digest: str) -> bool:
        """True when the object is in the store."""
        return self.path_of(digest).is_file()

    def absent(self, digests: Iterable[str]) -> list[str]:
        """The digests among ``digests`` whose object is not in the store, in order, without duplicates.

        Many digests are checked with one listing per fan-out folder rather
        than one ``stat`` (and ``Path``) each.
        """
        digests = list(dict.fromkeys(digests))
        if len(digests) < 64:
            return [digest for digest in digests if not self.has(digest)]
        objects = os.fspath(self.layout.objects)
        listed: dict[str, set[str]] = {}
        missing = []
        for digest in digests:
            hexdigest = hex_of(digest)
            fan = hexdigest[:2]
            names = listed.get(fan)
            if names is None:
                try:
                    names = listed[fan] = set(os.listdir(objects + os.sep + fan))
                except FileNotFoundError:
                    names = listed[fan] = set()
            if hexdigest[2:] not in names:
                missing.append(digest)
        return missing

    def open(self, digest: str) -> BinaryIO:
        """Opens an object for reading."""
        try:
            return open(self.path_of(digest), "rb")
        except FileNotFoundError:
            raise StoreError(f"object {digest} is not in the store") from None

    def writer(self, expect: str | None = None, limit: int | None = None) -> ObjectWriter:
        """A writer for a new object (see :class:`ObjectWriter`)."""
        return ObjectWriter(self, expect, limit)

    def stage_file(self, digest: str, source: Path, *, link: bool = False) -> Staged:
        """Copies a file said to hold ``digest`` into ``tmp/`` and checks it.

        The object is not visible until :meth:`commit_staged`, which makes a
        whole batch durable with one file-system flush (an fsync per small
        object would cost more than the copy).

        :param link: hard-link instead of copying when ``source`` is on this
            file system and owned by this user (an object of another store:
            immutable, so sharing its inode is safe); the bytes are hashed all the same
        :raises IntegrityError: the content does not hash to ``digest`` (nothing is kept)
        """
        tmp = self.layout.tmp_path(".import")
        try:
            if link and self._link(source, tmp):
                size = os.lstat(tmp).st_size
                # small files: one read; digest_of_file's threads and mmap cost more than they save
                actual = digest_of_file(tmp) if size > SMALL_FILE else digest_bytes(tmp.read_bytes())
            else:
                actual, size = self._copy(source, tmp, digest)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)  # a read-only file system refuses even that (EROFS)
            if isinstance(exc, FileNotFoundError) and exc.filename == str(source):
                raise
            raise disk_error(exc, f"copying {source} into the store") from None
        if actual != digest:
            tmp.unlink(missing_ok=True)
            raise mismatch(source, actual, digest)
        # a copy is created read-only, a link shares an object's inode (read-only too)
        return Staged(tmp, digest, size, read_only=True)

    def stage_files(self, pairs: list[tuple[str, str]], *, link: bool = False, limits: dict[str, int] | None = None) -> list["Staged | IntegrityError | None"]:
        """:meth:`stage_file` for many objects at once: ``(digest, source path)`` pairs.

        The per-object work is what a copy of many small files costs: one
        link (or copy), one read, one hash; no ``Path`` object, no stat of
        the source nor of ``tmp/`` per object. One outcome per pair: the
        :class:`Staged` object, None when the source does not exist (or
        another writer stored the object meanwhile), or the
        :class:`IntegrityError` of bytes that do not match (nothing kept).

        A small object that may be linked is hashed from an open file and
        that very inode linked into ``objects/`` (``/proc/self/fd``): no
        ``tmp/`` name, no rename, no check that the name is free (the link
        fails if it is not). The file system is flushed once first, so that
        the peer's bytes are on disk before they become an object of this
        store; :meth:`commit_staged` then only stamps it.

        :param limits: digest -> the size a document names for it: a larger
            file is refused before it is copied; a source that is not a
            regular file (a device, a fifo) is refused too
        """
        tmp_dir = os.fspath(self.layout.tmp)
        self.layout.tmp_path()  # makes tmp/ when missing
        prefix = f"{tmp_dir}{os.sep}{HOST}.{os.getpid()}.{uuid.uuid4().hex[:8]}-"
        euid = os.geteuid()
        buffer = small_file_buffer()
        view = memoryview(buffer)
        outcomes: list = []
        with _PeerLinker(self) if link and PROC_FD else contextlib.nullcontext() as linker:
            for index, (digest, source) in enumerate(pairs):
                tmp = f"{prefix}{index}.import"
                try:
                    if linker is not None:
                        outcome = linker.take(digest, source, buffer, view)
                        if outcome is LINK_REFUSED:
                            linker = None
                        elif outcome is not LINK_LARGE:
                            outcomes.append(outcome)
                            continue
                    staged = self._link_and_hash(source, tmp, euid, buffer, view) if link else None
                    if staged is None:
                        # a peer's objects share one owner and file system: once refused, copy the rest
                        link, linker = False, None
                        staged = self._copy_small(source, tmp, buffer, view) or self._copy(Path(source), Path(tmp), digest, (limits or {}).get(digest))
                except IntegrityError as error:
                    _unlink_quietly(tmp)
                    outcomes.append(error)
                    continue
                except FileNotFoundError as exc:
                    _unlink_quietly(tmp)
                    if exc.filename in (source, os.fspath(source)):
                        outcomes.append(None)
                        continue
                    raise disk_error(exc, f"copying {source} into the store") from None
                except OSError as exc:
                    _unlink_quietly(tmp)
                    raise disk_error(exc, f"copying {source} into the store") from None
                actual, size = staged
                if actual != digest:
                    _unlink_quietly(tmp)
                    outcomes.append(mismatch(source, actual, digest))
                    continue
                outcomes.append(Staged(Path(tmp), digest, size, read_only=True))
        return outcomes

    def fan(self, prefix: str) -> str:
        """The fan-out folder ``objects/<prefix>``, made when this process has not seen it yet (they are never removed)."""
        fan = f"{os.fspath(self.layout.objects)}{os.sep}{prefix}"
        if fan not in self._fans:
            self.layout.mkdir(Path(fan))
            self._fans.add(fan)
        return fan

    @staticmethod
    def _copy_small(source: str, tmp: str, buffer: bytearray, view: memoryview) -> tuple[str, int] | None:
        """Copies a file of at most :data:`SMALL_FILE` bytes with low-level calls, hashing it; None (nothing left) when larger."""
        size = read_small_file(source, buffer)
        if size is None:
            return None
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, OBJECT_MODE)
        try:
            written = 0
            while written < size:
                written += os.write(fd, view[written:size])
        finally:
            os.close(fd)
        return format_digest(blake3_of(view[:size])), size

    @staticmethod
    def _link_and_hash(source: str, tmp: str, euid: int, buffer: bytearray, view: memoryview) -> tuple[str, int] | None:
        """Hard-links ``source`` at ``tmp`` and hashes the linked inode; None (nothing left) to copy instead."""
        try:
            os.link(source, tmp)
        except FileNotFoundError:
            raise
        except OSError:
            return None  # another file system, or links refused: copy
        try:
            fd = os.open(tmp, os.O_RDONLY | os.O_NONBLOCK)  # a fifo must not block
        except OSError:
            _unlink_quietly(tmp)
            raise
        try:
            st = os.fstat(fd)
            # another user's file (they could change it), a writable file or not a file at all (not an object): copy, or refuse
            if st.st_uid != euid or st.st_mode & 0o222 or not stat.S_ISREG(st.st_mode):
                os.unlink(tmp)
                return None
            if st.st_size > SMALL_FILE:
                return digest_of_file(tmp), st.st_size
            size = os.readv(fd, [buffer])
            while size < len(buffer) and (more := os.readv(fd, [view[size:]])):
                size += more
            if size > SMALL_FILE:  # grew since the fstat: not an object
                os.unlink(tmp)
                return None
            return format_digest(blake3_of(view[:size])), size
        finally:
            os.close(fd)

    def _link(self, source: Path, tmp: Path) -> bool:
        """Hard-links ``source`` at ``tmp`` when allowed; False to copy instead."""
        st = os.stat(source)
        # another user's file, another file system, or a writable file (not an object): copy
        if st.st_uid != os.geteuid() or st.st_dev != os.stat(self.layout.tmp).st_dev or st.st_mode & 0o222:
            return False
        try:
            os.link(source, tmp)
        except OSError:
            return False
        return True

    @staticmethod
    def _copy(source: Path, tmp: Path, digest: str, limit: int | None = None) -> tuple[str, int]:
        """Copies ``source`` to ``tmp`` hashing it on the way; returns (digest, size).

        :raises IntegrityError: ``source`` is not a regular file, or larger than ``limit``
        """
        with open(os.open(source, os.O_RDONLY | os.O_NONBLOCK), "rb") as src:
            st = os.fstat(src.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise not_a_file(source)
            size = st.st_size
            if limit is not None and size > limit:
                raise UntrustedInputError(f"refused {digest}: {source} has {size} bytes, more than the {limit} it should")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, OBJECT_MODE)
            with open(fd, "wb") as out:
                if size <= SMALL_FILE:
                    # the common case of many small files: one read, one hash call
                    data = src.read()
                    out.write(data)
                    return digest_bytes(data), len(data)
                h = hasher()
                size = 0
                while chunk := src.read(CHUNK_SIZE):
                    h.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                return format_digest(h.hexdigest()), size

    def commit_staged(self, staged: Iterable["Staged"]) -> None:
        """Makes staged objects durable (one flush of the file system), then visible, then stamps them."""
        staged = list(staged)
        if not staged:
            return
        committed: list[tuple[str, os.stat_result, str | None]] = [(item.digest, item.in_place, item.stamp_source) for item in staged if item.in_place is not None]
        staged = [item for item in staged if item.in_place is None]
        if staged:
            sync_filesystem(self.layout.tmp)
        # metadata calls dominate the import of many small objects: string paths
        sep = os.sep
        for item in staged:
            hexdigest = hex_of(item.digest)
            fan = self.fan(hexdigest[:2])
            tmp = os.fspath(item.tmp)
            target = fan + sep + hexdigest[2:]
            try:
                if not item.read_only:
                    os.chmod(tmp, OBJECT_MODE)
                if os.path.lexists(target):
                    os.unlink(tmp)  # another writer was first: same bytes by definition
                    continue
                st = os.lstat(tmp)  # a rename changes neither size, mtime nor inode
                try:
                    os.rename(tmp, target)
                except FileNotFoundError:
                    if not os.path.exists(tmp):
                        raise
                    # the fan-out folder went away since this process saw it: make it again
                    self.layout.mkdir(Path(fan))
                    os.rename(tmp, target)
            except OSError as exc:
                _unlink_quietly(tmp)
                raise disk_error(exc, "adding an object") from None
            committed.append((item.digest, st, item.stamp_source))
        record_stamps(self.layout, committed)

    def ingest_stream(self, chunks: Iterable[bytes]) -> str:
        """Stores the bytes of an iterable of chunks; returns their digest."""
        with self.writer() as out:
            for chunk in chunks:
                out.write(chunk)
            return out.commit()

    def ingest_file(self, path: Path, *, move: bool = False) -> str:
        """Stores a file; returns its digest.

        :param move: the file may be taken (renamed into the store, no copy)
            instead of copied; it is gone from ``path`` afterwards
        """
        path = Path(path)
        if move:
            tmp = self.layout.tmp_path(".in")
            try:
                os.rename(path, tmp)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise disk_error(exc, f"moving {path} into the store") from None
            else:
                digest = digest_of_file(tmp)
                self.adopt(tmp, digest)
                return digest
        with open(path, "rb") as fp:
            digest = self.ingest_stream(iter(lambda: fp.read(CHUNK_SIZE), b""))
        if move:
            path.unlink()
        return digest

    def adopt(self, tmp: Path, digest: str, *, chmod: bool = True, folder_exists: bool = False) -> None:
        """Renames a complete, hashed tmp file into place as ``digest``.

        If the object already exists (another writer was first) the tmp file
        is dropped: the bytes are the same by definition.

        :param chmod: make the file read-only first (False: it already is)
        :param folder_exists: the object's fan-out folder is known to exist
        """
        target = self.path_of(digest)
        try:
            if chmod:
                os.chmod(tmp, OBJECT_MODE)
            if target.exists():
                tmp.unlink()
                return
            if not folder_exists:
                self.layout.mkdir(target.parent)
            st = os.lstat(tmp)  # a rename changes neither size, mtime nor inode
            os.rename(tmp, target)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)  # a read-only file system refuses even that (EROFS)
            if read_only_store_error(exc) and target.exists():
                return  # another member's object came first (sticky folder), or a read-only store has it: the work is done
            raise disk_error(exc, "adding an object") from None
        record_stamp(self.layout, digest, st, replace=True)

    def iter_digests(self) -> Iterable[str]:
        """Every object digest in the store (order unspecified)."""
        return map(format_digest, self.hexdigests())

    def hexdigests(self) -> list[str]:
        """The hex part of every object's digest (order unspecified), listed without a stat per object."""
        if not self.layout.objects.is_dir():
            return []
        found = []
        for fan in os.scandir(self.layout.objects):
            if len(fan.name) == 2 and fan.is_dir():
                prefix = fan.name
                found += [prefix + name for name in os.listdir(fan.path)]
        return found


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_tmp(layout: Layout, *, now: float | None = None) -> list[Path]:
    """Removes tmp entries whose writer is dead; returns what was removed.

    An entry of this host is stale when its process is gone; an entry of
    another host only when it is older than a day (its process cannot be
    checked from here). In a group store, a member leaves the entries of
    other members alone (``tmp/`` is sticky): the store's owner reaps them.
    """
    removed = []
    others = 0
    if not layout.tmp.is_dir():
        return removed
    now = now if now is not None else time.time()
    removed += _reap_partial(layout.tmp / PARTIAL_FOLDER, now)
    for entry in os.scandir(layout.tmp):
        if entry.name == PARTIAL_FOLDER:
            continue  # outlives its writer on purpose: the next run resumes it
        # host names may hold dots: test this host's prefix before splitting
        if entry.name.startswith(HOST + "."):
            host, rest = HOST, entry.name[len(HOST) + 1 :]
        else:
            host, _, rest = entry.name.partition(".")
        pid_text = rest.partition(".")[0]
        try:
            age = now - entry.stat(follow_symlinks=False).st_mtime
        except FileNotFoundError:
            continue
        if host == HOST and pid_text.isdigit():
            stale = not _pid_alive(int(pid_text))
        else:
            stale = age > STALE_FOREIGN_TMP
        if not stale:
            continue
        if not layout.may_remove(entry.stat(follow_symlinks=False)):
            others += 1
            continue
        path = Path(entry.path)
        remove_tree(path)
        removed.append(path)
    if others:
        logger.info(
            "left %d leftover(s) of other members' dead processes in %s: only their owners or the store's owner "
            "may remove them (the store's owner's `datamaestro store gc` does)", others, layout.tmp,
        )
    return removed


#: the tmp folders :func:`drop_own_tmp` swept: swept again by :func:`sweep_own_tmp_again` just before the process exits
_SWEPT: list[Layout] = []


def drop_own_tmp(layout: Layout) -> None:
    """Removes this process's ``tmp/`` entries, and partial downloads that hold nothing.

    For a process about to exit on Ctrl-C or SIGTERM while threads of its
    own still write (they are not unwound): what they leave is garbage.
    Partial downloads that hold bytes stay, for the next run.
    """
    if layout not in _SWEPT:
        _SWEPT.append(layout)
    prefix = f"{HOST}.{os.getpid()}."
    try:
        entries = list(os.scandir(layout.tmp))
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith(prefix):
            remove_tree(Path(entry.path))
    partial = layout.tmp / PARTIAL_FOLDER
    try:
        for entry in os.scandir(partial):
            if entry.name.endswith(".data") and entry.stat().st_size == 0:
                os.unlink(entry.path)
                Path(entry.path[: -len(".data")] + ".json").unlink(missing_ok=True)
        partial.rmdir()
    except OSError:
        pass


def _reap_partial(folder: Path, now: float) -> list[Path]:
    """Removes the interrupted downloads nobody resumed for :data:`STALE_PARTIAL` seconds."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        try:
            if now - entry.stat(follow_symlinks=False).st_mtime > STALE_PARTIAL:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


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


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def blake3_of(data) -> str:
    """The hex blake3 of a bytes-like object (one call: small data)."""
    from blake3 import blake3

    return blake3(data).hexdigest()


def sweep_own_tmp_again() -> None:
    """Sweeps again the tmp folders :func:`drop_own_tmp` swept, as the process exits on a signal.

    A download thread that passed its cancel check just before the first
    sweep may still have created its tmp file or partial download after it.
    """
    for layout in list(_SWEPT):
        drop_own_tmp(layout)
