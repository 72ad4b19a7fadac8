"""A small reference IDX writer for tests and benchmarks.

Written from the IDX format description (not from the reader, so that a
misreading of the format shows up as a test failure rather than cancelling
out): a magic number ``0x00 0x00 <type code> <number of dimensions>``, one
big-endian 4-byte size per dimension, then the values, big-endian, in C
order.
"""

from __future__ import annotations

import gzip as gzip_module
import struct
from pathlib import Path

import numpy as np

#: numpy dtype kind + item size → (IDX type code, big-endian dtype).
TYPE_CODES = {
    ("u", 1): (0x08, ">u1"),
    ("i", 1): (0x09, ">i1"),
    ("i", 2): (0x0B, ">i2"),
    ("i", 4): (0x0C, ">i4"),
    ("f", 4): (0x0D, ">f4"),
    ("f", 8): (0x0E, ">f8"),
}


def idx_bytes(array: np.ndarray) -> bytes:
    """Returns the IDX encoding of ``array``.

    :raises ValueError: IDX has no type code for the array's dtype
    """
    array = np.asarray(array)
    key = (array.dtype.kind, array.dtype.itemsize)
    if key not in TYPE_CODES:
        raise ValueError(f"IDX cannot store {array.dtype}")
    type_code, big_endian = TYPE_CODES[key]
    header = struct.pack(">BBBB", 0, 0, type_code, array.ndim)
    header += b"".join(struct.pack(">I", size) for size in array.shape)
    return header + np.ascontiguousarray(array, dtype=big_endian).tobytes(order="C")


def write_idx(path: Path, array: np.ndarray, *, gzip: bool = False) -> Path:
    """Writes ``array`` to ``path`` in the IDX format, gzipped if asked.

    Example::

        write_idx(tmp_path / "labels.idx.gz", np.arange(10, dtype=np.uint8),
                  gzip=True)
    """
    path = Path(path)
    content = idx_bytes(array)
    if gzip:
        # mtime=0: the same array always gives the same bytes.
        content = gzip_module.compress(content, mtime=0)
    path.write_bytes(content)
    return path
