"""Digest strings: ``blake3:<64 hex>`` in every text a user sees."""

from __future__ import annotations

import json
import os
import threading

from ..errors import StoreError

PREFIX = "blake3:"
HEX_LENGTH = 64
CHUNK_SIZE = 1 << 20


def hasher(threads: bool = False):
    """A fresh blake3 hasher (imported lazily: the CLI's --help never pays for it).

    :param threads: spread each large update over the machine's cores (for
        bytes that come in large parts: a small update pays the threads'
        hand-over)
    """
    from blake3 import blake3

    return blake3(max_threads=blake3.AUTO) if threads else blake3()


def format_digest(hexdigest: str) -> str:
    """``abcd...`` -> ``blake3:abcd...``."""
    return PREFIX + hexdigest


_DIGEST_LENGTH = len(PREFIX) + HEX_LENGTH
_HEX_DIGITS = "0123456789abcdef"


def is_digest(text: str) -> bool:
    """True when ``text`` is a well-formed ``blake3:<hex>`` digest (64 lowercase hex digits, nothing after them)."""
    # no regex: called for every entry of every tree read; strip() leaves nothing only when every character is a hex digit
    return isinstance(text, str) and len(text) == _DIGEST_LENGTH and text.startswith(PREFIX) and not text[len(PREFIX):].strip(_HEX_DIGITS)


def hex_of(digest: str) -> str:
    """The hex part of a digest; raises :class:`StoreError` when malformed."""
    if not is_digest(digest):
        raise StoreError(f"malformed digest {digest!r}", hint="a digest reads blake3:<64 hex digits>")
    return digest[len(PREFIX):]


def canonical_json(value) -> bytes:
    """The canonical bytes of a JSON value: sorted keys, no spaces, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def digest_bytes(data: bytes) -> str:
    """The digest of some bytes."""
    h = hasher()
    h.update(data)
    return format_digest(h.hexdigest())


HASH_BUFFER = 16 << 20
# One buffer per thread, made once: allocating 16 MiB per file cost ten
# times the hashing of a small file (verify of 100,000 small objects)
_buffers = threading.local()
# Below this size one thread hashes faster than blake3 can split the work
SMALL_FILE = 1 << 20


def _hash_buffer() -> bytearray:
    buffer = getattr(_buffers, "buffer", None)
    if buffer is None:
        buffer = _buffers.buffer = bytearray(HASH_BUFFER)
    return buffer


def digest_of_file(path, *, threads: bool = True) -> str:
    """Rehashes a file through a reused per-thread buffer (constant memory, no mmap).

    blake3 spreads a large buffer over several threads, so this runs at
    memory speed without mapping the whole file into the process (mapped
    pages count in the RSS limits of cluster schedulers).
    """
    from blake3 import blake3

    with open(path, "rb", buffering=0) as fp:
        size = os.fstat(fp.fileno()).st_size
        if size < SMALL_FILE:
            return format_digest(blake3(fp.read()).hexdigest())
        h = blake3(max_threads=blake3.AUTO if threads else 1)
        buffer = _hash_buffer()
        view = memoryview(buffer)
        while count := fp.readinto(buffer):
            h.update(view[:count])
    return format_digest(h.hexdigest())


def read_small_file(path: str, buffer: bytearray, expected: int | None = None, *, follow_symlinks: bool = True) -> int | None:
    """Reads a whole file into ``buffer``: its size, or None when it does not fit.

    Low-level reads (``os.open``/``os.readv`` into a reused buffer: no file
    object, no allocation per file), for hashing many small objects, where
    the per-file Python cost is what bounds the work. Reads until end of
    file, since network file systems may return less than asked.

    :param expected: the size a ``stat`` just gave: once that many bytes are
        read, no further read looks for the end of the file (a system call
        per file saved)
    :param follow_symlinks: False: a symbolic link at ``path`` is not read
        through (:class:`OSError` ``ELOOP``), for a file someone else may
        have planted (a peer store's object)
    """
    flags = os.O_RDONLY | os.O_NONBLOCK  # a fifo among the files read must not block
    fd = os.open(path, flags if follow_symlinks else flags | os.O_NOFOLLOW)
    try:
        return read_small_fd(fd, buffer, expected)
    finally:
        os.close(fd)


def read_small_fd(fd: int, buffer: bytearray, expected: int | None = None) -> int | None:
    """:func:`read_small_file` on a file already open: its size, or None when it does not fit in ``buffer``."""
    size = os.readv(fd, [buffer])
    if size == len(buffer):
        return None
    if size == expected:
        return size
    view = None
    while size:
        view = view or memoryview(buffer)
        more = os.readv(fd, [view[size:]])
        if not more:
            break
        size += more
        if size == len(buffer):
            return None
    return size


def small_file_buffer() -> bytearray:
    """This thread's buffer for :func:`read_small_file`: any file of up to :data:`SMALL_FILE` bytes fits.

    Made once per thread: zero-filling a new one per batch of small files
    costs as much as hashing them.
    """
    buffer = getattr(_buffers, "small", None)
    if buffer is None:
        buffer = _buffers.small = bytearray(SMALL_FILE + 1)
    return buffer


def digest_of_mapped_file(path) -> str:
    """Hashes a large file mapped into memory, on every core (what ``b3sum`` does).

    For ``store verify``, which reads whole stores: mapping avoids copying
    each page into a buffer, and blake3 splits the mapped bytes over all
    cores. Mapped pages count in the process's RSS while hashed, so the
    ingest paths keep :func:`digest_of_file`. Objects are never written in
    place (a new object is a new inode), so the mapping cannot shrink under
    the hasher.
    """
    from blake3 import blake3

    h = blake3(max_threads=blake3.AUTO)
    if hasattr(h, "update_mmap"):
        h.update_mmap(os.fspath(path))
        return format_digest(h.hexdigest())
    return digest_of_file(path)
