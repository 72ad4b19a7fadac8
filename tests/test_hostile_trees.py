"""Hostile tree documents through ``Store.materialize``: refused whole, nothing written, nothing outside the store.

A tree document can come from anyone who can push to a remote cache or
serve a peer store; it is stored under its own (correct) digest, so only
its content can be judged. A sentinel folder ``outside`` next to the store
must stay as it was, the store must hold no materialized tree and nothing
in ``tmp/``.
"""

from __future__ import annotations

import errno
import os

import pytest

from datamaestro.errors import StoreError, UntrustedInputError
from datamaestro.store import Store
from datamaestro.store.digests import canonical_json
from datamaestro.store.treewriter import TreeRefusal, TreeWriter

CONTENT = b"hello"


@pytest.fixture
def store(tmp_path) -> Store:
    """An empty store, with a sentinel folder ``outside`` next to it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "flag").write_text("untouched")
    return Store(tmp_path / "store")


def snapshot(folder) -> dict:
    """Every entry below a folder, with its kind and content (links not followed)."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                found[os.path.relpath(path, folder)] = ("link", os.readlink(path))
            elif os.path.isfile(path):
                with open(path, "rb") as fp:
                    found[os.path.relpath(path, folder)] = ("file", fp.read())
            else:
                found[os.path.relpath(path, folder)] = ("dir", None)
    return found


def file_entry(store: Store, path: str, data: bytes = CONTENT, size: int | None = None) -> dict:
    """A file entry whose object is in the store."""
    digest = store.objects.ingest_stream([data])
    return {"path": path, "kind": "file", "digest": digest, "size": len(data) if size is None else size}


def tree_document(entries, *, format: str = "datamaestro-tree/2", sort: bool = True) -> bytes:
    """The bytes of a tree document as a hostile remote may write it: any entries, sorted by path unless ``sort=False``.

    Format 2: one canonical JSON line each for the header, every entry, and
    the end line giving the number of entries; format 1: the JSON document
    of earlier releases.
    """
    if sort:
        entries = sorted(entries, key=lambda e: str(e.get("path")) if isinstance(e, dict) else str(e))
    if format == "datamaestro-tree/1":
        return canonical_json({"format": format, "entries": entries})
    lines = [canonical_json({"format": format}), *(canonical_json(entry) for entry in entries), canonical_json({"entries": len(entries)})]
    return b"\n".join(lines) + b"\n"


def stored_tree(store: Store, entries, *, format: str = "datamaestro-tree/2", sort: bool = True) -> str:
    """Stores a tree document as a remote would hand it over: an object under its own digest."""
    return store.objects.ingest_stream([tree_document(entries, format=format, sort=sort)])


def assert_refused(store: Store, digest: str, words: str) -> UntrustedInputError:
    """Materializing is refused with one message naming the tree; nothing is left, nothing outside changed."""
    outside = store.root.parent / "outside"
    before = snapshot(outside)
    with pytest.raises(UntrustedInputError) as info:
        store.materialize("tree", digest)
    message = str(info.value)
    assert message.startswith(f"refused tree {digest}"), message
    assert words in message, message
    assert snapshot(outside) == before
    assert not store.trees.has(digest)
    assert not store.layout.trees.exists() or not any(store.layout.trees.rglob("*"))
    assert list(store.layout.tmp.iterdir()) == []
    return info.value


def test_a_valid_tree_with_inner_links_is_materialized(store):
    entries = [
        file_entry(store, "a/b/x.txt"),
        {"path": "a/link", "kind": "symlink", "target": "b/x.txt"},
        {"path": "up", "kind": "symlink", "target": "a/b/../link"},
        {"path": "empty", "kind": "dir"},
    ]
    folder = store.materialize("tree", stored_tree(store, entries))
    assert (folder / "a" / "link").read_bytes() == CONTENT and (folder / "up").read_bytes() == CONTENT
    assert (folder / "empty").is_dir()
    assert os.stat(folder / "a" / "b" / "x.txt").st_ino == os.stat(store.objects.path_of(entries[0]["digest"])).st_ino


@pytest.mark.parametrize(
    "path,words",
    [
        ("../../../outside/planted.txt", "leaves the tree"),
        ("a/../../../../outside/planted.txt", "leaves the tree"),
        ("a/./b", "not a normalised path"),
        ("a//b", "not a normalised path"),
        ("a/", "not a normalised path"),
        ("a\0b", "NUL"),
        ("", "empty path"),
        ("x" * 300, "longer than 255 bytes"),
        ("/".join(["d" * 200] * 20), "longer than 2048 bytes"),
    ],
)
def test_a_path_that_is_not_a_relative_normalised_path_is_refused(store, path, words):
    assert_refused(store, stored_tree(store, [file_entry(store, "good.txt"), file_entry(store, path)]), words)


def test_an_absolute_path_is_refused(store):
    planted = str(store.root.parent / "outside" / "planted.txt")
    assert_refused(store, stored_tree(store, [file_entry(store, planted)]), "is an absolute path")


@pytest.mark.parametrize(
    "target,words",
    [
        ("/etc", "absolute path '/etc'"),
        ("../../../outside", "leaves the tree"),
        ("a/../..", "leaves the tree"),
    ],
)
def test_a_link_leading_out_of_the_tree_is_refused(store, target, words):
    digest = stored_tree(store, [file_entry(store, "a/x.txt"), {"path": "link", "kind": "symlink", "target": target}])
    assert_refused(store, digest, words)


def test_a_chain_of_links_each_harmless_alone_is_refused(store):
    # a/b -> .. is the root; c -> a/b/.. is then the root's parent
    entries = [file_entry(store, "a/x.txt"), {"path": "a/b", "kind": "symlink", "target": ".."}, {"path": "c", "kind": "symlink", "target": "a/b/.."}]
    assert_refused(store, stored_tree(store, entries), "'c' is a symbolic link to 'a/b/..', which leaves the tree")


def test_a_loop_of_links_is_refused(store):
    entries = [{"path": "a", "kind": "symlink", "target": "b"}, {"path": "b", "kind": "symlink", "target": "a"}]
    assert_refused(store, stored_tree(store, entries), "loops")


@pytest.mark.parametrize(
    "target,words",
    [
        ("sub", "is below the symbolic link 'evil'"),
        # read in order, the link itself is refused first
        ("/tmp", "'evil' is a symbolic link to the absolute path '/tmp'"),
        ("../../../outside", "is below the symbolic link 'evil'"),
    ],
)
def test_an_entry_below_a_symbolic_link_is_refused(store, target, words):
    entries = [{"path": "sub", "kind": "dir"}, {"path": "evil", "kind": "symlink", "target": target}, file_entry(store, "evil/planted.txt")]
    assert_refused(store, stored_tree(store, entries), words)


def test_an_entry_below_a_file_is_refused(store):
    assert_refused(store, stored_tree(store, [file_entry(store, "f"), file_entry(store, "f/g")]), "is below the file 'f'")


def test_a_duplicate_entry_is_refused(store):
    entries = [file_entry(store, "x"), {"path": "x", "kind": "symlink", "target": "y"}]
    assert_refused(store, stored_tree(store, entries), "'x' appears twice")


def test_a_size_that_is_not_the_objects_is_refused(store):
    assert_refused(store, stored_tree(store, [file_entry(store, "a"), file_entry(store, "b", size=999)]), "'b' says 999 bytes, its object")


@pytest.mark.parametrize(
    "entry,words",
    [
        ({"path": "x", "kind": "hardlink", "target": "y"}, "has the kind 'hardlink'"),
        ({"path": "x", "kind": "fifo"}, "has the kind 'fifo'"),
        ({"path": "x", "kind": "file", "size": 1}, "has the fields"),
        ({"path": "x", "kind": "dir", "mode": 0o4755}, "has the fields"),
        ({"path": "x", "kind": "file", "digest": "blake3:../../../outside/flag", "size": 1}, "malformed digest"),
        ({"path": "x", "kind": "file", "digest": "blake3:" + "0" * 64, "size": "1"}, "not a whole number"),
        ({"path": "x", "kind": "symlink", "target": ""}, "without a target"),
        ({"path": 3, "kind": "dir"}, "not a string"),
        ("x", "is not an object"),
    ],
)
def test_a_malformed_entry_is_refused(store, entry, words):
    assert_refused(store, stored_tree(store, [entry]), words)


def test_a_document_that_is_not_a_tree_is_refused(store):
    assert_refused(store, store.objects.ingest_stream([b"not json"]), "not a tree document")
    assert_refused(store, stored_tree(store, [], format="other"), "not a tree document")
    assert_refused(store, store.objects.ingest_stream([canonical_json({"format": "datamaestro-tree/1", "entries": {"path": "x"}})]), "not a tree document")
    assert_refused(store, store.objects.ingest_stream([b"[" * 100_000 + b"]" * 100_000]), "not a tree document")


def test_an_oversized_document_is_refused_before_it_is_read(store, monkeypatch):
    from datamaestro.store import trees

    digest = stored_tree(store, [file_entry(store, "a")])
    monkeypatch.setattr(trees, "MAX_TREE_DOCUMENT", 100)
    monkeypatch.setattr(trees.json, "load", lambda fp: pytest.fail("the document was parsed"))
    assert_refused(store, digest, "more than the 100 allowed")


def test_the_source_is_named(store):
    digest = stored_tree(store, [file_entry(store, "../x")])
    with pytest.raises(UntrustedInputError) as info:
        store.trees.materialize(digest, source="lab (s3://bucket/prefix)")
    assert str(info.value).startswith(f"refused tree {digest} from lab (s3://bucket/prefix): entry '../x' leaves the tree")
    assert info.value.source == "lab (s3://bucket/prefix)"


def test_without_validation_the_writer_still_never_follows_a_planted_link(store, monkeypatch):
    """Issue 22 point 4: even a document no check looked at cannot write through a link of its own tree."""
    from datamaestro.store import trees

    outside = store.root.parent / "outside"
    class NoCheck:
        """Takes every entry as it is."""

        count = 0

        def check(self, entry):
            self.count += 1
            return entry

        def check_file(self, digest, path, size):
            return self.check({"digest": digest, "kind": "file", "path": path, "size": size})

        def finish(self):
            pass

    monkeypatch.setattr(trees, "TreeChecker", NoCheck)
    entries = [
        {"path": "evil", "kind": "symlink", "target": str(outside)},
        file_entry(store, "evil/planted.txt"),
        file_entry(store, "evil/flag"),
    ]
    before = snapshot(outside)
    with pytest.raises(UntrustedInputError, match="'evil' is not a folder|'evil' is a symbolic link|'evil' is a file or a symbolic link"):
        store.materialize("tree", stored_tree(store, entries))
    assert snapshot(outside) == before
    assert list(store.layout.tmp.iterdir()) == []


def test_the_writer_refuses_every_escape(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    root.mkdir()
    with TreeWriter(root) as writer:
        writer.symlink("link", str(outside))
        for path in ("link/x", "../x", "/x", "a/../../x"):
            with pytest.raises(TreeRefusal):
                writer.file(path, [b"x"])
        # a link planted behind the writer's back is not followed either
        os.symlink(str(outside), root / "planted")
        with pytest.raises(TreeRefusal):
            writer.file("planted/x", [b"x"])
        with pytest.raises(TreeRefusal, match="exists already"):
            writer.file("planted", [b"x"])
        writer.file("ok", [b"x"])
        with pytest.raises(TreeRefusal, match="appears twice"):
            writer.file("ok", [b"y"])
    assert list(outside.iterdir()) == []
    assert (root / "ok").read_bytes() == b"x"


def test_where_hard_links_are_refused_the_files_link_to_their_objects_from_the_tree_s_place(store, monkeypatch):
    """The fallback symlink is relative to where the tree ends up (trees/ab/…), not to its work folder in tmp/."""
    entries = [file_entry(store, "a/b/x.txt"), file_entry(store, "top.txt", b"top")]
    digest = stored_tree(store, entries)

    def refused(*args, **kwargs):
        raise OSError(errno.EXDEV, "cross-device link")

    monkeypatch.setattr(os, "link", refused)
    folder = store.materialize("tree", digest)
    assert (folder / "a" / "b" / "x.txt").is_symlink()
    assert (folder / "a" / "b" / "x.txt").read_bytes() == CONTENT and (folder / "top.txt").read_bytes() == b"top"


def test_a_missing_object_is_a_store_error_and_leaves_nothing(store):
    entry = file_entry(store, "x")
    os.unlink(store.objects.path_of(entry["digest"]))
    digest = stored_tree(store, [entry])
    with pytest.raises(StoreError, match="missing from the store"):
        store.materialize("tree", digest)
    assert list(store.layout.tmp.iterdir()) == []


def test_a_folder_whose_links_chain_out_of_it_is_not_stored(store, tmp_path):
    """Each link stays inside lexically; together they leave: ingest_tree stores no such tree."""
    folder = tmp_path / "folder"
    (folder / "a").mkdir(parents=True)
    (folder / "a" / "x").write_text("x")
    (folder / "a" / "b").symlink_to("..")
    (folder / "c").symlink_to("a/b/..")
    with pytest.raises(UntrustedInputError, match="'c' is a symbolic link to 'a/b/..', which leaves the tree"):
        store.ingest_tree(folder)
    assert not store.layout.trees.exists() or not any(store.layout.trees.rglob("*"))
