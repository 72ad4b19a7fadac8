"""IDX reading: round trips against the reference writer, and malformed files."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from support.idxwriter import idx_bytes, write_idx

from datamaestro.data.tensor import IDX
from datamaestro.errors import DatamaestroError, IntegrityError

DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]
SHAPES = [(7,), (3, 5), (2, 3, 4), (2, 1, 3, 2)]


def random_array(dtype, shape, seed=0) -> np.ndarray:
    """An array spanning the whole range of integer dtypes (signs, high bytes)."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return (rng.standard_normal(shape) * 1e3).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)


def read(path: Path) -> np.ndarray:
    """Reads ``path`` through the data type, as a dataset user would."""
    return IDX.C(id="test.idx@data", path=path).data()


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda shape: f"{len(shape)}d")
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda dtype: np.dtype(dtype).name)
def test_round_trip(tmp_path, dtype, shape, compressed):
    expected = random_array(dtype, shape)
    path = write_idx(
        tmp_path / ("data.idx.gz" if compressed else "data.idx"),
        expected,
        gzip=compressed,
    )

    actual = read(path)

    assert actual.shape == expected.shape
    assert actual.dtype.kind == expected.dtype.kind
    assert actual.dtype.itemsize == expected.dtype.itemsize
    np.testing.assert_array_equal(actual, expected)


def test_plain_file_is_memory_mapped_read_only(tmp_path):
    path = write_idx(tmp_path / "data.idx", random_array(np.int32, (4, 5)))

    array = read(path)

    assert isinstance(array, np.memmap)
    assert not array.flags.writeable


def test_gzip_detected_from_content(tmp_path):
    """A gzipped file is recognized by its bytes, whatever its name."""
    expected = random_array(np.int16, (3, 4))
    path = write_idx(tmp_path / "data.idx", expected, gzip=True)

    np.testing.assert_array_equal(read(path), expected)


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip"])
def test_mnist_like(tmp_path, compressed):
    expected = np.random.default_rng(1).integers(
        0, 255, size=(60000, 28, 28), dtype=np.uint8, endpoint=True
    )
    name = "train-images-idx3-ubyte" + (".gz" if compressed else "")
    path = write_idx(tmp_path / name, expected, gzip=compressed)

    actual = read(path)

    assert actual.shape == (60000, 28, 28)
    np.testing.assert_array_equal(actual, expected)


def test_empty_dimension(tmp_path):
    path = write_idx(tmp_path / "empty.idx", np.zeros((0, 3), dtype=np.float32))

    assert read(path).shape == (0, 3)


def test_native_conversion_keeps_values(tmp_path):
    expected = random_array(np.float64, (6,))
    array = read(write_idx(tmp_path / "data.idx", expected))

    native = array.astype(array.dtype.newbyteorder("="))

    assert native.dtype.isnative
    np.testing.assert_array_equal(native, expected)


# --- malformed files -------------------------------------------------------

VALID = idx_bytes(np.arange(12, dtype=np.int16).reshape(3, 4))


@pytest.mark.parametrize(
    "content, error, words",
    [
        (b"\x01\x00" + VALID[2:], DatamaestroError, "not an IDX file"),
        (b"\x00\x00\x07" + VALID[3:], DatamaestroError, "unknown IDX type code 0x07"),
        (b"\x00\x00\x0b\x00", DatamaestroError, "0 dimensions"),
        (b"\x00\x00", IntegrityError, "too short"),
        (b"", IntegrityError, "too short"),
        (VALID[:6], IntegrityError, "truncated IDX header"),
        (VALID[:-1], IntegrityError, "truncated"),
        (VALID + b"\x00", IntegrityError, "trailing bytes"),
    ],
    ids=[
        "bad-magic",
        "unknown-type",
        "no-dimension",
        "short-magic",
        "empty",
        "short-header",
        "truncated-data",
        "trailing-bytes",
    ],
)
@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip"])
def test_malformed(tmp_path, content, error, words, compressed):
    path = tmp_path / ("bad.idx.gz" if compressed else "bad.idx")
    path.write_bytes(gzip.compress(content, mtime=0) if compressed else content)

    with pytest.raises(error) as raised:
        read(path)

    assert words in str(raised.value)
    assert str(path) in str(raised.value)


def test_truncated_gzip(tmp_path):
    compressed = gzip.compress(VALID, mtime=0)
    path = tmp_path / "bad.idx.gz"
    path.write_bytes(compressed[:-10])

    with pytest.raises(IntegrityError, match="corrupt or truncated gzip") as raised:
        read(path)

    assert str(path) in str(raised.value)


def test_gz_name_without_gzip_content(tmp_path):
    path = tmp_path / "bad.idx.gz"
    path.write_bytes(VALID)

    with pytest.raises(IntegrityError, match="gzip") as raised:
        read(path)

    assert str(path) in str(raised.value)
