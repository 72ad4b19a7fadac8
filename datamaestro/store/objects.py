"""File objects: immutable files named by the blake3 digest of their bytes.

Every write goes to ``tmp/`` on the store's file system, is hashed while it
is written, fsynced, made read-only and only then renamed into
``objects/ab/cdef...``: a reader never sees a partial object and a crash
leaves nothing but garbage in ``tmp/`` (reaped by :func:`~.tmpsweep.reap_tmp`).
A small object hard-linked from a peer store is the exception: its bytes
are already durable and immutable, so the very inode hashed is linked into
place (see :meth:`ObjectStore.stage_files`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import uuid
from pathlib import Path
from typing import BinaryIO, Iterable

from ..errors import IntegrityError, StoreError, UntrustedInputError
from .digests import PREFIX, CHUNK_SIZE, digest_bytes, digest_of_file, format_digest, hasher, hex_of, read_small_fd, read_small_file, small_file_buffer
from .layout import HOST, LINK_REFUSALS, Layout, disk_error, read_only_store_error, sync_filesystem
from .linker import LINK_LARGE, LINK_REFUSED, _PeerLinker, peer_stamp
from .stamps import record_stamp, record_stamps
from .writer import SMALL_FILE, ObjectWriter, Staged, blake3_of, mismatch, not_a_file

# Re-exported for the callers outside the store that import them from here (the pipeline, the
# CLI, the remotes, compat): their homes are now .layout, .tmpsweep and .writer.
from .layout import create_new, remove_tree, stop_new_tmp_files  # noqa: E402,F401
from .tmpsweep import sweep_own_tmp_again  # noqa: E402,F401

OBJECT_MODE = 0o444
_PREFIX_LENGTH = len(PREFIX)
#: files an :class:`Ingester` commits at once (one flush of the file system per batch)
INGEST_BATCH = 16384
#: or fewer, once their bytes add up to this much
INGEST_BATCH_BYTES = 256 << 20

#: a file open in this process can be linked by its descriptor (``linkat`` of ``/proc/self/fd/N``): the inode hashed is the inode linked
PROC_FD = os.path.isdir("/proc/self/fd")


class ObjectStore:
    """The ``objects/`` folder: put, test and open file objects by digest."""

    def __init__(self, layout: Layout):
        self.layout = layout
        #: fan-out folders known to exist (made or seen by this process)
        self._fans: set[str] = set()
        #: ``objects/`` as a string (:meth:`fan` builds a path per object)
        self._objects = os.fspath(layout.objects)
        #: the process that flushed the file system before linking a peer's objects (see :class:`~.linker._PeerLinker`)
        self.peers_flushed_by: int | None = None

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

    def writer(self, expect: str | None = None, limit: int | None = None, *, threads: bool = False) -> ObjectWriter:
        """A writer for a new object (see :class:`ObjectWriter`)."""
        return ObjectWriter(self, expect, limit, threads=threads)

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

    def stage_files(
        self, pairs: list[tuple[str, str]], *, link: bool = False, limits: dict[str, int] | None = None, stamps: str | None = None
    ) -> list["Staged | IntegrityError | None"]:
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
        :param stamps: the peer store's ``stamps/`` folder: each object staged
            names its stamp there (:attr:`Staged.stamp_source`), linked as its
            own when it describes the same inode (see :func:`record_stamps`)

        A source that is a symbolic link (planted where the peer's object
        should be) is never read through: refused as not a regular file.
        """
        tmp_dir = os.fspath(self.layout.tmp)
        self.layout.tmp_path()  # makes tmp/ when missing
        prefix = f"{tmp_dir}{os.sep}{HOST}.{os.getpid()}.{uuid.uuid4().hex[:8]}-"
        euid = os.geteuid()
        buffer = small_file_buffer()
        view = memoryview(buffer)
        outcomes: list = []
        with _PeerLinker(self, stamps) if link and PROC_FD else contextlib.nullcontext() as linker:
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
                        staged = self._copy_small(source, tmp, buffer, view, follow_symlinks=False) or self._copy(
                            Path(source), Path(tmp), digest, (limits or {}).get(digest), follow_symlinks=False
                        )
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
                    if exc.errno in (errno.ELOOP, errno.EISDIR):
                        # a symbolic link (not followed) or a directory planted where the object should be
                        outcomes.append(not_a_file(source))
                        continue
                    raise disk_error(exc, f"copying {source} into the store") from None
                actual, size = staged
                if actual != digest:
                    _unlink_quietly(tmp)
                    outcomes.append(mismatch(source, actual, digest))
                    continue
                outcomes.append(Staged(Path(tmp), digest, size, read_only=True, stamp_source=peer_stamp(stamps, digest)))
        return outcomes

    def fan(self, prefix: str) -> str:
        """The fan-out folder ``objects/<prefix>``, made when this process has not seen it yet (they are never removed)."""
        fan = f"{self._objects}{os.sep}{prefix}"
        if fan not in self._fans:
            self.layout.mkdir(Path(fan))
            self._fans.add(fan)
        return fan

    @staticmethod
    def _copy_small(source: str, tmp: str, buffer: bytearray, view: memoryview, *, follow_symlinks: bool = True) -> tuple[str, int] | None:
        """Copies a file of at most :data:`SMALL_FILE` bytes with low-level calls, hashing it; None (nothing left) when larger.

        :param follow_symlinks: False: a symbolic link at ``source`` raises ``ELOOP`` (see :func:`read_small_file`)
        """
        size = read_small_file(source, buffer, follow_symlinks=follow_symlinks)
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
            os.link(source, tmp, follow_symlinks=False)  # a symbolic link planted at source is linked as it is, then refused below
        except FileNotFoundError:
            raise
        except OSError:
            return None  # another file system, or links refused: copy
        try:
            fd = os.open(tmp, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)  # a fifo must not block, a link is not followed (ELOOP)
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
    def _copy(source: Path, tmp: Path, digest: str, limit: int | None = None, *, follow_symlinks: bool = True) -> tuple[str, int]:
        """Copies ``source`` to ``tmp`` hashing it on the way; returns (digest, size).

        :param follow_symlinks: False: a symbolic link at ``source`` raises :class:`OSError` ``ELOOP``
        :raises IntegrityError: ``source`` is not a regular file, or larger than ``limit``
        """
        flags = os.O_RDONLY | os.O_NONBLOCK
        with open(os.open(source, flags if follow_symlinks else flags | os.O_NOFOLLOW), "rb") as src:
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

    def commit_staged(self, staged: Iterable["Staged"]) -> bool:
        """Makes staged objects durable (one flush of the file system, unless their writers flushed each), then visible, then stamps them.

        An object staged with ``keep_name`` is hard-linked into place (its
        tmp name stays a name of it); when the object is there already, its
        tmp name is made a name of that object instead.

        :returns: False when a ``keep_name`` tmp file could not be made a
            name of its object (a hard link refused: it is left as it is)
        """
        staged = list(staged)
        if not staged:
            return True
        committed: list[tuple[str, os.stat_result, str | None]] = [(item.digest, item.in_place, item.stamp_source) for item in staged if item.in_place is not None]
        staged = [item for item in staged if item.in_place is None]
        if not all(item.synced for item in staged):
            sync_filesystem(self.layout.tmp)
        # metadata calls dominate the import of many small objects: string paths; a staged digest is
        # the hash of its bytes (well formed), its hex part is not checked again
        sep = os.sep
        lstat = os.lstat
        kept = True
        for item in staged:
            hexdigest = item.digest[_PREFIX_LENGTH:] if item.digest.startswith(PREFIX) else hex_of(item.digest)
            fan = self.fan(hexdigest[:2])
            tmp = os.fspath(item.tmp)
            target = fan + sep + hexdigest[2:]
            try:
                if not item.read_only:
                    os.chmod(tmp, OBJECT_MODE)
                if item.keep_name:
                    st = item.stat or lstat(tmp)  # a link changes neither size, mtime nor inode
                    try:
                        self._link_in(tmp, target, fan)
                    except FileExistsError:
                        # another writer was first, or another file of these bytes: this name becomes the object's
                        kept = self._rename_to_object(target, tmp) and kept
                        continue
                    except OSError as exc:
                        if exc.errno not in LINK_REFUSALS:
                            raise
                        kept = False  # no hard links here: renamed into place as any other
                    else:
                        committed.append((item.digest, st, item.stamp_source))
                        continue
                try:
                    lstat(target)
                except FileNotFoundError:
                    pass
                else:
                    os.unlink(tmp)  # another writer was first: same bytes by definition
                    continue
                st = item.stat or lstat(tmp)  # a rename changes neither size, mtime nor inode
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
        return kept

    def _link_in(self, tmp: str, target: str, fan: str) -> None:
        """Hard-links a complete tmp file as the object ``target`` (its fan-out folder made again if it went away).

        :raises FileExistsError: the object is there already
        """
        try:
            os.link(tmp, target, follow_symlinks=False)
        except FileNotFoundError:
            if not os.path.exists(tmp):
                raise
            self.layout.mkdir(Path(fan))
            os.link(tmp, target, follow_symlinks=False)

    @staticmethod
    def _rename_to_object(target: str, tmp: str) -> bool:
        """Makes the tmp name ``tmp`` a name of the existing object ``target`` (a link beside it, renamed over it); False when the link is refused (``tmp`` left as it is)."""
        if os.path.samestat(os.lstat(target), os.lstat(tmp)):
            return True  # a second name of a file already linked (a hard link of the archive)
        beside = f"{tmp}.{uuid.uuid4().hex[:8]}.link"
        try:
            os.link(target, beside, follow_symlinks=False)
        except OSError as exc:
            if exc.errno in LINK_REFUSALS:
                return False  # another member's object (protected hard links), or no links here
            raise
        os.replace(beside, tmp)
        return True

    def ingest_stream(self, chunks: Iterable[bytes]) -> str:
        """Stores the bytes of an iterable of chunks; returns their digest."""
        with self.writer() as out:
            for chunk in chunks:
                out.write(chunk)
            return out.commit()

    def ingester(self, *, move: bool = False, in_place: bool = False) -> "Ingester":
        """Stores many files, committed in batches (see :class:`Ingester`); a context manager."""
        return Ingester(self, move=move, in_place=in_place)

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


class Ingester:
    """Stores many files as objects: :meth:`add` hashes a file and says its digest at once; objects become durable and visible in batches.

    The per-file work is what storing a tree of many small files costs, so
    a small file is read once into a reused buffer and hashed in one call,
    with string paths only. An ``fsync`` per object would cost more than
    the rest: a batch (:data:`INGEST_BATCH` files or
    :data:`INGEST_BATCH_BYTES`) is made durable by one flush of the file
    system, then renamed into place and stamped
    (:meth:`ObjectStore.commit_staged`). Every object added is in the store
    once the ``with`` block ends (or :meth:`commit` returns): a caller names
    them in a tree only after that. Leaving the block on an exception drops
    what was not committed.

    :param move: files may be taken (renamed, not copied; gone from their
        path afterwards). A file already in the store's ``tmp/`` (what an
        extraction wrote there) is hashed where it is; another is first
        renamed into ``tmp/``, so that what is hashed is what is committed
    :param in_place: (with ``move``, files in the store's ``tmp/``) each
        file is hard-linked into ``objects/`` and keeps its name, which is
        made a name of the object when the object was there already; the
        folder holding them can then be a tree's materialization.
        :attr:`in_place` turns False (for good) when a file could not be
        kept so: its folder must not be used as one
    """

    def __init__(self, objects: ObjectStore, *, move: bool = False, in_place: bool = False):
        self.objects = objects
        self.move = move
        self._private = os.fspath(objects.layout.tmp) + os.sep
        #: every file added so far stays at its path as a name of its object
        self.in_place = in_place and move
        self._staged: list[Staged] = []
        self._bytes = 0
        self._buffer = small_file_buffer()
        self._view = memoryview(self._buffer)

    def __enter__(self) -> "Ingester":
        return self

    def __exit__(self, exc_type, *exc_info) -> None:
        if exc_type is None:
            self.commit()
        else:
            for item in self._staged:
                _unlink_quietly(item.tmp)
            self._staged.clear()

    def add(self, path, hashed: tuple[str, int] | None = None) -> tuple[str, int]:
        """Stores the regular file ``path`` (committed with its batch); returns its digest and size.

        :param hashed: the digest and size of a file this process wrote in
            the store's ``tmp/``, hashing it as it wrote it, with the objects'
            mode (see :meth:`~datamaestro.store.treewriter.TreeWriter.hashed_file`): not read again
        """
        path = os.fspath(path)
        if hashed is not None and self.move and path.startswith(self._private):
            staged = Staged(path, hashed[0], hashed[1], read_only=True, keep_name=self.in_place)
        else:
            staged = self._take(path) if self.move else self._copy(path)
        if staged is None:
            # larger than a buffer, or on another file system: streamed into an object of its own (fsynced)
            self.in_place = False
            digest = self.objects.ingest_file(Path(path), move=self.move)
            return digest, os.stat(self.objects.path_of(digest)).st_size
        self._staged.append(staged)
        self._bytes += staged.size
        if len(self._staged) >= INGEST_BATCH or self._bytes >= INGEST_BATCH_BYTES:
            self.commit()
        return staged.digest, staged.size

    def commit(self) -> None:
        """Makes every file added so far durable, then an object of the store."""
        staged, self._staged, self._bytes = self._staged, [], 0
        try:
            if not self.objects.commit_staged(staged):
                self.in_place = False
        except BaseException:
            for item in staged:
                _unlink_quietly(item.tmp)
            raise

    def _take(self, path: str) -> Staged | None:
        """Hashes a file to be moved in place (renamed into ``tmp/`` first when it is elsewhere) and makes it read-only; None: copy it instead."""
        if not path.startswith(self._private):
            self.in_place = False  # its name is left for tmp/
            tmp = os.fspath(self.objects.layout.tmp_path(".in"))
            try:
                os.rename(path, tmp)
            except OSError as exc:
                if exc.errno == errno.EXDEV:
                    return None
                raise disk_error(exc, f"moving {path} into the store") from None
            path = tmp
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a fifo must not block
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    raise StoreError(f"{path}: not a regular file; cannot be stored")
                size = read_small_fd(fd, self._buffer, st.st_size) if st.st_size < SMALL_FILE else None
                if size is not None:
                    digest = format_digest(blake3_of(self._view[:size]))
                else:
                    digest, size = digest_of_file(path), st.st_size
                os.fchmod(fd, OBJECT_MODE)
            finally:
                os.close(fd)
        except OSError as exc:
            raise disk_error(exc, f"storing {path}") from None
        # the fstat before the fchmod: a stamp records size, mtime and inode, which a chmod keeps
        return Staged(path, digest, size, read_only=True, stat=st, keep_name=self.in_place)

    def _copy(self, path: str) -> Staged | None:
        """Copies a small file into ``tmp/``, hashing it; None when it is larger than a buffer."""
        tmp = os.fspath(self.objects.layout.tmp_path(".in"))
        try:
            copied = ObjectStore._copy_small(path, tmp, self._buffer, self._view)
        except OSError as exc:
            _unlink_quietly(tmp)
            if isinstance(exc, FileNotFoundError) and exc.filename == path:
                raise
            raise disk_error(exc, f"copying {path} into the store") from None
        if copied is None:
            return None
        digest, size = copied
        return Staged(tmp, digest, size, read_only=True)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
