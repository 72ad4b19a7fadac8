"""Digest strings: ``blake3:<64 hex>`` in every text a user sees."""

from __future__ import annotations

import json
import re

from ..errors import StoreError

PREFIX = "blake3:"
HEX_LENGTH = 64
_HEX = re.compile(r"^[0-9a-f]{64}$")
CHUNK_SIZE = 1 << 20


def hasher():
    """A fresh blake3 hasher (imported lazily: the CLI's --help never pays for it)."""
    from blake3 import blake3

    return blake3()


def format_digest(hexdigest: str) -> str:
    """``abcd...`` -> ``blake3:abcd...``."""
    return PREFIX + hexdigest


def is_digest(text: str) -> bool:
    """True when ``text`` is a well-formed ``blake3:<hex>`` digest."""
    return isinstance(text, str) and text.startswith(PREFIX) and bool(_HEX.match(text[len(PREFIX):]))


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


def digest_of_file(path, *, threads: bool = True) -> str:
    """Rehashes a file; multi-threaded and memory-mapped for large files."""
    from blake3 import blake3

    h = blake3(max_threads=blake3.AUTO if threads else 1)
    try:
        h.update_mmap(str(path))
    except (ValueError, OSError):
        # mmap of an empty or special file fails: fall back to reading
        h = blake3()
        with open(path, "rb") as fp:
            while chunk := fp.read(CHUNK_SIZE):
                h.update(chunk)
    return format_digest(h.hexdigest())
