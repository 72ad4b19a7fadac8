"""Tree documents read and written as a stream (issue 27): format 2, format-1 trees of earlier releases, hostile streamed documents.

Trees of 10,000 files: enough that a whole-document shortcut would show in
the order of entries or in a missing end line, small enough for the suite.
Everything goes through the store's real paths (``ingest_tree``,
``materialize``, a folder remote's pull, the console script's ``store
verify``); hostile documents are stored as a remote would hand them over,
under their own correct digest.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from blake3 import blake3

from datamaestro.errors import UntrustedInputError
from datamaestro.remotes.folder import FolderRemote
from datamaestro.remotes.pull import pull_outputs
from datamaestro.store import LAYOUT_PARTS, Output, Store
from datamaestro.store.digests import canonical_json
from datamaestro.store.trees import MAX_TREE_LINE

from support.lockproject import dm

FILES = 10_000
#: names whose order as strings is not the order of a folder walk (``a-b`` < ``a/x`` < ``a0``)
AWKWARD = ["a-b", "a.txt", "a/x", "a/y/z", "a0", "b c", "é/ü.txt", "new\nline", "z"]
#: the VERSION file of the store layout before trees had a version of their own
PREVIOUS_LAYOUT = "# datamaestro store layout: the version of each part (see docs/store.md)\nobjects = 1\nactions = 1\nviews = 1\nroots = 1\n"


def blake3_of(data: bytes) -> str:
    return "blake3:" + blake3(data).hexdigest()


def make_folder(root: Path, files: int = FILES) -> dict[str, bytes]:
    """A folder of ``files`` small files in 100 sub-folders, plus awkward names; returns path -> bytes."""
    contents = {}
    for number in range(files - len(AWKWARD)):
        contents[f"part{number % 100:03d}/file{number:05d}.bin"] = f"file {number}\n".encode()
    for name in AWKWARD:
        contents[name] = f"awkward {name}\n".encode()
    for path, data in contents.items():
        full = root / path
        full.parent.mkdir(parents=True, exist_ok=True)
        full.write_bytes(data)
    return contents


def lines_of(store: Store, digest: str) -> list[bytes]:
    return store.objects.path_of(digest).read_bytes().split(b"\n")


def format1_document(entries: list[dict]) -> bytes:
    """The tree document an earlier release wrote (``canonical_json`` of the whole document)."""
    return canonical_json({"format": "datamaestro-tree/1", "entries": sorted(entries, key=lambda e: e["path"])})


def format2_document(entries: list, *, sort: bool = True) -> bytes:
    """A format-2 document of any entries (as a hostile remote may write it)."""
    if sort:
        entries = sorted(entries, key=lambda e: e["path"])
    lines = [{"format": "datamaestro-tree/2"}, *entries, {"entries": len(entries)}]
    return b"".join(canonical_json(line) + b"\n" for line in lines)


# -- round trip


def test_a_folder_round_trips_through_a_streamed_document(tmp_path):
    contents = make_folder(tmp_path / "folder")
    os.symlink("a/x", tmp_path / "folder" / "link")
    (tmp_path / "folder" / "empty").mkdir()
    store = Store(tmp_path / "store")
    digest = store.ingest_tree(tmp_path / "folder")
    lines = lines_of(store, digest)
    assert lines[0] == b'{"format":"datamaestro-tree/2"}'
    assert lines[-2] == canonical_json({"entries": FILES + 2}) and lines[-1] == b""
    entries = list(store.trees.iter_tree_entries(digest))
    paths = [entry["path"] for entry in entries]
    assert paths == sorted(paths) and len(set(paths)) == FILES + 2
    # one canonical line per entry, in the document's order
    assert [canonical_json(entry) for entry in entries] == lines[1:-2]
    folder = store.trees.path_of(digest)
    for path, data in contents.items():
        assert (folder / path).read_bytes() == data
    assert os.readlink(folder / "link") == "a/x" and (folder / "empty").is_dir()
    # one tree, one digest: the same entries given in another order
    assert store.trees.store_entries(list(reversed(entries))) == digest
    # its format-1 digest is what an earlier release named the same tree
    assert store.trees.legacy_digest(digest) == blake3_of(format1_document(entries))


def test_a_tree_pinned_by_its_format1_digest_is_stored_under_it(tmp_path):
    """A lock written by an earlier release pins the format-1 digest: the tree produced anew takes it."""
    make_folder(tmp_path / "folder", files=200)
    store = Store(tmp_path / "store")
    digest = store.ingest_tree(tmp_path / "folder")
    entries = list(store.trees.iter_tree_entries(digest))
    pinned = blake3_of(format1_document(entries))
    assert store.trees.as_pinned(digest, pinned) == pinned
    assert store.objects.path_of(pinned).read_bytes() == format1_document(entries)
    assert list(store.trees.iter_tree_entries(pinned)) == entries and store.trees.has(pinned)
    assert store.trees.as_pinned(digest, blake3_of(b"another tree")) is None


# -- a store of the previous layout


def previous_layout_store(root: Path, contents: dict[str, bytes]) -> tuple[str, list[dict]]:
    """A store as the release before format 2 left it, made by hand: objects, a format-1 tree, its materialized folder, an action record.

    Returns the tree's digest and its entries.
    """
    entries = []
    for path, data in sorted(contents.items()):
        digest = blake3_of(data)
        target = root / "objects" / digest[7:9] / digest[9:]
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            target.chmod(0o444)
        entries.append({"path": path, "kind": "file", "digest": digest, "size": len(data)})
    document = format1_document(entries)
    tree = blake3_of(document)
    target = root / "objects" / tree[7:9] / tree[9:]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(document)
    target.chmod(0o444)
    folder = root / "trees" / tree[7:9] / tree[9:]
    for entry in entries:
        (folder / entry["path"]).parent.mkdir(parents=True, exist_ok=True)
        hexdigest = entry["digest"][7:]
        os.link(root / "objects" / hexdigest[:2] / hexdigest[2:], folder / entry["path"])
    key = blake3_of(b"a recipe")
    record = {"key": key, "recipe": {"url": "http://example.org/a.tar.gz"}, "output": {"kind": "tree", "digest": tree}, "created": 1.0}
    action = root / "actions" / key[7:9] / (key[9:] + ".json")
    action.parent.mkdir(parents=True)
    action.write_bytes(canonical_json(record))
    (root / "VERSION").write_text(PREVIOUS_LAYOUT)
    return tree, entries


def test_a_store_with_format1_trees_is_migrated_keeping_every_digest(tmp_path):
    contents = {f"d{n % 50:02d}/f{n:05d}": f"{n}\n".encode() for n in range(FILES)}
    root = tmp_path / "data" / "store"
    tree, entries = previous_layout_store(root, contents)
    before = {str(p.relative_to(root)): p.lstat().st_ino for p in (root / "objects").rglob("*")}
    store = Store(root)
    assert store.layout_versions == LAYOUT_PARTS and LAYOUT_PARTS["trees"] == 2
    assert "trees = 2" in (root / "VERSION").read_text().splitlines()
    # nothing renamed, nothing rewritten: locks, records and views name the same digests
    assert {str(p.relative_to(root)): p.lstat().st_ino for p in (root / "objects").rglob("*")} == before
    assert store.actions.get(blake3_of(b"a recipe")).output.digest == tree
    assert list(store.trees.iter_tree_entries(tree)) == entries
    assert sorted(store.trees.iter_object_digests(tree)) == sorted(e["digest"] for e in entries)
    # the console script verifies the old tree (and its materialized folder) as it is
    result = dm(tmp_path, "store", "verify", data=tmp_path / "data")
    assert result.stdout.startswith(f"checked {len(set(contents.values())) + 1} objects"), result.stdout
    # a new tree beside it is written in format 2
    make_folder(tmp_path / "new", files=100)
    assert lines_of(store, store.ingest_tree(tmp_path / "new"))[0] == b'{"format":"datamaestro-tree/2"}'


def test_a_release_that_reads_format1_only_refuses_the_migrated_store(tmp_path):
    """The version is what keeps an earlier release from taking format-2 documents for corrupt objects."""
    from datamaestro.store.versioning import parse_layout

    root = tmp_path / "store"
    previous_layout_store(root, {"a": b"a\n"})
    Store(root)
    text = (root / "VERSION").read_text()
    versions, _ = parse_layout(root, text)
    assert versions["trees"] == 2
    # a release whose parts are those of PREVIOUS_LAYOUT knows no part "trees"
    assert "trees" not in PREVIOUS_LAYOUT and "trees = 2" in text


# -- mixed formats from a remote


def test_format1_and_format2_trees_from_one_remote_are_both_pulled(tmp_path):
    remote_root = tmp_path / "remote"
    old_contents = {f"old/{n:05d}": f"old {n}\n".encode() for n in range(FILES // 2)}
    old_tree, old_entries = previous_layout_store(remote_root, old_contents)
    remote = Store(remote_root)  # migrated: an up-to-date remote still holds format-1 trees
    make_folder(tmp_path / "new", files=FILES // 2)
    new_tree = remote.ingest_tree(tmp_path / "new")
    local = Store(tmp_path / "local")
    report = pull_outputs(local, [Output("tree", old_tree), Output("tree", new_tree)], [FolderRemote(remote_root)])
    assert not report.rejected and not report.refused
    assert local.objects.path_of(old_tree).read_bytes().startswith(b'{"entries":[')
    assert lines_of(local, new_tree)[0] == b'{"format":"datamaestro-tree/2"}'
    for entry in old_entries:
        assert (local.trees.path_of(old_tree) / entry["path"]).read_bytes() == old_contents[entry["path"]]
    assert sum(1 for _ in local.trees.iter_tree_entries(new_tree)) == FILES // 2


def test_a_hostile_streamed_tree_from_a_remote_is_refused_and_quarantined(tmp_path):
    remote_root = tmp_path / "remote"
    remote = Store(remote_root)
    planted = remote.objects.ingest_stream([b"planted\n"])
    document = format2_document([{"path": "../../outside/planted", "kind": "file", "digest": planted, "size": 8}])
    tree = remote.objects.ingest_stream([document])
    local = Store(tmp_path / "local")
    report = pull_outputs(local, [Output("tree", tree)], [FolderRemote(remote_root)])
    assert tree in report.rejected
    assert not local.trees.has(tree) and not local.objects.has(tree) and not local.objects.has(planted)
    assert not (tmp_path / "outside").exists()


# -- hostile streamed documents through materialize


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(tmp_path / "store")


def file_entry(store: Store, path: str, data: bytes = b"x\n") -> dict:
    return {"path": path, "kind": "file", "digest": store.objects.ingest_stream([data]), "size": len(data)}


def many(store: Store, count: int = FILES) -> list[dict]:
    """``count`` valid file entries (one object), sorted."""
    digest = store.objects.ingest_stream([b"x\n"])
    return [{"path": f"f{n:05d}", "kind": "file", "digest": digest, "size": 2} for n in range(count)]


def refused(store: Store, document: bytes, words: str) -> None:
    """The document, stored under its own digest, is refused whole when materialized: nothing left in trees/ or tmp/."""
    digest = store.objects.ingest_stream([document])
    with pytest.raises(UntrustedInputError) as info:
        store.materialize("tree", digest)
    assert str(info.value).startswith(f"refused tree {digest}"), str(info.value)
    assert words in str(info.value), str(info.value)
    assert not store.trees.has(digest)
    assert list(store.layout.tmp.iterdir()) == []
    with pytest.raises(UntrustedInputError):
        store.trees.check(digest)


def test_unsorted_entries_are_refused(store):
    entries = many(store)
    entries[5000], entries[5001] = entries[5001], entries[5000]
    refused(store, format2_document(entries, sort=False), "'f05000' comes after 'f05001'")


def test_a_duplicate_entry_is_refused(store):
    entries = many(store)
    entries.insert(7000, dict(entries[6999]))
    refused(store, format2_document(entries, sort=False), "'f06999' appears twice")


@pytest.mark.parametrize("path,words", [("../../escape", "leaves the tree"), ("/etc/passwd", "absolute path"), ("a/./b", "not a normalised path")])
def test_an_escaping_path_is_refused(store, path, words):
    refused(store, format2_document([*many(store), file_entry(store, path)]), words)


def test_a_link_out_of_the_tree_is_refused_after_the_last_entry(store):
    entries = [{"path": "a/link", "kind": "symlink", "target": "../../.."}, *many(store)]
    refused(store, format2_document(entries), "'a/link' is a symbolic link to '../../..', which leaves the tree")


def test_an_entry_below_a_file_is_refused_across_entries_between(store):
    # "f" then "f-x" then "f/g": the file is not the entry just before
    entries = [file_entry(store, "f"), file_entry(store, "f-x"), file_entry(store, "f/g")]
    refused(store, format2_document(entries), "'f/g' is below the file 'f'")


def test_a_truncated_document_is_refused(store):
    document = format2_document(many(store))
    refused(store, document[: len(document) // 2], "truncated")
    cut_at_a_line = document[: document.rindex(b"\n", 0, len(document) - 1) + 1]
    refused(store, cut_at_a_line, "truncated (it has no end line)")


def test_an_end_line_that_does_not_count_the_entries_is_refused(store):
    document = format2_document(many(store, 10)).replace(b'{"entries":10}', b'{"entries":11}')
    refused(store, document, "says 11 entries, it has 10")
    refused(store, format2_document(many(store, 10)) + b"more\n", "bytes after its end line")


def test_an_oversized_line_is_refused_before_it_is_parsed(store):
    line = b'{"kind":"dir","path":"' + b"a" * MAX_TREE_LINE + b'"}\n'
    document = b'{"format":"datamaestro-tree/2"}\n' + line + b'{"entries":1}\n'
    refused(store, document, f"line 2 is longer than {MAX_TREE_LINE} bytes")


def test_a_line_that_is_not_canonical_is_refused(store):
    entry = many(store, 1)[0]
    spaced = json.dumps(entry, sort_keys=True).encode()
    refused(store, b'{"format":"datamaestro-tree/2"}\n' + spaced + b'\n{"entries":1}\n', "not canonical")
    unsorted_keys = json.dumps(dict(reversed(list(entry.items()))), separators=(",", ":")).encode()
    refused(store, b'{"format":"datamaestro-tree/2"}\n' + unsorted_keys + b'\n{"entries":1}\n', "not canonical")


def test_hostile_format1_documents_are_refused_too(store):
    entries = many(store, 100)
    refused(store, format1_document(entries)[:-30], "truncated")
    refused(store, format1_document(entries)[:-300], "truncated or malformed")
    refused(store, json.dumps({"entries": entries, "format": "datamaestro-tree/1"}).encode(), "not a tree document")
    unsorted = canonical_json({"entries": list(reversed(entries)), "format": "datamaestro-tree/1"})
    refused(store, unsorted, "comes after")
    huge = canonical_json({"entries": [{"kind": "dir", "path": "a" * (2 * MAX_TREE_LINE)}], "format": "datamaestro-tree/1"})
    refused(store, huge, f"longer than {MAX_TREE_LINE} bytes")
