"""Tensor data types.

Example::

    from datamaestro.data.tensor import IDX

    images = IDX.C(id="com.lecun.mnist@train_images", path=path)
    images.data().shape  # (60000, 28, 28)
"""

from __future__ import annotations

import gzip
import io
import math
import os
import zlib
from abc import ABC, abstractmethod
from pathlib import Path
from struct import Struct
from typing import TYPE_CHECKING, BinaryIO

from datamaestro.errors import DatamaestroError, IntegrityError

from . import Base, File

if TYPE_CHECKING:
    import numpy as np

#: The two bytes every gzip stream starts with (RFC 1952).
GZIP_MAGIC = b"\x1f\x8b"

#: IDX type code (third byte of the magic number) → big-endian numpy dtype
#: (named: numpy is imported only when data is read, not to build a config)
IDX_DTYPES = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}

#: numpy 1.x cannot build arrays of more dimensions; a larger count in a
#: header is a corrupted byte rather than a real tensor.
IDX_MAX_DIMS = 32


class Tensor(Base, ABC):
    """A tensor: data that reads as one numpy array."""

    @abstractmethod
    def data(self) -> np.ndarray:
        """Returns the tensor as a numpy array."""


class IDX(Tensor, File):
    """A tensor in the IDX file format (the format of MNIST).

    An IDX file is a header followed by the values, in C order (the last
    index changes the fastest):

    - a magic number: two zero bytes, a type code (``0x08`` uint8, ``0x09``
      int8, ``0x0B`` int16, ``0x0C`` int32, ``0x0D`` float32, ``0x0E``
      float64) and the number of dimensions;
    - the size of each dimension, a big-endian 4-byte integer;
    - the values, big-endian.

    :meth:`data` maps an uncompressed file in memory (read-only, nothing is
    read until used) and decompresses a gzipped one (a name ending with
    ``.gz`` or gzip content) in memory. Either way the array has the
    big-endian dtype of the file, so that a plain and a gzipped copy give the
    same array; ``array.astype(array.dtype.newbyteorder("="))`` converts it
    to the native byte order.

    Example::

        IDX.C(id="com.lecun.mnist@train_labels", path=path).data()
    """

    MAGIC_NUMBER = Struct(">HBB")
    """Zero, type code, number of dimensions"""

    DIM = Struct(">I")
    """The size of one dimension"""

    def data(self) -> np.ndarray:
        """Returns the tensor as a numpy array.

        :raises DatamaestroError: the file is not an IDX file (bad magic
            number, unknown type code, bad number of dimensions)
        :raises IntegrityError: the file is shorter than its header, holds
            fewer or more bytes than its dimensions announce, or its gzip
            stream is corrupt or truncated
        """
        path = self.present_path()
        with path.open("rb") as fp:
            compressed = path.name.endswith(".gz") or fp.read(2) == GZIP_MAGIC
        if compressed:
            return _read_gzipped(path)
        return _map_plain(path)


def _map_plain(path: Path) -> np.ndarray:
    """Maps an uncompressed IDX file, read-only."""
    import numpy as np

    with path.open("rb") as fp:
        dtype, shape = _read_header(fp, path)
        offset = fp.tell()
        available = os.fstat(fp.fileno()).st_size - offset
    count = _check_size(path, dtype, shape, available)
    if count == 0:
        # mmap cannot map zero bytes, and there is nothing to map anyway.
        return np.empty(shape, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)


def _read_gzipped(path: Path) -> np.ndarray:
    """Decompresses a gzipped IDX file in memory."""
    import numpy as np

    try:
        with gzip.open(path, "rb") as fp:
            content = fp.read()
    except (gzip.BadGzipFile, EOFError, zlib.error) as error:
        raise IntegrityError(
            f"{path}: corrupt or truncated gzip data ({error})",
            hint="the file is probably damaged; download it again",
        ) from None
    buffer = io.BytesIO(content)
    dtype, shape = _read_header(buffer, path)
    offset = buffer.tell()
    count = _check_size(path, dtype, shape, len(content) - offset)
    return np.frombuffer(content, dtype=dtype, count=count, offset=offset).reshape(
        shape
    )


def _read_header(fp: BinaryIO, path: Path) -> tuple[np.dtype, tuple[int, ...]]:
    """Reads and checks an IDX header; leaves ``fp`` at the first value."""
    magic = fp.read(IDX.MAGIC_NUMBER.size)
    if len(magic) < IDX.MAGIC_NUMBER.size:
        raise IntegrityError(
            f"{path}: file too short for an IDX header "
            f"({len(magic)} byte(s), the magic number alone takes 4)"
        )
    zero, type_code, ndim = IDX.MAGIC_NUMBER.unpack(magic)
    if zero != 0:
        raise DatamaestroError(
            f"{path}: not an IDX file (it starts with {magic[:2].hex(' ')}, "
            "an IDX file starts with two zero bytes)"
        )
    dtype = IDX_DTYPES.get(type_code)
    if dtype is None:
        known = ", ".join(f"{code:#04x}" for code in IDX_DTYPES)
        raise DatamaestroError(
            f"{path}: unknown IDX type code {type_code:#04x} (known: {known})"
        )
    if not 1 <= ndim <= IDX_MAX_DIMS:
        raise DatamaestroError(
            f"{path}: IDX header announces {ndim} dimensions "
            f"(expected 1 to {IDX_MAX_DIMS})"
        )
    dims = fp.read(IDX.DIM.size * ndim)
    if len(dims) < IDX.DIM.size * ndim:
        raise IntegrityError(
            f"{path}: truncated IDX header ({ndim} dimensions announced, "
            f"{len(dims) // IDX.DIM.size} present)"
        )
    shape = tuple(size for (size,) in IDX.DIM.iter_unpack(dims))
    import numpy as np

    return np.dtype(dtype), shape


def _check_size(
    path: Path, dtype: np.dtype, shape: tuple[int, ...], available: int
) -> int:
    """Checks that the data holds exactly the announced values; returns their count."""
    count = math.prod(shape)
    expected = count * dtype.itemsize
    if available != expected:
        what = "truncated" if available < expected else "trailing bytes"
        raise IntegrityError(
            f"{path}: {what}: shape {shape} of {dtype.name} needs {expected} "
            f"byte(s) of data, the file holds {available}",
            hint="the file is probably damaged; download it again",
        )
    return count
