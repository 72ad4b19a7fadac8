"""The transport, against a real local HTTP server with injected faults."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import lzma
import os
import sys

import pytest
from blake3 import blake3

from datamaestro.download.checks import Blake3Check, HashCheck, Md5Check, Sha256Check, SizeCheck
from datamaestro.download.transforms import infer_transforms
from datamaestro.errors import DownloadError, IntegrityError, OfflineError
from datamaestro.fetch import BytesSink, Fetcher

MIB = 1 << 20
# Three chunks and a bit: enough to break a body after whole chunks were read
BIG = os.urandom(3 * MIB + 12345)
SMALL = b"".join(b"record %d\n" % i for i in range(5000))


@pytest.fixture
def fetcher():
    """A fetcher with short timeouts and almost no backoff, silent."""
    with Fetcher(connect_timeout=2, read_timeout=2, retries=2, backoff=0.01, progress=False) as fetcher:
        yield fetcher


def free_port() -> int:
    """A port of 127.0.0.1 where nothing listens (a connection is refused)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve(server, name: str, data: bytes) -> str:
    path = server.root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return server.url(name)


class DecompressingSink(BytesSink):
    """Keeps the transformed bytes, as the store's sink does."""

    def __init__(self, transforms):
        super().__init__()
        self.transforms = transforms
        self.reset()

    def write(self, data: bytes) -> None:
        for state in self.states:
            data = state.feed(data)
        super().write(data)

    def reset(self) -> None:
        super().reset()
        self.states = [t.start() for t in self.transforms]

    def finish(self) -> bytes:
        for state in self.states:
            super().write(state.finish())
        return self.getvalue()


def test_plain_download(http_server, fetcher):
    url = serve(http_server, "data/big.bin", BIG)
    sink = BytesSink()
    result = fetcher.fetch(url, sink)
    assert sink.getvalue() == BIG
    assert (result.url, result.served_by, result.size) == (url, url, len(BIG))
    assert result.source_digest == "blake3:" + blake3(BIG).hexdigest()
    assert http_server.count("data/big.bin") == 1
    _, _, headers = http_server.requests[0]
    assert headers["User-Agent"].startswith("datamaestro/")
    assert headers["Accept-Encoding"] == "identity"


@pytest.mark.parametrize(
    "name, compress",
    [
        ("a.txt.gz", gzip.compress),
        ("a.txt.bz2", bz2.compress),
        ("a.txt.xz", lzma.compress),
        ("multi.txt.gz", lambda data: gzip.compress(data[:1000]) + gzip.compress(data[1000:])),
    ],
)
def test_transforms(http_server, fetcher, name, compress):
    raw = compress(SMALL)
    url = serve(http_server, name, raw)
    sink = DecompressingSink(infer_transforms(url))
    result = fetcher.fetch(url, sink)
    assert sink.finish() == SMALL
    assert result.size == len(raw)
    assert result.source_digest == "blake3:" + blake3(raw).hexdigest()


def test_truncated_gzip_file(http_server, fetcher):
    raw = gzip.compress(SMALL)
    url = serve(http_server, "bad.gz", raw[: len(raw) // 2])
    sink = DecompressingSink(infer_transforms(url))
    fetcher.fetch(url, sink)
    with pytest.raises(IntegrityError, match="truncated gzip"):
        sink.finish()


CHECKS = {
    "size": (SizeCheck(len(SMALL)), SizeCheck(len(SMALL) + 1)),
    "blake3": (Blake3Check(blake3(SMALL).hexdigest()), Blake3Check(blake3(b"").hexdigest())),
    "sha256": (Sha256Check(hashlib.sha256(SMALL).hexdigest()), Sha256Check(hashlib.sha256(b"").hexdigest())),
    "md5": (Md5Check(hashlib.md5(SMALL).hexdigest()), Md5Check(hashlib.md5(b"").hexdigest())),
    "hashcheck": (HashCheck(hashlib.md5(SMALL).hexdigest(), hashlib.md5), HashCheck(hashlib.md5(b"").hexdigest(), hashlib.md5)),
}


@pytest.mark.parametrize("kind", list(CHECKS))
def test_checkers(http_server, fetcher, kind):
    good, bad = CHECKS[kind]
    url = serve(http_server, "small.txt", SMALL)
    fetcher.fetch(url, BytesSink(), checkers=[good])
    with pytest.raises(IntegrityError) as info:
        fetcher.fetch(url, BytesSink(), checkers=[good, bad])
    assert url in info.value.message and "mismatch" in info.value.message
    # An integrity error is not retried: one request per fetch
    assert http_server.count("small.txt") == 2


def test_404_is_not_retried(http_server, fetcher):
    url = http_server.url("missing.gz")
    with pytest.raises(DownloadError) as info:
        fetcher.fetch(url, BytesSink())
    assert url in info.value.message and "404" in info.value.message
    assert "set a mirror in settings ([mirrors])" in info.value.hint
    assert http_server.count("missing.gz") == 1


def test_500_then_200(http_server, fetcher):
    url = serve(http_server, "flaky.bin", SMALL)
    http_server.set_fault("flaky.bin", "500-then-200")
    sink = BytesSink()
    fetcher.fetch(url, sink)
    assert sink.getvalue() == SMALL
    assert http_server.count("flaky.bin") == 2


def test_5xx_retries_exhausted(http_server, fetcher):
    url = serve(http_server, "down.bin", SMALL)
    http_server.set_fault("down.bin", "503")
    with pytest.raises(DownloadError, match="HTTP 503.*gave up after 3 attempts"):
        fetcher.fetch(url, BytesSink())
    assert http_server.count("down.bin") == 3


def test_timeout(http_server):
    url = serve(http_server, "slow.bin", SMALL)
    http_server.set_fault("slow.bin", "slow", delay=1.0)
    with Fetcher(read_timeout=0.2, retries=0, progress=False) as fetcher:
        with pytest.raises(DownloadError) as info:
            fetcher.fetch(url, BytesSink())
    assert "timeout" in info.value.message and url in info.value.message
    assert "read_timeout" in info.value.hint


def test_connection_refused_is_final_at_once(fetcher, caplog):
    port = free_port()
    with caplog.at_level("INFO", logger="datamaestro.fetch"):
        with pytest.raises(DownloadError) as info:
            fetcher.fetch(f"http://127.0.0.1:{port}/x", BytesSink())
    assert f"connection failed: 127.0.0.1 refused the connection (nothing listens on {port})" in info.value.message
    assert "gave up" not in info.value.message
    assert "retrying" not in caplog.text


def test_reset_mid_body_resumes_with_range(http_server, fetcher):
    url = serve(http_server, "big.bin", BIG)
    http_server.set_fault("big.bin", "reset", times=1, after=MIB + MIB // 2)
    sink = BytesSink()
    result = fetcher.fetch(url, sink)
    assert sink.getvalue() == BIG and result.size == len(BIG)
    assert result.source_digest == "blake3:" + blake3(BIG).hexdigest()
    first, second = http_server.requests_for("big.bin")
    assert "Range" not in first[2]
    # resumed from what arrived before the reset (read as it comes: up to the reset, not whole MiB chunks)
    start = int(second[2]["Range"].removeprefix("bytes=").removesuffix("-"))
    assert 0 < start <= MIB + MIB // 2


def test_resume_without_range_support_skips(http_server, fetcher):
    url = serve(http_server, "big.bin", BIG)
    http_server.set_fault("big.bin", "no-range")
    http_server.set_fault("big.bin", "truncate", times=1, fraction=0.5)
    sink = BytesSink()
    resets = []
    sink.reset = lambda: resets.append(1)
    fetcher.fetch(url, sink)
    assert sink.getvalue() == BIG and not resets
    assert http_server.count("big.bin") == 2
    assert "Range" in http_server.requests_for("big.bin")[1][2]


def test_truncated_retries_exhausted(http_server, fetcher):
    url = serve(http_server, "cut.bin", SMALL)
    http_server.set_fault("cut.bin", "truncate")
    with pytest.raises(DownloadError, match="truncated") as info:
        fetcher.fetch(url, BytesSink())
    assert url in info.value.message
    assert http_server.count("cut.bin") == 3


def test_redirect(http_server, fetcher):
    final = serve(http_server, "new/data.bin", SMALL)
    http_server.set_fault("old/data.bin", "redirect", to="/new/data.bin")
    sink = BytesSink()
    result = fetcher.fetch(http_server.url("old/data.bin"), sink)
    assert sink.getvalue() == SMALL
    assert result.url == final and result.served_by == final


def test_redirect_loop(http_server, fetcher):
    url = http_server.url("loop")
    http_server.set_fault("loop", "redirect-loop")
    with pytest.raises(DownloadError, match="redirect") as info:
        fetcher.fetch(url, BytesSink())
    assert url in info.value.message and "loop" in info.value.message


def test_mirrors(http_server):
    original = "https://data.example.org/files/"
    mirrors = {original: [http_server.url("dead/"), http_server.url("mirror/")], "https://data.example.org/": ["x"]}
    serve(http_server, "mirror/a.bin", SMALL)
    with Fetcher(mirrors=mirrors, retries=0, progress=False) as fetcher:
        assert fetcher.candidates(original + "a.bin") == [http_server.url("dead/a.bin"), http_server.url("mirror/a.bin"), original + "a.bin"]
        sink = BytesSink()
        result = fetcher.fetch(original + "a.bin", sink)
    assert sink.getvalue() == SMALL
    assert result.url == original + "a.bin"
    assert result.served_by == http_server.url("mirror/a.bin")
    assert http_server.count("dead/a.bin") == 1


def test_bad_mirror_then_original(http_server, fetcher):
    url = serve(http_server, "orig/a.bin", SMALL)
    serve(http_server, "mirror/a.bin", SMALL)
    http_server.set_fault("mirror/a.bin", "wrong-bytes")
    fetcher.mirrors = {http_server.url("orig/"): [http_server.url("mirror/")]}
    sink = BytesSink()
    result = fetcher.fetch(url, sink, checkers=[Sha256Check(hashlib.sha256(SMALL).hexdigest())])
    assert sink.getvalue() == SMALL
    assert result.served_by == url
    assert http_server.count("mirror/a.bin") == 1 and http_server.count("orig/a.bin") == 1


def test_every_source_fails(http_server, fetcher):
    url = http_server.url("orig/none.bin")
    fetcher.mirrors = {http_server.url("orig/"): [http_server.url("mirror/")]}
    with pytest.raises(DownloadError) as info:
        fetcher.fetch(url, BytesSink())
    message = info.value.message
    assert "any of its 2 sources" in message
    assert http_server.url("mirror/none.bin") in message and url in message


def test_offline(http_server):
    url = serve(http_server, "a.bin", SMALL)
    with pytest.raises(OfflineError) as info:
        Fetcher(offline=True).fetch(url, BytesSink())
    assert info.value.urls == [url]
    assert http_server.requests == []


def test_file_url(tmp_path, fetcher):
    path = tmp_path / "local file.bin"
    path.write_bytes(BIG)
    sink = BytesSink()
    result = fetcher.fetch(path.as_uri(), sink, checkers=[SizeCheck(len(BIG))])
    assert sink.getvalue() == BIG and result.url == path.as_uri()
    with pytest.raises(DownloadError, match="no such file"):
        fetcher.fetch((tmp_path / "missing").as_uri(), BytesSink())


def test_unsupported_scheme(fetcher):
    with pytest.raises(DownloadError, match="unsupported URL scheme 'ftp'"):
        fetcher.fetch("ftp://example.org/a", BytesSink())


def test_no_requests_import_at_module_import():
    import subprocess

    code = "import sys, datamaestro.fetch; sys.exit('requests' in sys.modules or 'rich' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_progress_disabled_is_silent(http_server, fetcher, capsys):
    fetcher.fetch(serve(http_server, "a.bin", SMALL), BytesSink())
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_progress_enabled_writes_to_stderr(http_server, capsys):
    with Fetcher(progress=True) as fetcher:
        fetcher.fetch(serve(http_server, "a.bin", SMALL), BytesSink(), description="the a file")
    captured = capsys.readouterr()
    assert "the a file" in captured.err and captured.out == ""


# -- what cannot pass on a retry is not retried; hosts found down are left out


def test_a_host_name_that_does_not_resolve_is_final_at_once(fetcher, caplog):
    url = "http://nonexistent.invalid/data.gz"
    with caplog.at_level("INFO", logger="datamaestro.fetch"):
        with pytest.raises(DownloadError) as info:
            fetcher.fetch(url, BytesSink())
    assert "connection failed: the host name nonexistent.invalid does not resolve" in info.value.message
    assert "retrying" not in caplog.text
    assert fetcher.hosts.down("http://nonexistent.invalid/other.gz") is not None


def test_retries_say_what_they_do(http_server, fetcher, caplog):
    url = serve(http_server, "down.bin", SMALL)
    http_server.set_fault("down.bin", "503")
    with caplog.at_level("INFO", logger="datamaestro.fetch"):
        with pytest.raises(DownloadError):
            fetcher.fetch(url, BytesSink())
    retries = [r.getMessage() for r in caplog.records if r.getMessage().startswith("retrying")]
    assert retries == [
        f"retrying {http_server.base_url} (2/3) in 0.01 s: HTTP 503 Service Unavailable",
        f"retrying {http_server.base_url} (3/3) in 0.02 s: HTTP 503 Service Unavailable",
    ]
    # a server that answers, even badly, is not taken as down
    assert fetcher.hosts.down(url) is None


def test_a_hung_server_is_given_up_within_the_timeout_then_left_out(black_hole):
    with Fetcher(connect_timeout=5, read_timeout=0.25, retries=5, backoff=0.05, timeout=0.6, progress=False) as fetcher:
        with pytest.raises(DownloadError) as info:
            fetcher.fetch(black_hole.url("a.gz"), BytesSink())
        assert "read timeout" in info.value.message and "gave up after" in info.value.message
        assert "--timeout" in info.value.hint
        tried = black_hole.accepted
        # tries until 0.6 s without a byte have passed: two of 0.25 s, not six
        assert tried == 2
        with pytest.raises(DownloadError) as info:
            fetcher.fetch(black_hole.url("b.gz"), BytesSink())
        assert "left out" in info.value.message and "failed for another download of this session (no answer in time)" in info.value.message
        assert black_hole.accepted == tried


def test_a_dead_mirror_is_tried_once_for_many_files(http_server, black_hole):
    original = http_server.url("orig/")
    for index in range(8):
        serve(http_server, f"orig/{index}.bin", SMALL)
    dead = f"http://127.0.0.1:{free_port()}/"
    mirrors = {original: [dead, black_hole.url("/")]}
    with Fetcher(mirrors=mirrors, read_timeout=5, retries=3, backoff=0.05, timeout=0.5, progress=False) as fetcher:
        for index in range(8):
            sink = BytesSink()
            result = fetcher.fetch(f"{original}{index}.bin", sink)
            assert sink.getvalue() == SMALL and result.served_by == f"{original}{index}.bin"
        assert fetcher.hosts.down(dead) is not None
    # the hung mirror was tried for the first file only
    assert 1 <= black_hole.accepted <= 3
    assert all(http_server.count(f"orig/{index}.bin") == 1 for index in range(8))


# -- resume across runs: the bytes of an interrupted download are kept


def test_an_interrupted_download_resumes_in_a_later_run(http_server, tmp_path):
    url = serve(http_server, "big.bin", BIG)
    partial = tmp_path / "partial"
    http_server.set_fault("big.bin", "truncate", times=1, fraction=0.5)
    with Fetcher(retries=0, progress=False) as fetcher:
        with pytest.raises(DownloadError, match="truncated"):
            fetcher.fetch(url, BytesSink(), partial_dir=partial)
    kept = next(partial.glob("*.data")).read_bytes()
    assert len(kept) == len(BIG) // 2 and BIG.startswith(kept)
    _, _, served = http_server.requests[0]
    # a new fetcher (a new process) continues where the first stopped, checked against the validator
    sink = BytesSink()
    with Fetcher(retries=0, progress=False) as fetcher:
        result = fetcher.fetch(url, sink, checkers=[SizeCheck(len(BIG))], partial_dir=partial)
    assert sink.getvalue() == BIG and result.source_digest == "blake3:" + blake3(BIG).hexdigest()
    _, _, headers = http_server.requests[1]
    assert headers["Range"] == f"bytes={len(kept)}-" and headers["If-Range"].startswith('"')
    assert not partial.exists()  # done: nothing kept


def test_a_file_changed_since_the_interruption_is_downloaded_whole(http_server, tmp_path):
    url = serve(http_server, "big.bin", BIG)
    partial = tmp_path / "partial"
    http_server.set_fault("big.bin", "truncate", times=1, fraction=0.5)
    with Fetcher(retries=0, progress=False) as fetcher, pytest.raises(DownloadError):
        fetcher.fetch(url, BytesSink(), partial_dir=partial)
    changed = os.urandom(len(BIG))
    path = http_server.root / "big.bin"
    path.write_bytes(changed)
    os.utime(path, ns=(path.stat().st_mtime_ns + 10**9,) * 2)
    sink = BytesSink()
    with Fetcher(retries=0, progress=False) as fetcher:
        fetcher.fetch(url, sink, partial_dir=partial)
    assert sink.getvalue() == changed
    assert http_server.count("big.bin") == 2


def test_a_missing_file_or_bad_bytes_keep_nothing(http_server, tmp_path):
    partial = tmp_path / "partial"
    url = serve(http_server, "small.txt", SMALL)
    with Fetcher(retries=0, progress=False) as fetcher:
        with pytest.raises(DownloadError):
            fetcher.fetch(http_server.url("none.bin"), BytesSink(), partial_dir=partial)
        with pytest.raises(IntegrityError):
            fetcher.fetch(url, BytesSink(), checkers=[SizeCheck(1)], partial_dir=partial)
    assert not partial.exists()


# -- parallel range downloads


def parallel_fetcher(**options) -> Fetcher:
    """A fetcher that splits files of 1 MiB and more over 4 connections."""
    return Fetcher(connections=4, parallel_min_size=MIB, retries=2, backoff=0.01, progress=False, **options)


def ranges(server, path: str) -> list[str]:
    return [headers["Range"] for _, _, headers in server.requests_for(path) if "Range" in headers]


def test_a_large_file_is_fetched_in_parts_then_hashed_whole(http_server, tmp_path):
    url = serve(http_server, "big.bin", BIG)
    sink = BytesSink()
    with parallel_fetcher() as fetcher:
        result = fetcher.fetch(url, sink, checkers=[SizeCheck(len(BIG))], partial_dir=tmp_path / "partial")
    assert sink.getvalue() == BIG and result.size == len(BIG)
    assert result.source_digest == "blake3:" + blake3(BIG).hexdigest()
    # the first request learns the size, then one range per MiB
    assert sorted(ranges(http_server, "big.bin")) == sorted(f"bytes={i * MIB}-{min(len(BIG), (i + 1) * MIB) - 1}" for i in range(4))
    assert not (tmp_path / "partial").exists()


def test_a_broken_part_is_retried_on_its_own(http_server, tmp_path):
    url = serve(http_server, "big.bin", BIG)
    # the first request (headers only) and one part are cut in half
    http_server.set_fault("big.bin", "truncate", times=2, fraction=0.5)
    sink = BytesSink()
    with parallel_fetcher() as fetcher:
        fetcher.fetch(url, sink, partial_dir=tmp_path / "partial")
    assert sink.getvalue() == BIG
    asked = ranges(http_server, "big.bin")
    assert len(asked) == 5
    # the retry asks for the second half of the broken part only: the part whose request reached the
    # server first, a whole MiB or the short last one (on a busy machine its request may come first)
    spans = [tuple(int(bound) for bound in r[6:].split("-")) for r in asked]
    assert any(start == first + (end - first + 1) // 2 for first, end in spans for start, stop in spans if stop == end and start > first), asked


def test_a_server_without_ranges_gives_one_stream(http_server, tmp_path):
    url = serve(http_server, "big.bin", BIG)
    http_server.set_fault("big.bin", "no-range")
    sink = BytesSink()
    with parallel_fetcher() as fetcher:
        fetcher.fetch(url, sink, partial_dir=tmp_path / "partial")
        assert sink.getvalue() == BIG and http_server.count("big.bin") == 1
        # small files, and fetches that keep no partial file, are never split
        fetcher.fetch(serve(http_server, "small.bin", SMALL), BytesSink(), partial_dir=tmp_path / "partial")
        http_server.clear_faults()
        fetcher.fetch(url, BytesSink())
    assert ranges(http_server, "small.bin") == [] and ranges(http_server, "big.bin") == []


def test_a_resumed_download_that_fails_its_check_is_downloaded_again_whole(http_server, tmp_path):
    url = serve(http_server, "big.bin", BIG)
    partial = tmp_path / "partial"
    http_server.set_fault("big.bin", "truncate", times=1, fraction=0.5)
    with Fetcher(retries=0, progress=False) as fetcher, pytest.raises(DownloadError):
        fetcher.fetch(url, BytesSink(), partial_dir=partial)
    # other bytes behind the same validators (same size, same mtime): the resumed whole is wrong
    path = http_server.root / "big.bin"
    mtime = path.stat().st_mtime_ns
    changed = os.urandom(len(BIG))
    path.write_bytes(changed)
    os.utime(path, ns=(mtime, mtime))
    sink = BytesSink()
    with Fetcher(retries=0, progress=False) as fetcher:
        fetcher.fetch(url, sink, checkers=[Sha256Check(hashlib.sha256(changed).hexdigest())], partial_dir=partial)
    assert sink.getvalue() == changed
    assert [h.get("Range") for _, _, h in http_server.requests_for("big.bin")] == [None, f"bytes={len(BIG) // 2}-", None]
