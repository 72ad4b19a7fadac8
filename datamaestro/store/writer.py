"""Writing objects: :class:`ObjectWriter` (bytes hashed while written, committed by rename), :class:`Staged` objects waiting to be made visible, and the refusals of a source whose bytes are not what it says."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..errors import IntegrityError, UntrustedInputError
from . import expansion
from .digests import format_digest, hasher
from .layout import ObjectArea, create_new, creating_in_tmp, disk_error
from .testpoints import pause

# Files up to this size are imported with one read (hashed in memory)
SMALL_FILE = 1 << 20


def mismatch(source, actual: str, digest: str) -> IntegrityError:
    """The error of a file said to hold ``digest`` whose bytes hash to ``actual``."""
    return IntegrityError(f"{source}: content hashes to {actual}, not {digest}")


def not_a_file(source) -> IntegrityError:
    """The refusal of an object source that is not a regular file (a device that never ends, a fifo that blocks)."""
    return UntrustedInputError(f"refused {source}: not a regular file")


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
    #: the stat of ``tmp`` once complete, when the stager took it (a rename changes neither size, mtime nor inode): saves a ``stat`` per object
    stat: os.stat_result | None = None
    #: ``tmp`` keeps its name: hard-linked into ``objects/`` (not renamed), or made a name of the object already there
    keep_name: bool = False
    #: ``tmp``'s bytes are on disk already (fsynced by its writer): its commit needs no flush of the file system
    synced: bool = False


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
    :param threads: hash each large write on all cores (bytes that come in
        parts of megabytes)

    Parts of one object fetched at once (ranged GETs) are written where
    they belong by :meth:`write_at`, from any thread, as they arrive, and
    hashed in order by :meth:`hash_in_order` from the caller's copy (a file
    system may not read back at once what was just written: a SeaweedFS
    mount does not).
    """

    def __init__(self, objects: "ObjectArea", expect: str | None = None, limit: int | None = None, *, threads: bool = False):
        self.objects = objects
        self.expect = expect
        self.limit = limit
        self.size = 0
        self._hasher = hasher(threads)
        with creating_in_tmp():
            self.tmp = objects.layout.tmp_path(".part")
            pause("tmp-create")
            try:
                self._fp: BinaryIO | None = create_new(self.tmp)
            except OSError as exc:
                raise disk_error(exc, "writing an object") from None
        pause("tmp-created")
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

    def check_space(self, needed: int) -> None:
        """Refuses the object now when ``needed`` more bytes would leave the disk less than its reserve (bytes of a known size, whose parts :meth:`write_at` does not check one by one), unless a document names its size.

        :raises UntrustedInputError: the object is dropped
        """
        if self.limit is None and self.expect is not None:
            self._check_space(needed)

    def write_at(self, offset: int, data) -> None:
        """Writes ``data`` at ``offset`` of the object's file, unhashed (any thread; a region :meth:`write` does not append to).

        The bytes count only once given to :meth:`hash_in_order`. The caller
        makes sure that no call is running when the writer is closed. (One
        descriptor for all: on a FUSE mount, closing a duplicate flushes the
        whole file, which made a SeaweedFS mount twice as slow.)

        :raises UntrustedInputError: past ``limit`` bytes
        """
        view = memoryview(data)
        if self.limit is not None and offset + len(view) > self.limit:
            raise UntrustedInputError(f"refused {self.expect or 'an object'}: more than the {self.limit} bytes it has (cut off)")
        fd = self._fp.fileno()
        try:
            while view:
                written = os.pwrite(fd, view, offset)
                view = view[written:]
                offset += written
        except OSError as exc:
            raise disk_error(exc, "writing an object") from None

    def hash_in_order(self, data) -> None:
        """Hashes the next bytes of the object, which :meth:`write_at` wrote (given in order, each once)."""
        self._hasher.update(data)
        self.size += len(data)

    def start_writeback(self, offset: int, length: int) -> None:
        """Starts writing bytes of the file to disk without waiting (see :func:`start_writeback`): the final fsync of a large object then waits for little."""
        start_writeback(self._fp.fileno(), offset, length)

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

    def stage(self, *, fsync: bool = False) -> "Staged":
        """Closes and checks the object without making it visible (see :meth:`ObjectStore.commit_staged`).

        :param fsync: flush the file to disk now (a large object, whose
            writeback was started part by part): the commit then needs no
            flush of the whole file system for it
        :raises IntegrityError: the bytes do not hash to ``expect`` (dropped)
        """
        return Staged(self.tmp, self._close(fsync=fsync), self.size, synced=fsync)

    def abort(self) -> None:
        """Drops what was written."""
        if self._fp is not None:
            fp, self._fp = self._fp, None
            # closing flushes what is buffered: after a write the disk refused (EFBIG,
            # ENOSPC) it fails again, and would replace the error that says why
            with contextlib.suppress(OSError):
                fp.close()
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> "ObjectWriter":
        return self

    def __exit__(self, *exc_info) -> None:
        if self.digest is None:
            self.abort()


_sync_file_range = None
#: ``SYNC_FILE_RANGE_WRITE`` of Linux's ``sync_file_range``: start the writeback of dirty pages, wait for nothing
_SYNC_FILE_RANGE_WRITE = 2


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Starts writing bytes of a file to disk without waiting (Linux ``sync_file_range``; nothing elsewhere).

    Only a head start for a later ``fsync``, which alone makes them durable:
    the bytes of a large object go to disk while the rest still comes, and
    the final flush waits for little. Failures are ignored (the ``fsync``
    reports them).
    """
    global _sync_file_range
    if _sync_file_range is None:
        try:
            import ctypes

            function = ctypes.CDLL(None, use_errno=True).sync_file_range
            function.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
            _sync_file_range = function
        except (OSError, AttributeError):
            _sync_file_range = False
    if _sync_file_range and length > 0:
        _sync_file_range(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


_blake3 = None


def blake3_of(data) -> str:
    """The hex blake3 of a bytes-like object (one call: small data)."""
    global _blake3
    if _blake3 is None:
        # imported on first use (the CLI's --help never pays for it), then kept: an import statement
        # per call cost a microsecond per object of a 100,000-object sync
        from blake3 import blake3 as _blake3
    return _blake3(data).hexdigest()
