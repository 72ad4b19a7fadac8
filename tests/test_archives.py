"""ZipDownloader and TarDownloader through the real pipeline, a real HTTP server and real archives.

Every hostile archive must fail with one ArchiveError naming the member,
and leave the store (objects, trees, tmp) and the readable path untouched.
"""

from __future__ import annotations

import io
import os
import random
import stat
import tarfile
import zipfile
from hashlib import md5

import pytest

from datamaestro.data import Folder
from datamaestro.definitions import Dataset, dataset
from datamaestro.download.archive import TarDownloader, ZipDownloader, tardownloader
from datamaestro.download.checks import Md5Check
from datamaestro.errors import ArchiveError, DefinitionError, IntegrityError

FILES = {"a.txt": b"alpha\n", "sub/b.txt": b"beta\n", "sub/deep/c.txt": b"gamma\n"}
# incompressible, so that cutting the compressed archive cuts into the member
NOISE = {"big": random.Random(0).randbytes(200_000)}


# -- building archives
def tar_bytes(entries, mode: str = "w") -> bytes:
    """A tar archive of ``entries``: ``{name: bytes}`` or ``TarInfo`` objects (no data)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:
        for entry in entries.items() if isinstance(entries, dict) else entries:
            if isinstance(entry, tarfile.TarInfo):
                archive.addfile(entry)
                continue
            name, data = entry
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def tar_special(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    if kind == tarfile.CHRTYPE:
        info.devmajor, info.devminor = 1, 3
    return info


def zip_bytes(entries) -> bytes:
    """A zip archive of ``(name, data)`` or ``(name, data, unix mode)`` entries."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for entry in entries.items() if isinstance(entries, dict) else entries:
            name, data, *mode = entry
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (mode[0] if mode else stat.S_IFREG | 0o644) << 16
            archive.writestr(info, data)
    return buffer.getvalue()


# -- running datasets
def make_dataset(dataset_id: str, resource):
    """A class-style dataset with one archive resource, as a plugin would write it."""

    @dataset(id=dataset_id)
    class Archived(Dataset):
        ARCHIVE = resource

        def config(self) -> Folder:
            return Folder.C(path=self.ARCHIVE.path)

    return Archived.__dataset__


def serve(server, path: str, data: bytes) -> str:
    (server.root / path).write_bytes(data)
    return server.url(path)


def output_files(root) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def assert_store_clean(context):
    """Nothing of a refused archive is in the store: no object, no tree, nothing in tmp."""
    layout = context.store.layout
    assert list(context.store.objects.iter_digests()) == []
    assert not layout.trees.exists() or not any(layout.trees.rglob("*"))
    assert not layout.tmp.exists() or list(layout.tmp.iterdir()) == []


def run_refused(context, definition, member: str, url: str) -> ArchiveError:
    with pytest.raises(ArchiveError) as info:
        context.pipeline().run(context.request_of(definition))
    message = str(info.value)
    assert repr(member) in message and url in message
    assert not definition.datapath.exists() and not definition.datapath.is_symlink()
    assert_store_clean(context)
    return info.value


# -- successful extractions
@pytest.mark.parametrize("suffix,mode", [(".tar", "w"), (".tar.gz", "w:gz"), (".tgz", "w:gz"), (".tar.bz2", "w:bz2"), (".tar.xz", "w:xz")])
def test_tar_formats(http_server, dm_context, suffix, mode):
    url = serve(http_server, "files" + suffix, tar_bytes(FILES, mode))
    definition = make_dataset("test.archives.tarred", TarDownloader("files", url))
    result = dm_context.pipeline().run(dm_context.request_of(definition))
    assert output_files(definition.datapath / "files") == FILES
    assert result.outputs["files"].kind == "tree"
    assert result.outputs["files"].size == len((http_server.root / ("files" + suffix)).read_bytes())
    assert list(dm_context.store.layout.tmp.iterdir()) == []


def test_a_python_without_tar_filters_extracts_safely(http_server, dm_context, monkeypatch):
    # Python before 3.11.4 (Debian's 3.11.2, for one) has no extraction filters: datamaestro does not use them
    import tarfile

    monkeypatch.delattr(tarfile, "data_filter")
    monkeypatch.delattr(tarfile.TarFile, "extractall")
    monkeypatch.delattr(tarfile.TarFile, "extract")
    url = serve(http_server, "files.tar", tar_bytes(FILES, "w"))
    definition = make_dataset("test.archives.oldpython", TarDownloader("files", url))
    dm_context.pipeline().run(dm_context.request_of(definition))
    assert output_files(definition.datapath / "files") == FILES
    evil_url = serve(http_server, "evil.tar", tar_bytes([("good.txt", b"g"), tar_special("etc", tarfile.SYMTYPE, "../../etc")]))
    run_refused_again = make_dataset("test.archives.oldpython2", TarDownloader("files", evil_url))
    with pytest.raises(ArchiveError, match="'etc'"):
        dm_context.pipeline().run(dm_context.request_of(run_refused_again))


def test_second_run_downloads_nothing(http_server, dm_context):
    url = serve(http_server, "files.tar.gz", tar_bytes(FILES, "w:gz"))
    dm_context.pipeline().run(dm_context.request_of(make_dataset("test.archives.first", TarDownloader("files", url))))
    definition = make_dataset("test.archives.second", TarDownloader("files", url))
    dm_context.pipeline().run(dm_context.request_of(definition))
    dm_context.pipeline().run(dm_context.request_of(definition))
    assert http_server.count("files.tar.gz") == 1
    assert output_files(definition.datapath / "files") == FILES


def test_zip(http_server, dm_context):
    url = serve(http_server, "files.zip", zip_bytes(FILES))
    definition = make_dataset("test.archives.zipped", ZipDownloader("files", url))
    dm_context.pipeline().run(dm_context.request_of(definition))
    assert output_files(definition.datapath / "files") == FILES


def test_single_top_folder_is_unwrapped(http_server, dm_context):
    """As in the original datamaestro: aclImdb_v1.tar.gz's aclImdb/train is the resource's train."""
    url = serve(http_server, "pkg.tar.gz", tar_bytes({f"pkg/{k}": v for k, v in FILES.items()}, "w:gz"))
    definition = make_dataset("test.archives.unwrapped", TarDownloader("data", url))
    dm_context.pipeline().run(dm_context.request_of(definition))
    assert output_files(definition.datapath / "data") == FILES


@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_subpath_becomes_the_root(http_server, dm_context, kind):
    entries = {f"top/{k}": v for k, v in FILES.items()} | {"top/other/x.txt": b"x", "README": b"r"}
    data = tar_bytes(entries, "w:gz") if kind == "tar" else zip_bytes(entries)
    url = serve(http_server, f"archive.{kind}", data)
    cls = TarDownloader if kind == "tar" else ZipDownloader
    definition = make_dataset(f"test.archives.sub{kind}", cls("data", url, subpath="top/sub/"))
    dm_context.pipeline().run(dm_context.request_of(definition))
    assert output_files(definition.datapath / "data") == {"b.txt": b"beta\n", "deep/c.txt": b"gamma\n"}


@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_files_set_and_predicate(http_server, dm_context, kind):
    data = tar_bytes(FILES) if kind == "tar" else zip_bytes(FILES)
    url = serve(http_server, f"archive.{kind}", data)
    cls = TarDownloader if kind == "tar" else ZipDownloader
    by_set = make_dataset(f"test.archives.set{kind}", cls("data", url, files={"a.txt", "sub/deep/c.txt"}))
    dm_context.pipeline().run(dm_context.request_of(by_set))
    assert output_files(by_set.datapath / "data") == {"a.txt": b"alpha\n", "sub/deep/c.txt": b"gamma\n"}
    by_function = make_dataset(
        f"test.archives.function{kind}",
        cls("data", url, files=lambda path: path.startswith("sub/"), files_key="sub-only"),
    )
    dm_context.pipeline().run(dm_context.request_of(by_function))
    # only sub/ is left, a single folder: unwrapped
    assert output_files(by_function.datapath / "data") == {"b.txt": b"beta\n", "deep/c.txt": b"gamma\n"}


def test_files_relative_to_subpath(http_server, dm_context):
    url = serve(http_server, "archive.tar", tar_bytes(FILES | {"sub/e.txt": b"e"}))
    definition = make_dataset("test.archives.relative", TarDownloader("data", url, subpath="sub", files=["b.txt", "sub/e.txt"]))
    dm_context.pipeline().run(dm_context.request_of(definition))
    assert output_files(definition.datapath / "data") == {"b.txt": b"beta\n", "e.txt": b"e"}


def test_links_inside_the_archive_are_kept(http_server, dm_context):
    tar_entries = [("data/a.txt", b"alpha"), tar_special("data/link", tarfile.SYMTYPE, "a.txt"), tar_special("data/hard", tarfile.LNKTYPE, "data/a.txt"), ("other", b"o")]
    tar_url = serve(http_server, "links.tar", tar_bytes(tar_entries))
    zip_url = serve(http_server, "links.zip", zip_bytes([("data/a.txt", b"alpha"), ("data/link", b"a.txt", stat.S_IFLNK | 0o777), ("other", b"o")]))
    for dataset_id, resource in (("test.archives.tarlinks", TarDownloader("d", tar_url)), ("test.archives.ziplinks", ZipDownloader("d", zip_url))):
        definition = make_dataset(dataset_id, resource)
        dm_context.pipeline().run(dm_context.request_of(definition))
        folder = definition.datapath / "d" / "data"
        assert (folder / "link").is_symlink() and (folder / "link").read_bytes() == b"alpha"
    assert (folder.parent.parent / "d" / "other").read_bytes() == b"o"


def test_checker_applies_to_the_archive_bytes(http_server, dm_context):
    data = tar_bytes(FILES, "w:gz")
    url = serve(http_server, "checked.tar.gz", data)
    good = make_dataset("test.archives.checked", TarDownloader("data", url, checker=Md5Check(md5(data).hexdigest())))
    dm_context.pipeline().run(dm_context.request_of(good))
    bad = make_dataset("test.archives.badcheck", TarDownloader("data", url, checker=Md5Check("0" * 32)))
    with pytest.raises(IntegrityError):
        dm_context.pipeline().run(dm_context.request_of(bad))
    assert list(dm_context.store.layout.tmp.iterdir()) == []


def test_original_argument_order_and_decorator_alias(http_server):
    url = "https://example.org/a.tar"
    assert TarDownloader("data", url, "top/").subpath == "top"
    assert tardownloader("data", url, files=["x"]).files == frozenset({"x"})


def test_definition_errors():
    url = "https://example.org/a.zip"
    with pytest.raises(DefinitionError, match="files_key"):
        ZipDownloader("data", url, files=lambda path: True)
    with pytest.raises(DefinitionError):
        ZipDownloader("data", url, subpath="../up")
    with pytest.raises(DefinitionError):
        ZipDownloader("data", "not a url")
    recipe = ZipDownloader("data", url, subpath="x/", files={"b", "a"}).recipe()
    assert recipe["files"] == ["a", "b"] and recipe["subpath"] == "x"
    keyed = ZipDownloader("data", url, files=str.islower, files_key="lower").recipe()
    assert keyed["files_key"] == "lower" and keyed != ZipDownloader("data", url, files=str.islower, files_key="v2").recipe()


def test_missing_subpath_and_empty_selection(http_server, dm_context):
    url = serve(http_server, "files.tar", tar_bytes(FILES))
    with pytest.raises(ArchiveError, match="no member"):
        dm_context.pipeline().run(dm_context.request_of(make_dataset("test.archives.nosub", TarDownloader("data", url, subpath="nothere"))))
    with pytest.raises(ArchiveError, match="no member"):
        dm_context.pipeline().run(dm_context.request_of(make_dataset("test.archives.nofile", TarDownloader("data", url, files={"zzz"}))))
    assert list(dm_context.store.layout.tmp.iterdir()) == []


# -- invalid and hostile archives
@pytest.mark.parametrize(
    "cls,path,data",
    [
        (ZipDownloader, "junk.zip", b"<html>not found</html>"),
        (TarDownloader, "junk.tar.gz", b"<html>not found</html>"),
        (TarDownloader, "truncated.tar.gz", tar_bytes(NOISE, "w:gz")[:50_000]),
        (TarDownloader, "truncated.tar.bz2", tar_bytes(NOISE, "w:bz2")[:50_000]),
        (TarDownloader, "truncated.tar.xz", tar_bytes(NOISE, "w:xz")[:50_000]),
        (TarDownloader, "truncated.tar", tar_bytes(NOISE)[:50_000]),
        (ZipDownloader, "truncated.zip", zip_bytes(NOISE)[:50_000]),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_invalid_archive(http_server, dm_context, cls, path, data):
    url = serve(http_server, path, data)
    definition = make_dataset("test.archives.invalid", cls("data", url))
    with pytest.raises(ArchiveError, match=f"not a valid {cls.label} archive"):
        dm_context.pipeline().run(dm_context.request_of(definition))
    assert not definition.datapath.exists()
    assert_store_clean(dm_context)


HOSTILE_TARS = {
    "dotdot": ([("good.txt", b"g"), ("../evil", b"e")], "../evil"),
    "nested-dotdot": ([("good.txt", b"g"), ("a/../../evil", b"e")], "a/../../evil"),
    "absolute": ([("good.txt", b"g"), ("/abs/path", b"e")], "/abs/path"),
    "symlink-out": ([("good.txt", b"g"), tar_special("etc", tarfile.SYMTYPE, "../../etc")], "etc"),
    "symlink-absolute": ([("good.txt", b"g"), tar_special("passwd", tarfile.SYMTYPE, "/etc/passwd")], "passwd"),
    # each link looks harmless alone; together c leads out: the data filter catches it
    "symlink-chain": ([("good.txt", b"g"), ("a/x", b"x"), tar_special("a/b", tarfile.SYMTYPE, ".."), tar_special("c", tarfile.SYMTYPE, "a/b/..")], "c"),
    "hardlink-out": ([("good.txt", b"g"), tar_special("hard", tarfile.LNKTYPE, "../outside")], "hard"),
    "hardlink-absolute": ([("good.txt", b"g"), tar_special("hard", tarfile.LNKTYPE, "/etc/passwd")], "hard"),
    "device": ([("good.txt", b"g"), tar_special("null", tarfile.CHRTYPE)], "null"),
    "fifo": ([("good.txt", b"g"), tar_special("pipe", tarfile.FIFOTYPE)], "pipe"),
    # the same chain, the link that uses the other first: resolved through the archive's own links, whatever the order
    "symlink-chain-reversed": ([("good.txt", b"g"), ("a/x", b"x"), tar_special("c", tarfile.SYMTYPE, "a/b/.."), tar_special("a/b", tarfile.SYMTYPE, "..")], "c"),
    # a file written below a link of the archive would go wherever the link points
    "below-symlink": ([("good.txt", b"g"), ("sub/x", b"x"), tar_special("evil", tarfile.SYMTYPE, "sub"), ("evil/planted", b"p")], "evil/planted"),
    "below-file": ([("good.txt", b"g"), ("f", b"f"), ("f/x", b"x")], "f/x"),
    "hardlink-missing": ([("good.txt", b"g"), tar_special("hard", tarfile.LNKTYPE, "nothere")], "hard"),
    "hardlink-to-symlink": ([("good.txt", b"g"), tar_special("link", tarfile.SYMTYPE, "good.txt"), tar_special("hard", tarfile.LNKTYPE, "link")], "hard"),
    "hardlink-through-symlink": ([("sub/flag", b"g"), tar_special("escape", tarfile.SYMTYPE, "sub"), tar_special("hard", tarfile.LNKTYPE, "escape/flag")], "hard"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_TARS))
def test_hostile_tar(http_server, dm_context, case):
    entries, member = HOSTILE_TARS[case]
    url = serve(http_server, "hostile.tar.gz", tar_bytes(entries, "w:gz"))
    run_refused(dm_context, make_dataset("test.archives.hostile", TarDownloader("data", url)), member, url)


def test_hostile_link_out_of_subpath(http_server, dm_context):
    """Inside the archive, but outside the part kept: the output would point out of itself."""
    entries = [("keep/a.txt", b"a"), ("secret.txt", b"s"), tar_special("keep/link", tarfile.SYMTYPE, "../secret.txt")]
    url = serve(http_server, "escape.tar", tar_bytes(entries))
    run_refused(dm_context, make_dataset("test.archives.subescape", TarDownloader("data", url, subpath="keep")), "keep/link", url)


HOSTILE_ZIPS = {
    "dotdot": ([("good.txt", b"g"), ("../evil", b"e")], "../evil"),
    "absolute": ([("good.txt", b"g"), ("/abs/path", b"e")], "/abs/path"),
    "backslash-dotdot": ([("good.txt", b"g"), ("..\\evil", b"e")], "..\\evil"),
    "backslash-absolute": ([("good.txt", b"g"), ("\\abs\\path", b"e")], "\\abs\\path"),
    "drive": ([("good.txt", b"g"), ("C:\\Windows\\evil", b"e")], "C:\\Windows\\evil"),
    "symlink-out": ([("good.txt", b"g"), ("etc", b"../../etc", stat.S_IFLNK | 0o777)], "etc"),
    "symlink-absolute": ([("good.txt", b"g"), ("passwd", b"/etc/passwd", stat.S_IFLNK | 0o777)], "passwd"),
    "symlink-chain": ([("good.txt", b"g"), ("a/x", b"x"), ("a/b", b"..", stat.S_IFLNK | 0o777), ("c", b"a/b/..", stat.S_IFLNK | 0o777)], "c"),
    "device": ([("good.txt", b"g"), ("null", b"", stat.S_IFCHR | 0o666)], "null"),
    "fifo": ([("good.txt", b"g"), ("pipe", b"", stat.S_IFIFO | 0o666)], "pipe"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_ZIPS))
def test_hostile_zip(http_server, dm_context, case):
    entries, member = HOSTILE_ZIPS[case]
    url = serve(http_server, "hostile.zip", zip_bytes(entries))
    run_refused(dm_context, make_dataset("test.archives.hostile", ZipDownloader("data", url)), member, url)


def test_refusal_leaves_the_previous_data_unchanged(http_server, dm_context):
    """A dataset already prepared keeps its readable path when a new archive is refused."""
    url = serve(http_server, "files.tar", tar_bytes(FILES))
    good = make_dataset("test.archives.replaced", TarDownloader("data", url))
    dm_context.pipeline().run(dm_context.request_of(good))
    before = good.datapath.resolve()
    evil_url = serve(http_server, "evil.tar", tar_bytes([("a.txt", b"x"), ("../evil", b"e")]))
    evil = make_dataset("test.archives.replaced", TarDownloader("data", evil_url))
    with pytest.raises(ArchiveError, match="evil"):
        dm_context.pipeline().run(dm_context.request_of(evil))
    assert good.datapath.resolve() == before
    assert output_files(good.datapath / "data") == FILES
    assert list(dm_context.store.layout.tmp.iterdir()) == []
    assert not (dm_context.store.layout.tmp.parent / "evil").exists()


# -- issue 23 point 5: members of one name, zips written by Python


def test_a_file_after_a_link_of_the_same_name_replaces_the_link_and_never_writes_through_it(http_server, dm_context):
    """As tar does, the last member of a name is the one kept; the earlier link is never followed."""
    entries = [("b.txt", b"original"), tar_special("a", tarfile.SYMTYPE, "b.txt"), ("a", b"new")]
    url = serve(http_server, "samename.tar", tar_bytes(entries))
    definition = make_dataset("test.archives.samename", TarDownloader("data", url))
    dm_context.pipeline().run(dm_context.request_of(definition))
    folder = definition.datapath / "data"
    assert not (folder / "a").is_symlink()
    assert output_files(folder) == {"a": b"new", "b.txt": b"original"}


def test_a_link_after_a_file_of_the_same_name_replaces_it(http_server, dm_context):
    entries = [("b.txt", b"b"), ("a", b"old"), tar_special("a", tarfile.SYMTYPE, "b.txt")]
    url = serve(http_server, "samename2.tar", tar_bytes(entries))
    definition = make_dataset("test.archives.samename2", TarDownloader("data", url))
    dm_context.pipeline().run(dm_context.request_of(definition))
    assert os.readlink(definition.datapath / "data" / "a") == "b.txt"


def test_a_folder_and_a_file_of_the_same_name_are_refused(http_server, dm_context):
    entries = [("good.txt", b"g"), tar_special("a", tarfile.DIRTYPE), ("a", b"file")]
    url = serve(http_server, "clash.tar", tar_bytes(entries))
    error = run_refused(dm_context, make_dataset("test.archives.clash", TarDownloader("data", url)), "a", url)
    assert "both a folder and a file" in str(error)
    url = serve(http_server, "clash2.tar", tar_bytes([("a/x", b"x"), ("a", b"file")]))
    error = run_refused(dm_context, make_dataset("test.archives.clash2", TarDownloader("data", url)), "a/x", url)
    assert "is below a file of the archive ('a')" in str(error)


def test_a_hard_link_to_a_file_left_out_takes_its_content(http_server, dm_context):
    entries = [("other/a.txt", b"alpha"), tar_special("keep/hard", tarfile.LNKTYPE, "other/a.txt"), ("keep/b.txt", b"b")]
    url = serve(http_server, "hard.tar", tar_bytes(entries))
    definition = make_dataset("test.archives.hardout", TarDownloader("data", url, subpath="keep"))
    dm_context.pipeline().run(dm_context.request_of(definition))
    assert output_files(definition.datapath / "data") == {"hard": b"alpha", "b.txt": b"b"}


def test_a_zip_written_by_python_writestr_is_extracted(http_server, dm_context):
    """zipfile.writestr with a name writes permissions without a file type: those are files, not special files."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in FILES.items():
            archive.writestr(name, data)
        archive.writestr("empty/", b"")
    url = serve(http_server, "writestr.zip", buffer.getvalue())
    definition = make_dataset("test.archives.writestr", ZipDownloader("files", url))
    dm_context.pipeline().run(dm_context.request_of(definition))
    assert output_files(definition.datapath / "files") == FILES
    assert (definition.datapath / "files" / "empty").is_dir()


def test_long_names_and_paths_are_refused(http_server, dm_context):
    url = serve(http_server, "long.tar", tar_bytes([("good.txt", b"g"), ("/".join(["d" * 200] * 11) + "/x", b"x")]))
    error = run_refused(dm_context, make_dataset("test.archives.long", TarDownloader("data", url)), "/".join(["d" * 200] * 11) + "/x", url)
    assert "longer than 2048 bytes" in str(error)


def test_extracted_files_are_their_objects_and_the_folder_is_the_tree(http_server, dm_context):
    """The extraction folder becomes the materialized tree: each file is its object's inode (duplicates and hard links included), nothing else is in it, and every stamp holds."""
    from datamaestro.store.maintenance import verify

    store = dm_context.store
    first = make_dataset("test.archives.inplace1", TarDownloader("d", serve(http_server, "one.tar", tar_bytes({"x/shared.txt": b"shared\n"}))))
    dm_context.pipeline().run(dm_context.request_of(first))  # the object of "shared" exists before the second archive
    entries = [
        ("x/a.txt", b"same\n"),
        ("x/b.txt", b"same\n"),  # a second file of the same bytes: one object
        ("x/old.txt", b"shared\n"),  # an object stored by another tree
        tar_special("x/hard", tarfile.LNKTYPE, "x/a.txt"),
        tar_special("x/link", tarfile.SYMTYPE, "a.txt"),
        tar_special("x/empty", tarfile.DIRTYPE),
        ("x/sub/c.txt", b"gamma\n"),
    ]
    second = make_dataset("test.archives.inplace2", TarDownloader("d", serve(http_server, "two.tar.gz", tar_bytes(entries, "w:gz"))))
    dm_context.pipeline().run(dm_context.request_of(second))
    tree = os.path.realpath(second.datapath / "d")
    digest = "blake3:" + "".join(tree.split(os.sep)[-2:])
    listed = {entry["path"]: entry for entry in store.trees.iter_tree_entries(digest)}
    found = {}
    for folder, dirs, files in os.walk(tree):
        for name in dirs + files:
            full = os.path.join(folder, name)
            found[os.path.relpath(full, tree)] = full
    assert set(found) == set(listed) | {"sub"}  # no other name left in the folder (a non-empty folder has no entry)
    for path, entry in listed.items():
        if entry["kind"] == "file":
            assert os.path.samestat(os.lstat(found[path]), os.stat(store.objects.path_of(entry["digest"]))), path
            assert stat.S_IMODE(os.lstat(found[path]).st_mode) == 0o444
    assert listed["a.txt"]["digest"] == listed["b.txt"]["digest"] == listed["hard"]["digest"]
    assert os.readlink(found["link"]) == "a.txt" and os.path.isdir(found["empty"])
    assert stat.S_IMODE(os.stat(tree).st_mode) == 0o555 and stat.S_IMODE(os.stat(found["sub"]).st_mode) == 0o555
    assert output_files(second.datapath / "d") == {"a.txt": b"same\n", "b.txt": b"same\n", "old.txt": b"shared\n", "hard": b"same\n", "link": b"same\n", "sub/c.txt": b"gamma\n"}
    assert not store.layout.tmp.exists() or list(store.layout.tmp.iterdir()) == []
    report = verify(store)
    assert report.ok, report


def test_an_extracted_large_tree_starts_the_rotation_of_the_on_use_check(http_server, dm_context):
    """An archive's tree installed in place starts the rotation like a materialization (its first use is one slice, not every file), with the index of its files in the tree's order."""
    from datamaestro.store.treeslices import TreeSlices

    store = dm_context.store
    slices = TreeSlices(store.layout)
    count = 3 * slices.per_slice + 5
    entries = [(f"x/f{i:05d}.txt", f"file {i}\n".encode()) for i in range(count)]
    dataset = make_dataset("test.archives.rotation", TarDownloader("d", serve(http_server, "many.tar.gz", tar_bytes(entries, "w:gz"))))
    dm_context.pipeline().run(dm_context.request_of(dataset))
    tree = os.path.realpath(dataset.datapath / "d")
    digest = "blake3:" + "".join(tree.split(os.sep)[-2:])
    first = slices.next_slice(digest)
    assert first is not None and first.block == 0
    in_order = [entry["digest"] for entry in store.trees.iter_tree_entries(digest) if entry["kind"] == "file"]
    assert len(in_order) == count
    assert [d for d in first.digests] == in_order[: slices.per_slice]
