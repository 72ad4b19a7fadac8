"""Hostile archives and decompression bombs from an origin, through the console script (issue 23, points 1 and 2).

The test plugin's ``org.hostilearchives`` datasets download from the test
server (the ``[mirrors]`` setting points the plugin's dead URLs at it). A
sentinel folder ``outside`` next to the store must stay as it was; a refused
download leaves nothing in the store (no object, no tree, nothing in
``tmp/``) and no readable folder; the message is one line naming the
resource, never a traceback.
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import zipfile
from pathlib import Path

import pytest

from support.lockproject import dm
from support.mnistdata import mirror_settings

MiB = 1 << 20


def snapshot(folder: Path) -> dict:
    """Every entry below a folder: kind, content, mode (links not followed)."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            content = os.readlink(path) if os.path.islink(path) else Path(path).read_bytes() if os.path.isfile(path) else None
            found[os.path.relpath(path, folder)] = (st.st_mode, content)
    return found


@pytest.fixture
def hostile(http_server, tmp_path):
    """The test server's ``hostile/`` folder, the data dir ``tmp_path/data`` and a sentinel ``outside`` next to its store."""
    (http_server.root / "hostile").mkdir()
    outside = tmp_path / "data" / "outside"
    outside.mkdir(parents=True)
    (outside / "flag").write_text("the flag\n")
    os.chmod(outside / "flag", 0o600)
    return http_server


def settings(server, text: str = "") -> None:
    """The user settings: ``text``, no retries, and the mirror to the test server."""
    path = mirror_settings(server.base_url)
    path.write_text("retries = 0\n" + text + path.read_text())


def prepare(tmp_path: Path, dataset_id: str):
    """``datamaestro --data DATA prepare ID`` (whatever its exit status)."""
    return dm(tmp_path, "--quiet", "prepare", dataset_id, data=tmp_path / "data", check=False)


def assert_nothing_kept(tmp_path: Path, dataset_id: str, outside_before: dict) -> None:
    """No object, no tree, nothing in tmp/, no readable folder; the sentinel unchanged."""
    store = tmp_path / "data" / "store"
    assert snapshot(tmp_path / "data" / "outside") == outside_before
    for folder in ("objects", "trees"):
        assert not (store / folder).exists() or not any(path.is_file() or path.is_symlink() for path in (store / folder).rglob("*")), folder
    assert not (store / "tmp").exists() or [p.name for p in (store / "tmp").iterdir() if p.name != "partial"] == []
    assert not (tmp_path / "data" / "data" / "image" / Path(*dataset_id.split("."))).exists()


def error_line(result) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result.stderr[result.stderr.index("error:") :]


# -- issue 23 point 1: a tar escaping past PATH_MAX (CVE-2025-4517 class)


def path_max_escape_tar(hard_link: bool = True) -> bytes:
    """The published escape: 16 long folders reached through short links, a link past PATH_MAX pointing back up,
    then ``escape`` -> that link's ``../../../outside``, a file through it, and ``flaglink``: a hard link to
    ``escape/flag`` followed by a regular file of that name, which writes (and chmods) through the hard link.

    Every member is lexically inside the folder; ``realpath`` stops resolving
    past PATH_MAX on Pythons without the 2025 tarfile fixes, so the ``data``
    filter lets it through.
    """
    component = "d" * 247
    steps = "abcdefghijklmnop"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        path = ""
        for step in steps:
            folder = tarfile.TarInfo(os.path.join(path, component))
            folder.type = tarfile.DIRTYPE
            tar.addfile(folder)
            link = tarfile.TarInfo(os.path.join(path, step))
            link.type = tarfile.SYMTYPE
            link.linkname = component
            tar.addfile(link)
            path = os.path.join(path, component)
        long_link = os.path.join(*steps, "l" * 254)
        back = tarfile.TarInfo(long_link)
        back.type = tarfile.SYMTYPE
        back.linkname = "../" * len(steps)
        tar.addfile(back)
        # the extraction folder is <data>/store/tmp/<name>: three levels up is <data>, holding outside/
        escape = tarfile.TarInfo("escape")
        escape.type = tarfile.SYMTYPE
        escape.linkname = long_link + "/../../../outside"
        tar.addfile(escape)
        planted = tarfile.TarInfo("escape/planted.txt")
        planted.size = 8
        tar.addfile(planted, io.BytesIO(b"planted\n"))
        if hard_link:
            hard = tarfile.TarInfo("flaglink")
            hard.type = tarfile.LNKTYPE
            hard.linkname = "escape/flag"
            tar.addfile(hard)
        overwrite = tarfile.TarInfo("flaglink")
        overwrite.mode = 0o777
        overwrite.size = 12
        tar.addfile(overwrite, io.BytesIO(b"overwritten\n"))
    return buffer.getvalue()


@pytest.mark.parametrize("hard_link", [True, False], ids=["hard-link", "symlinks-only"])
def test_a_tar_escaping_past_path_max_writes_nothing_outside(hostile, tmp_path, hard_link):
    settings(hostile)
    (hostile.root / "hostile" / "escape.tar").write_bytes(path_max_escape_tar(hard_link))
    before = snapshot(tmp_path / "data" / "outside")

    result = prepare(tmp_path, "org.hostilearchives.escape")

    message = error_line(result)
    assert "org.hostilearchives.escape/data" in message and "hostile/escape.tar: member" in message
    assert "the archive was not extracted" in message
    assert_nothing_kept(tmp_path, "org.hostilearchives.escape", before)
    assert dm(tmp_path, "store", "verify", data=tmp_path / "data").returncode == 0


# -- issue 23 point 2: decompression bombs, the bounds set low in the settings (no GiB is written)


def zeros(size: int) -> bytes:
    return bytes(size)


def tar_of(files: dict[str, bytes], mode: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def zip_of(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


BOMBS = {
    "gzbomb": ("bomb.txt.gz", lambda: gzip.compress(zeros(3 * MiB))),
    "zipbomb": ("bomb.zip", lambda: zip_of({"small.txt": b"s", "bomb.bin": zeros(3 * MiB)})),
    "xzbomb": ("bomb.tar.xz", lambda: tar_of({"bomb.bin": zeros(3 * MiB)}, "w:xz")),
    # many members, each small: only their sum is a bomb
    "bz2bomb": ("bomb.tar.bz2", lambda: tar_of({f"part{i:03}.bin": zeros(64 << 10) for i in range(48)}, "w:bz2")),
}


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_a_bomb_past_the_largest_expansion_is_refused(hostile, tmp_path, name):
    filename, make = BOMBS[name]
    data = make()
    assert len(data) < 64 << 10  # small download, large expansion
    (hostile.root / "hostile" / filename).write_bytes(data)
    settings(hostile, f"max_expanded_size = {2 * MiB}\n")
    before = snapshot(tmp_path / "data" / "outside")

    result = prepare(tmp_path, f"org.hostilearchives.{name}")

    message = error_line(result)
    assert f"org.hostilearchives.{name}/" in message and filename in message
    assert f"more than max_expanded_size = {2 * MiB} (2.0 MiB)" in message
    assert message.count("error:") == 1
    assert_nothing_kept(tmp_path, f"org.hostilearchives.{name}", before)


@pytest.mark.parametrize("name", ["gzbomb", "xzbomb"])
def test_a_bomb_past_the_largest_ratio_is_refused(hostile, tmp_path, name):
    filename, make = BOMBS[name]
    (hostile.root / "hostile" / filename).write_bytes(make())
    # a download counts as at least 1 MiB: 2 x 1 MiB < 3 MiB
    settings(hostile, "max_expansion_ratio = 2\n")
    before = snapshot(tmp_path / "data" / "outside")

    result = prepare(tmp_path, f"org.hostilearchives.{name}")

    assert "max_expansion_ratio = 2 times its download" in error_line(result)
    assert_nothing_kept(tmp_path, f"org.hostilearchives.{name}", before)


def test_within_the_bounds_the_same_files_are_prepared(hostile, tmp_path):
    (hostile.root / "hostile" / "bomb.txt.gz").write_bytes(gzip.compress(zeros(3 * MiB)))
    (hostile.root / "hostile" / "bomb.tar.xz").write_bytes(tar_of({"bomb.bin": zeros(3 * MiB)}, "w:xz"))
    settings(hostile, f"max_expanded_size = {4 * MiB}\nmax_expansion_ratio = 4\n")
    assert prepare(tmp_path, "org.hostilearchives.gzbomb").returncode == 0
    assert prepare(tmp_path, "org.hostilearchives.xzbomb").returncode == 0
    folder = tmp_path / "data" / "data" / "image" / "org" / "hostilearchives"
    assert (folder / "gzbomb" / "bomb.txt").stat().st_size == 3 * MiB
    assert (folder / "xzbomb" / "data" / "bomb.bin").stat().st_size == 3 * MiB


def test_the_bounds_are_settings_that_are_checked(hostile, tmp_path):
    settings(hostile, "max_expansion_ratio = -1\n")
    result = prepare(tmp_path, "org.hostilearchives.gzbomb")
    assert result.returncode == 2 and "'max_expansion_ratio' must be a positive number" in result.stderr


def test_an_expansion_stops_when_the_disk_is_almost_full(http_server, dm_context, monkeypatch):
    """The free space is checked as bytes arrive: the expansion stops before the reserve, and nothing is kept."""
    from datamaestro.errors import ArchiveError
    from datamaestro.store import expansion
    from test_archives import make_dataset, serve
    from datamaestro.download.single import FileDownloader

    real_statvfs = os.statvfs
    tmp = dm_context.store.layout.tmp

    class SmallDisk:
        """The store's disk as if it had 1 MiB more than the reserve before the expansion started."""

        def __init__(self, st):
            used = sum(path.stat().st_size for path in tmp.rglob("*") if path.is_file())
            self._real = st
            self.f_frsize = st.f_frsize
            self.f_bavail = (expansion.FREE_SPACE_RESERVE + MiB - used) // st.f_frsize

        def __getattr__(self, name):  # the rest as the real disk says (os.statvfs is patched for every caller)
            return getattr(self._real, name)

    monkeypatch.setattr(expansion.os, "statvfs", lambda path: SmallDisk(real_statvfs(path)))
    monkeypatch.setattr(expansion, "FREE_SPACE_EVERY", 256 << 10)
    url = serve(http_server, "big.txt.gz", gzip.compress(zeros(3 * MiB)))
    definition = make_dataset("test.hostile.diskfull", FileDownloader("big.txt", url))
    with pytest.raises(ArchiveError, match="disk is almost full"):
        dm_context.pipeline().run(dm_context.request_of(definition))
    assert list(dm_context.store.objects.iter_digests()) == []
    assert [p for p in dm_context.store.layout.tmp.iterdir() if p.name != "partial"] == []


def test_a_concatenation_of_gzipped_members_is_bounded_as_a_whole(http_server, tmp_path):
    """ConcatDownloader decompresses every member of a tar into one file: the bound is on the sum."""
    from datamaestro.context import Context
    from datamaestro.download.single import ConcatDownloader
    from datamaestro.errors import ArchiveError
    from test_archives import make_dataset, serve

    parts = {f"part{i}.gz": gzip.compress(zeros(MiB)) for i in range(3)}
    url = serve(http_server, "parts.tar", tar_of(parts, "w"))
    overrides = {"data_dir": tmp_path / "data", "max_expanded_size": 2 * MiB}
    with Context(overrides=overrides, progress=False, project_dir=tmp_path) as context:
        definition = make_dataset("test.hostile.concat", ConcatDownloader("all.bin", url))
        with pytest.raises(ArchiveError, match=f"expands to more than max_expanded_size = {2 * MiB}"):
            context.pipeline().run(context.request_of(definition))
        assert list(context.store.objects.iter_digests()) == []
        assert [p for p in context.store.layout.tmp.iterdir() if p.name != "partial"] == []


def test_a_cloned_project_cannot_lift_the_bounds_until_it_is_trusted(hostile, tmp_path):
    """A project's pyproject.toml raising max_expanded_size / max_expansion_ratio is someone else's say: the user's bounds hold."""
    (hostile.root / "hostile" / "bomb.txt.gz").write_bytes(gzip.compress(zeros(3 * MiB)))
    settings(hostile, f"max_expanded_size = {2 * MiB}\n")
    (tmp_path / "pyproject.toml").write_text(f"[tool.datamaestro]\nmax_expanded_size = {1 << 40}\nmax_expansion_ratio = 1000000\n")
    before = snapshot(tmp_path / "data" / "outside")

    result = prepare(tmp_path, "org.hostilearchives.gzbomb")

    assert f"more than max_expanded_size = {2 * MiB} (2.0 MiB)" in error_line(result)
    assert "max_expanded_size, max_expansion_ratio in [tool.datamaestro]: ignored" in result.stderr
    assert_nothing_kept(tmp_path, "org.hostilearchives.gzbomb", before)
