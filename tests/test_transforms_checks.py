"""Streaming transforms (gunzip, bunzip2, unxz) and checkers (size, hashes)."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import lzma

import pytest
from blake3 import blake3

from datamaestro.download.checks import Blake3Check, HashCheck, Md5Check, Sha256Check, SizeCheck
from datamaestro.download.transforms import BUNZIP2, GUNZIP, UNXZ, by_name, infer_transforms, recipe_of
from datamaestro.errors import DefinitionError, IntegrityError

DATA = b"".join(b"line %d of the test data\n" % i for i in range(20000))
COMPRESS = {GUNZIP: gzip.compress, BUNZIP2: bz2.compress, UNXZ: lzma.compress}


def run(transform, data: bytes, chunk: int = 4096) -> bytes:
    """Feeds ``data`` in chunks of ``chunk`` bytes and returns the output."""
    state = transform.start()
    out = [state.feed(data[i : i + chunk]) for i in range(0, len(data), chunk)]
    out.append(state.finish())
    return b"".join(out)


@pytest.mark.parametrize("transform", list(COMPRESS), ids=lambda t: t.name)
@pytest.mark.parametrize("chunk", [1, 1000, 1 << 20])
def test_decompress(transform, chunk):
    data = DATA if chunk > 1 else DATA[:3000]
    assert run(transform, COMPRESS[transform](data), chunk) == data


@pytest.mark.parametrize("transform", list(COMPRESS), ids=lambda t: t.name)
def test_multi_member(transform):
    compress = COMPRESS[transform]
    assert run(transform, compress(b"first\n") + compress(b"second\n") + compress(DATA)) == b"first\nsecond\n" + DATA


def test_gzip_zero_padding_is_ignored():
    assert run(GUNZIP, gzip.compress(b"abc") + b"\0" * 100) == b"abc"


def test_gzip_trailing_garbage_is_an_error():
    with pytest.raises(IntegrityError, match="corrupt gzip"):
        run(GUNZIP, gzip.compress(b"abc") + b"garbage")


def test_xz_trailing_garbage_is_ignored_like_lzma_module():
    assert run(UNXZ, lzma.compress(b"abc") + b"garbage") == b"abc"


@pytest.mark.parametrize("transform", list(COMPRESS), ids=lambda t: t.name)
def test_truncated(transform):
    compressed = COMPRESS[transform](DATA)
    with pytest.raises(IntegrityError, match=f"{transform.name}: truncated"):
        run(transform, compressed[: len(compressed) // 2])


@pytest.mark.parametrize("transform", list(COMPRESS), ids=lambda t: t.name)
def test_corrupt_and_empty(transform):
    with pytest.raises(IntegrityError, match="corrupt"):
        run(transform, b"this is not compressed data at all")
    with pytest.raises(IntegrityError, match="empty input"):
        run(transform, b"")


@pytest.mark.parametrize(
    "url, names",
    [
        ("https://example.org/a/train.csv.gz", ["gunzip"]),
        ("https://example.org/a/train.csv.gz?raw=true#x", ["gunzip"]),
        ("https://example.org/a.BZ2", ["bunzip2"]),
        ("file:///data/a.xz", ["unxz"]),
        ("part1.gz", ["gunzip"]),
        ("https://example.org/corpus.tar.gz", []),
        ("https://example.org/corpus.tgz", []),
        ("https://example.org/corpus.tar.xz", []),
        ("https://example.org/data.csv", []),
        ("https://example.org/data.zip?f=a.gz", []),
    ],
)
def test_infer_transforms(url, names):
    assert recipe_of(infer_transforms(url)) == names


def test_by_name():
    assert by_name("gunzip") is GUNZIP and by_name("unxz") is UNXZ
    with pytest.raises(DefinitionError, match="unknown transform 'gzip'") as info:
        by_name("gzip")
    assert "gunzip" in info.value.hint


# -- checkers

DIGESTS = {
    "md5": hashlib.md5(DATA).hexdigest(),
    "sha256": hashlib.sha256(DATA).hexdigest(),
    "blake3": blake3(DATA).hexdigest(),
}
CHECKERS = {
    "size": lambda: SizeCheck(len(DATA)),
    "md5": lambda: Md5Check(DIGESTS["md5"]),
    "sha256": lambda: Sha256Check(DIGESTS["sha256"].upper()),
    "blake3": lambda: Blake3Check("blake3:" + DIGESTS["blake3"]),
    "hashcheck": lambda: HashCheck(DIGESTS["md5"], hashlib.md5),
}


def feed(checker, data: bytes):
    state = checker.start()
    for i in range(0, len(data), 7777):
        state.update(data[i : i + 7777])
    return state


@pytest.mark.parametrize("name", list(CHECKERS))
def test_checker_passes(name):
    feed(CHECKERS[name](), DATA).verify("https://example.org/data")


@pytest.mark.parametrize("name", list(CHECKERS))
def test_checker_fails_with_clear_message(name):
    checker = CHECKERS[name]()
    state = feed(checker, DATA + b"x")
    with pytest.raises(IntegrityError) as info:
        state.verify("https://example.org/data")
    message = str(info.value)
    assert "https://example.org/data" in info.value.message
    assert f"{checker.kind} mismatch" in message
    assert checker.expected() in message and state.actual() in message
    assert "update the definition" in info.value.hint


def test_hashcheck_any_hashlib_constructor(tmp_path):
    check = HashCheck(hashlib.sha1(DATA).hexdigest(), hasher=hashlib.sha1)
    assert check.recipe() == {"sha1": hashlib.sha1(DATA).hexdigest()}
    path = tmp_path / "data"
    path.write_bytes(DATA)
    check.check(path)
    path.write_bytes(b"other")
    with pytest.raises(IntegrityError, match="sha1 mismatch"):
        check.check(path)


def test_recipes():
    assert SizeCheck(3).recipe() == {"size": 3}
    assert Md5Check(DIGESTS["md5"].upper()).recipe() == {"md5": DIGESTS["md5"]}
    assert Blake3Check(DIGESTS["blake3"]).recipe() == {"blake3": "blake3:" + DIGESTS["blake3"]}


@pytest.mark.parametrize(
    "make",
    [
        lambda: Md5Check("xyz"),
        lambda: Md5Check(DIGESTS["sha256"]),
        lambda: Sha256Check("g" * 64),
        lambda: Blake3Check(DIGESTS["md5"]),
        lambda: HashCheck(None),
        lambda: HashCheck(DIGESTS["md5"], hasher="md5"),
        lambda: SizeCheck(-1),
        lambda: SizeCheck("12"),
    ],
)
def test_malformed_definitions(make):
    with pytest.raises(DefinitionError):
        make()
