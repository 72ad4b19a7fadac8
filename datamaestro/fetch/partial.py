"""Partial downloads: the raw bytes (and parts) of a download kept in the store's ``tmp/partial`` so that a later run resumes it."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import stat
import threading
from pathlib import Path
from urllib.parse import urlsplit

from .sinks import CHUNK_SIZE

logger = logging.getLogger(__name__)
#: the smallest part of a parallel download (bytes)
PART_MIN = 1 << 20
#: a part records how far it got every this many bytes (a kill -9 loses at most this much per connection)
PART_CHECKPOINT = 8 << 20

#: never open a file through a symbolic link (the store's tmp/ is written by every member of a group store)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class PartialDownload:
    """The raw bytes of a download, kept in a folder (the store's ``tmp/partial``) so that a later run resumes it.

    ``<host>.<key>.data`` holds the bytes received, in order; ``<host>.<key>.json``
    what a resume needs to be safe: the URL, the size, and the server's
    validators (``ETag``, ``Last-Modified``), sent back in ``If-Range`` so
    that a file changed on the server is downloaded whole again. The data
    file is written unbuffered, so that a kill (even ``kill -9``) keeps every
    byte received; an ``flock`` keeps two processes of this host out of one
    file. Files are named by host, since a lock does not cross machines.

    :param folder: where partial downloads live
    :param url: the source's URL (a mirror or the original)
    """

    def __init__(self, folder: Path, url: str):
        from blake3 import blake3

        key = blake3(url.encode()).hexdigest()[:32]
        host = socket.gethostname()
        self.folder = Path(folder)
        self.url = url
        self.data_path = self.folder / f"{host}.{key}.data"
        self.meta_path = self.folder / f"{host}.{key}.json"
        self.meta: dict = {}
        self._fd: int | None = None
        self._lock = threading.Lock()
        self._creation_lock = None
        #: bytes on disk of each unfinished part (from its start), as the workers write them
        self._received: dict[int, int] = {}

    @classmethod
    def open(cls, folder: Path | None, url: str, creation_lock=None) -> "PartialDownload | None":
        """The partial download of ``url`` in ``folder``, locked for this process; None when it cannot be used.

        :param creation_lock: held while its record is written, as by the
            sweep of a stopping process (see :meth:`Fetcher.cancellable`)
        """
        if folder is None or urlsplit(url).scheme.lower() not in ("http", "https"):
            return None
        try:
            import fcntl
        except ImportError:
            return None  # no flock here: no resume
        partial = cls(folder, url)
        partial._creation_lock = creation_lock
        fd = None
        for _ in range(3):  # the folder may be removed by another process that found it empty
            try:
                partial.folder.mkdir(parents=True, exist_ok=True)
                # never through a link: in a group store, tmp/ is a folder every member writes
                fd = os.open(partial.data_path, os.O_RDWR | os.O_CREAT | _NOFOLLOW, 0o644)
                break
            except FileNotFoundError:
                continue
            except OSError as exc:
                logger.debug("no partial download for %s: %s", url, exc)
                try:
                    partial.folder.rmdir()  # made just now, and empty (a full disk): leave no trace
                except OSError:
                    pass
                return None
        if fd is None:
            return None
        st = os.fstat(fd)
        if st.st_uid != os.geteuid() or st.st_nlink != 1 or not stat.S_ISREG(st.st_mode):
            # another user's file (a member of a group store could plant one to
            # have its bytes resumed from): downloaded whole, without resume
            logger.debug("not resuming %s from %s: not this user's own file", url, partial.data_path)
            os.close(fd)
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return None  # another process of this host is at it
        partial._fd = fd
        try:
            meta_fd = os.open(partial.meta_path, os.O_RDONLY | _NOFOLLOW | os.O_NONBLOCK)
            with open(meta_fd, "rb") as fp:
                if os.fstat(fp.fileno()).st_uid != os.geteuid():
                    raise ValueError("another user's record")
                meta = json.loads(fp.read(1 << 16))
            partial.meta = meta if isinstance(meta, dict) and meta.get("url") == url else {}
        except (OSError, ValueError):
            partial.meta = {}
        return partial

    def start_parts(self, size: int, part_size: int) -> None:
        """Makes the file ``size`` bytes long (sparse) for parts written at their offsets, and records it."""
        os.ftruncate(self._fd, 0)
        os.ftruncate(self._fd, size)
        self.meta["parts"] = {"size": part_size, "done": [], "kept": {}}
        self._received = {}
        self._save()

    def write_at(self, offset: int, chunk: bytes) -> None:
        """Writes bytes of a part at their offset (thread-safe)."""
        view = memoryview(chunk)
        while view:
            written = os.pwrite(self._fd, view, offset)
            view, offset = view[written:], offset + written

    def part_done(self, index: int) -> None:
        """Records a finished part (its bytes on disk first, so a crash never records a part it lost)."""
        self._record_parts(done=index)

    def part_kept(self, index: int, length: int) -> int:
        """How many bytes from the start of unfinished part ``index`` an earlier run kept (0 when the record is not sound)."""
        kept = self.meta["parts"].get("kept")
        value = kept.get(str(index), 0) if isinstance(kept, dict) else 0
        value = value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < length else 0
        self._received[index] = value
        return value

    def part_received(self, index: int, received: int) -> None:
        """Notes that the first ``received`` bytes of part ``index`` are written (recorded at the next checkpoint)."""
        self._received[index] = received

    def checkpoint(self) -> None:
        """Records how far each unfinished part got, so that a later run resumes each at its own offset."""
        self._record_parts()

    def _record_parts(self, done: int | None = None) -> None:
        with self._lock:
            if self._fd is None or "parts" not in self.meta:
                return  # closed already, or started over in one stream (a worker late to stop)
            # counts taken before the sync: each covers bytes already written, which the sync puts on disk
            received = dict(self._received)
            os.fdatasync(self._fd) if hasattr(os, "fdatasync") else os.fsync(self._fd)
            parts = self.meta["parts"]
            if done is not None:
                parts["done"].append(done)
                self._received.pop(done, None)
                received.pop(done, None)
            parts["kept"] = {str(index): count for index, count in sorted(received.items()) if count > 0 and index not in parts["done"]}
            self._save()

    def resumable(self) -> int:
        """How many kept bytes a resume can start from (0: none, or nothing to confirm them with).

        The last byte is always asked again, so that the server confirms
        the validators even when the previous run had received everything.
        """
        meta = self.meta
        size = meta.get("size")
        if not isinstance(size, int) or size <= 0 or not (meta.get("etag") or meta.get("last_modified")) or meta.get("parts"):
            return 0
        return max(0, min(os.fstat(self._fd).st_size, size - 1))

    def validator(self) -> str | None:
        """What ``If-Range`` sends: a strong ETag, else the Last-Modified date."""
        etag = self.meta.get("etag")
        if etag and not etag.startswith("W/"):
            return etag
        return self.meta.get("last_modified")

    def read(self, length: int):
        """Yields the first ``length`` kept bytes, in chunks."""
        offset = 0
        while offset < length:
            chunk = os.pread(self._fd, min(CHUNK_SIZE, length - offset), offset)
            if not chunk:
                return
            offset += len(chunk)
            yield chunk

    def seek(self, length: int) -> None:
        """Keeps the first ``length`` bytes; the next ones are appended after them."""
        os.ftruncate(self._fd, length)
        os.lseek(self._fd, length, os.SEEK_SET)

    def start(self, size: int | None, etag: str | None, last_modified: str | None) -> None:
        """Records what the server said of a download started from byte 0."""
        self.meta = {"url": self.url, "size": size, "etag": etag, "last_modified": last_modified}
        self._save()

    def _save(self) -> None:
        """Writes the record aside, then renames it over the old one (not when the data file was swept away)."""
        with self._creation_lock or contextlib.nullcontext():
            # a stopping process sweeps the partial downloads that hold nothing: one swept
            # while this thread waited for the server gets no record, which would stay behind
            if self._fd is not None and os.fstat(self._fd).st_nlink == 0:
                return
            self._write_record()

    def _write_record(self) -> None:
        tmp = self.meta_path.with_name(self.meta_path.name + ".new")
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)  # a leftover of a kill (or an entry another member put there: then this fails)
            # a new file, never through a link, then renamed over the record
            with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o644), "w") as fp:
                fp.write(json.dumps(self.meta))
            os.replace(tmp, self.meta_path)
        except OSError as exc:
            logger.debug("cannot record the partial download of %s: %s", self.url, exc)
            try:
                tmp.unlink(missing_ok=True)  # a full disk leaves a half-written record: no trace of it
            except OSError:
                pass

    def append(self, chunk: bytes) -> None:
        """Keeps received bytes (straight to the file: a kill keeps them)."""
        view = memoryview(chunk)
        while view:
            view = view[os.write(self._fd, view) :]

    def truncate(self) -> None:
        """Drops every kept byte (the download starts over)."""
        self.seek(0)
        self.meta = {}
        self._received = {}

    def close(self, *, keep: bool) -> None:
        """Releases the file; ``keep=False`` removes it (done, or not worth resuming)."""
        if self._fd is None:
            return
        if not keep or not self.meta or os.fstat(self._fd).st_size == 0:
            for path in (self.data_path, self.meta_path, self.meta_path.with_name(self.meta_path.name + ".new")):
                try:
                    path.unlink(missing_ok=True)
                except OSError:
                    pass
        os.close(self._fd)  # releases the flock
        self._fd = None
        try:
            self.folder.rmdir()  # only when empty: no trace of downloads that are done
        except OSError:
            pass
