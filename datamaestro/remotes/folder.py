"""A remote in a folder: another user's store, an NFS mount, a USB disk, a ``store export``."""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Callable

from ..errors import IntegrityError
from .base import MAX_RECORD_BYTES, Remote, RemoteUnavailable, action_key, object_key

if TYPE_CHECKING:
    from ..store import Store
    from ..store.objects import Staged


class FolderRemote(Remote):
    """A store (or an export) in a folder: ``<root>/objects/ab/cdef...``.

    Objects are hard-linked when the folder is on the same file system and
    owned by this user (both are immutable), copied otherwise; either way
    they are hashed on the way in.

    :param link: hard-link objects when possible; an export to a removable disk copies
    """

    writable = True
    #: a copy of a bucket holds packs; a push to a folder sends objects one by one (they can be hard-linked)
    reads_packs = True

    def __init__(self, root: Path, *, link: bool = True):
        self.root = Path(root)
        self.label = str(root)
        self.link = link

    def stage(self, store: "Store", digest: str, limit: int | None = None) -> "Staged | None":
        """Copies (or links) the object from the folder, checking its digest."""
        outcome = self.stage_batch(store, [digest], {digest: limit} if limit is not None else None)[0]
        if isinstance(outcome, (IntegrityError, RemoteUnavailable)):
            raise outcome
        return outcome

    def stage_batch(self, store: "Store", digests: list[str], limits: dict[str, int] | None = None) -> list:
        """Links (or copies) many objects from the folder at once, each checked (see :meth:`ObjectStore.stage_files`)."""
        root = os.fspath(self.root)
        pairs = [(digest, f"{root}/{object_key(digest)}") for digest in digests]
        # a linked object is the remote's inode: its stamp can be linked too (see record_stamps)
        return store.objects.stage_files(pairs, link=self.link, limits=limits, stamps=f"{root}/stamps" if self.link else None)

    def get_action(self, key: str) -> bytes | None:
        """Reads the record from the folder's ``actions/``."""
        try:
            # bounded, and never blocking on a fifo: a folder remote is someone else's folder
            fd = os.open(self.root / action_key(key), os.O_RDONLY | os.O_NONBLOCK)
            with open(fd, "rb") as fp:
                return fp.read(MAX_RECORD_BYTES + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise RemoteUnavailable(f"{self.label}: {exc.strerror}") from None

    def missing(self, digests: list[str]) -> list[str]:
        """The digests without a file in the folder."""
        return [digest for digest in digests if not (self.root / object_key(digest)).is_file()]

    def read_blob(self, key: str, limit: int) -> bytes | None:
        """Reads at most ``limit`` bytes of the folder's file ``key`` (a pack index); None when missing."""
        return self.read_range(key, 0, limit)

    def read_range(self, key: str, start: int, end: int) -> bytes | None:
        """Bytes ``start`` to ``end`` of the folder's file ``key`` (a regular file, never a fifo or a device); None when missing."""
        try:
            fd = os.open(self.root / key, os.O_RDONLY | os.O_NONBLOCK)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise RemoteUnavailable(f"{self.label}: {exc.strerror}") from None
        try:
            import stat

            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return b""  # not a pack: its members are refused
            end = min(end, st.st_size)  # a buffer the size of the file, not of the bound asked
            chunks = []
            while start < end:
                chunk = os.pread(fd, end - start, start)
                if not chunk:
                    break
                chunks.append(chunk)
                start += len(chunk)
            return b"".join(chunks)
        except OSError as exc:
            raise RemoteUnavailable(f"{self.label}: {exc.strerror}") from None
        finally:
            os.close(fd)

    def put_object(self, digest: str, path: Path) -> None:
        """Copies the object to a temporary name in the folder, then renames it into place."""
        def copy(out) -> None:
            with open(path, "rb") as source:
                shutil.copyfileobj(source, out)

        self._put(object_key(digest), copy, mode=0o444)

    def put_action(self, key: str, data: bytes) -> None:
        """Writes the record to a temporary name in the folder, then renames it into place."""
        self._put(action_key(key), lambda out: out.write(data), mode=0o644)

    def _put(self, relative: str, write: Callable[[BinaryIO], object], *, mode: int) -> None:
        target = self.root / relative
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)  # a leftover of a kill
            from ..store.objects import create_new

            # a new file, never through a link: a lab's cache folder is written by many users
            with create_new(tmp, mode) as out:
                write(out)
                os.fchmod(out.fileno(), mode)  # whatever the umask
            os.replace(tmp, target)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise RemoteUnavailable(f"{self.label}: cannot write {relative}: {exc.strerror}") from None

