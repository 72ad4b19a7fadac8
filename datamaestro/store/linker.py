"""The peer linker: small objects of a peer store hard-linked into ``objects/`` by their open descriptor, so that the inode hashed is the inode linked."""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING

from .digests import PREFIX, format_digest, read_small_fd
from .layout import LINK_REFUSALS, ObjectArea, sync_filesystem
from .writer import SMALL_FILE, Staged, blake3_of, mismatch, not_a_file

if TYPE_CHECKING:
    from ..errors import IntegrityError

_PREFIX_LENGTH = len(PREFIX)
#: :meth:`_PeerLinker.take` may not link this peer's objects: copy them
LINK_REFUSED = object()
#: :meth:`_PeerLinker.take` leaves a large object to be linked through ``tmp/`` and hashed by threads
LINK_LARGE = object()


class _PeerLinker:
    """Links small objects of a peer store into ``objects/`` by their open descriptor (see :meth:`ObjectStore.stage_files`).

    Entered once per batch: ``/proc/self/fd`` is opened (per batch, not per
    process: a forked child must name its own descriptors), and the first
    time in this process the file system is flushed, so that the peer's
    bytes reach the disk before they become objects of this store (a copy
    of a store may never have been flushed). Once is enough: a peer's
    object named later was flushed by the datamaestro that named it
    (objects are durable before they are named), and a flush per batch of
    a 100,000-file sync cost seconds on a busy disk.
    """

    def __init__(self, objects: "ObjectArea", stamps: str | None = None):
        self.objects = objects
        self.euid = os.geteuid()
        #: the peer's ``stamps/`` folder, named as each linked object's stamp source (see :func:`~.stamps.record_stamps`)
        self.stamps = stamps

    def __enter__(self) -> "_PeerLinker":
        if self.objects.peers_flushed_by != os.getpid():
            sync_filesystem(self.objects.layout.tmp)
            self.objects.peers_flushed_by = os.getpid()
        self.device = os.stat(self.objects.layout.tmp).st_dev
        self.open_files = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY)
        return self

    def __exit__(self, *exc_info) -> None:
        os.close(self.open_files)

    def take(self, digest: str, source: str, buffer: bytearray, view: memoryview) -> "Staged | IntegrityError | None | object":
        """Hashes a small peer object from an open file and links that inode as the object, or says why not (:data:`LINK_REFUSED`, :data:`LINK_LARGE`).

        None: another writer stored the object first (its stamp is its own).
        """
        # a fifo planted in a peer folder must not block, a symbolic link planted there is not followed (ELOOP: refused by the caller)
        fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
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
            hexdigest = actual[_PREFIX_LENGTH:]  # the hash just computed: well formed
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
            return Staged(None, digest, size, read_only=True, in_place=st, stamp_source=peer_stamp(self.stamps, actual))
        finally:
            os.close(fd)


def peer_stamp(stamps: str | None, digest: str) -> str | None:
    """The path of ``digest``'s stamp in a peer's ``stamps/`` folder (None without one); ``digest`` is one just hashed (well formed)."""
    if stamps is None:
        return None
    hexdigest = digest[_PREFIX_LENGTH:]
    return f"{stamps}{os.sep}{hexdigest[:2]}{os.sep}{hexdigest[2:]}"
