"""The on-use check of a large tree: one slice of its files per use, every file within the documented number of uses.

A tree of more than ``slice_files`` files (128 on the local disk of the
tests) has its files checked one slice per warm use, round and round: a
file changed, removed or replaced by a link is caught when its slice comes,
within ``ceil(files / 128)`` uses (20 for the 2,500 files here), and
repaired as the on-use check does (moved to quarantine, fetched again).
The large tree has 2,500 files: enough slices for every case here (the
farthest file damaged is in slice 17), a quarter of the work of 10,000. A
small tree is checked whole on every use. The rotation's state (an index
and a cursor per tree, in the user's cache dir) is outside input: bad state
makes a use check the whole tree.
"""

from __future__ import annotations

import io
import math
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from datamaestro.store import Kind, Output, Store
from datamaestro.store.treeslices import SLICE_FILES_LOCAL, TreeSlices

DATASET = "org.samples.corpus"
ARCHIVE = "samples/corpus.tar.gz"
LARGE = 2_500
S = SLICE_FILES_LOCAL
#: files per folder of the large tree (its files are spread over 100 folders)
PER_FOLDER = LARGE // 100
#: the most uses that may pass before a changed file of the large tree is caught (docs/store.md)
BOUND = math.ceil(LARGE / S)


def file_name(index: int) -> str:
    """The path of the tree's ``index``-th file (100 folders, sorted like the tree's entries)."""
    return f"d{index % 100:02d}/f{index:05d}.txt"


def file_in_slice(block: int) -> int:
    """The index of a file in the middle of slice ``block`` of the large tree (its entries sorted by path: d00/f00000, d00/f00100, …, d01/f00001, …)."""
    position = block * S + S // 2
    return (position % PER_FOLDER) * 100 + position // PER_FOLDER


def write_corpus(root: Path, count: int) -> None:
    """``samples/corpus.tar.gz``: ``count`` small files, each of other bytes (each its own object)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as archive:
        for index in range(count):
            data = f"file {index}\n".encode()
            info = tarfile.TarInfo(file_name(index))
            info.size, info.mtime = len(data), 0
            archive.addfile(info, io.BytesIO(data))
    (root / "samples").mkdir(parents=True, exist_ok=True)
    (root / "samples" / "corpus.tar.gz").write_bytes(buffer.getvalue())


def prepare() -> subprocess.CompletedProcess:
    """``datamaestro prepare org.samples.corpus`` in a new process (the warm path when nothing changed)."""
    result = subprocess.run(["datamaestro", "prepare", DATASET], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return result


def prepare_in_this_process() -> None:
    """The same prepare, in the test's process: for the set-up (a new process costs seconds on a loaded machine; the uses checked are the console script's)."""
    from datamaestro.api import prepare_dataset
    from datamaestro.context import Context

    prepare_dataset(DATASET, context=Context(progress=False))


class Corpus:
    """The prepared corpus: its store, its tree and where each of its files is, in the rotation's order."""

    def __init__(self, server, data: Path):
        self.server = server
        self.folder = data / "data" / "image" / "org" / "samples" / "corpus" / "files"
        self.store = Store(data / "store", create=False)

    @property
    def tree(self) -> str:
        """The digest of the tree the readable folder shows now."""
        hexdigest = "".join(self.folder.resolve().parts[-2:])
        return "blake3:" + hexdigest

    def block_of(self, index: int) -> int:
        """The slice holding the ``index``-th file (the tree's files in its order, each object once)."""
        files = list(dict.fromkeys(self.store.trees.iter_object_digests(self.tree)))
        return files.index(self.digest_of(index)) // S

    def digest_of(self, index: int) -> str:
        """The object of the ``index``-th file, as the tree document says."""
        (digest,) = [e["digest"] for e in self.store.trees.read(self.tree)["entries"] if e["path"] == file_name(index)]
        return digest

    def object_path(self, index: int) -> Path:
        return self.store.path_of(self.digest_of(index))

    def downloads(self) -> int:
        return self.server.count(ARCHIVE)

    def read(self, index: int) -> bytes:
        return (self.folder / file_name(index)).read_bytes()


@pytest.fixture
def corpus(mnist_server, tmp_path_factory):
    """The large corpus, prepared (cold: its materialization writes the rotation's state, the next use checks the first slice)."""
    write_corpus(mnist_server.root, LARGE)
    prepare_in_this_process()
    found = Corpus(mnist_server, Path(os.environ["DATAMAESTRO_DIR"]))
    assert found.downloads() == 1
    return found


def change(path: Path) -> None:
    """An owner's edit in place: writable, appended to, read-only again."""
    os.chmod(path, 0o644)
    with open(path, "ab") as fp:
        fp.write(b"changed\n")
    os.chmod(path, 0o444)


def remove(path: Path) -> None:
    os.unlink(path)


def replace_by_link(path: Path) -> None:
    """The object replaced by a symbolic link to a copy of its bytes, of the same size and modification time."""
    st = os.stat(path)
    copy = path.with_name(path.name + ".copy")
    copy.write_bytes(path.read_bytes())
    os.utime(copy, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.unlink(path)
    os.symlink(copy, path)


#: files in slices 5, 2 and 1
@pytest.mark.parametrize(("damage", "index"), [(change, file_in_slice(5)), (remove, file_in_slice(2)), (replace_by_link, file_in_slice(1))])
def test_a_damaged_file_of_a_large_tree_is_caught_when_its_slice_comes(corpus, damage, index):
    block = corpus.block_of(index)
    assert 0 < block < BOUND  # not in the first slice: the uses before it must not see it
    expected = corpus.read(index)
    damage(corpus.object_path(index))
    # the uses that check the slices before it hand the tree out as it is (no download, nothing moved)
    for use in range(block):
        result = prepare()
        assert "damaged" not in result.stderr, f"use {use + 1} checked slice {use}, not slice {block}"
        assert corpus.downloads() == 1
    result = prepare()  # the use that checks its slice: within the documented bound
    assert block + 1 <= BOUND
    assert "was damaged" in result.stderr and "fetched again" in result.stderr, result.stderr
    assert corpus.downloads() == 2
    assert corpus.read(index) == expected
    assert not os.path.islink(corpus.object_path(index))


def test_a_small_tree_is_checked_whole_on_its_next_use(mnist_server):
    write_corpus(mnist_server.root, S)  # the largest tree checked whole on every use
    prepare_in_this_process()
    prepare_in_this_process()
    corpus = Corpus(mnist_server, Path(os.environ["DATAMAESTRO_DIR"]))
    expected = corpus.read(S - 1)
    change(corpus.object_path(S - 1))
    result = prepare()
    assert "was damaged" in result.stderr and corpus.downloads() == 2
    assert corpus.read(S - 1) == expected
    # one slice: no rotation to keep
    assert not list(TreeSlices(corpus.store.layout).folder.glob("*"))


def test_concurrent_uses_never_skip_a_slice(corpus):
    index = file_in_slice(2)
    block = corpus.block_of(index)
    expected = corpus.read(index)
    change(corpus.object_path(index))
    # rounds of four uses at once: each round moves the rotation on by one slice at least (the same slice
    # may be checked twice, none is skipped), so the file is caught within BOUND rounds
    for round_ in range(BOUND):
        processes = [subprocess.Popen(["datamaestro", "prepare", DATASET], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
        outputs = [process.communicate(timeout=600) for process in processes]
        assert all(process.returncode == 0 for process in processes), [err for _, err in outputs]
        if corpus.downloads() > 1:
            break
    else:
        pytest.fail(f"a file of slice {block} was not caught in {BOUND} rounds of concurrent uses")
    assert round_ <= block
    assert corpus.read(index) == expected
    # the rotation goes on from a state every process left valid
    assert "damaged" not in prepare().stderr


HOSTILE_CURSORS = {
    "garbage": b"\x00\xffnot a cursor\n",
    "empty": b"",
    "beyond the last slice": b"datamaestro-tree-cursor/1 {hex} {blocks} {blocks}\n",
    "another number of slices": b"datamaestro-tree-cursor/1 {hex} 3 4\n",
    "negative": b"datamaestro-tree-cursor/1 {hex} -1 {blocks}\n",
    "huge": b"datamaestro-tree-cursor/1 {hex} 99999999999999999999 {blocks}\n",
    "another tree's": b"datamaestro-tree-cursor/1 " + b"0" * 64 + b" 3 {blocks}\n",
    "too long": b"datamaestro-tree-cursor/1 {hex} 3 {blocks}\n" + b" " * 4096,
}


def _tree_store(tmp_path: Path) -> tuple[Store, str, list[str]]:
    """A store holding the large tree (ingested directly: no server), and its files' digests in order."""
    source = tmp_path / "source"
    for index in range(LARGE):
        path = source / file_name(index)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"file {index}\n".encode())
    store = Store(tmp_path / "store")
    tree = store.ingest_tree(source, move=True)
    return store, tree, list(dict.fromkeys(store.trees.iter_object_digests(tree)))


def test_a_hostile_or_corrupt_state_makes_the_next_use_check_the_whole_tree(tmp_path):
    store, tree, files = _tree_store(tmp_path)
    output = Output(Kind.TREE, tree)
    slices = TreeSlices(store.layout)
    cursor, index = slices.folder / f"{tree[7:]}.cursor", slices.folder / f"{tree[7:]}.index"
    far = files[17 * S + 3]  # in slice 17: a sliced use starting at 3 would not see it for 14 uses

    def damage_and_use() -> list:
        content = store.path_of(far).read_bytes()
        change(store.path_of(far))
        found = store.compare_stamps([output])
        # repaired as a prepare would: the object stored again, the tree materialized again
        assert store.ingest_stream([content]) == far
        store.trees.materialize(tree)
        return found

    # the materialization wrote the state: the first use checks slice 0
    assert cursor.read_bytes() == f"datamaestro-tree-cursor/1 {tree[7:]} 0 {BOUND}\n".encode()
    for name, text in HOSTILE_CURSORS.items():
        assert store.compare_stamps([output]) == []  # slice 0, then the cursor says 1
        cursor.write_bytes(text.replace(b"{hex}", tree[7:].encode()).replace(b"{blocks}", str(BOUND).encode()))
        assert [c.digest for c in damage_and_use()] == [far, tree], name
        store.compare_stamps([output])  # whole (the use after a find): a valid cursor again
        assert cursor.read_bytes().endswith(f" 0 {BOUND}\n".encode()), name

    # a cursor that is a link (to a valid cursor of its own), a folder: not read
    for make in (lambda: os.symlink(tmp_path / "elsewhere", cursor), lambda: cursor.mkdir()):
        (tmp_path / "elsewhere").write_bytes(f"datamaestro-tree-cursor/1 {tree[7:]} 3 {BOUND}\n".encode())
        cursor.unlink()
        make()
        assert [c.digest for c in damage_and_use()] == [far, tree]
        if cursor.is_dir():
            cursor.rmdir()
        store.compare_stamps([output])

    # an index damaged in the slice the cursor points at: that use checks the whole tree
    slice_size = S * 32 + 32
    data = bytearray(index.read_bytes())
    data[160 + 3 * slice_size + 10] ^= 0xFF
    index.write_bytes(bytes(data))
    cursor.write_bytes(f"datamaestro-tree-cursor/1 {tree[7:]} 3 {BOUND}\n".encode())
    assert [c.digest for c in damage_and_use()] == [far, tree]
    store.compare_stamps([output])
    assert index.read_bytes() != bytes(data)  # written anew

    # a state folder that others may write says nothing
    os.chmod(slices.folder, 0o777)
    cursor.write_bytes(f"datamaestro-tree-cursor/1 {tree[7:]} 3 {BOUND}\n".encode())
    assert [c.digest for c in damage_and_use()] == [far, tree]
    os.chmod(slices.folder, 0o700)


def test_a_sliced_use_checks_one_slice_and_moves_the_cursor_on(tmp_path):
    store, tree, files = _tree_store(tmp_path)
    output = Output(Kind.TREE, tree)
    slices = TreeSlices(store.layout)
    assert slices.next_slice(tree).block == 0  # the materialization started the rotation
    # a damage in slice 2 is seen by the third sliced use, not before; every use before it moves the cursor by one
    content = store.path_of(files[2 * S]).read_bytes()
    change(store.path_of(files[2 * S]))
    assert store.compare_stamps([output]) == [] and slices.next_slice(tree).block == 1
    assert store.compare_stamps([output]) == [] and slices.next_slice(tree).block == 2
    assert [c.digest for c in store.compare_stamps([output])] == [files[2 * S], tree]
    assert slices.next_slice(tree) is None  # forgotten: the next use checks the whole tree
    store.ingest_stream([content])
    store.trees.materialize(tree)
    # the last file: caught by the last use of a round, BOUND uses after a whole check, not one earlier
    assert store.compare_stamps([output]) == []  # whole (after the find): the cursor at slice 0
    assert files.index(files[-1]) // S == BOUND - 1
    content = store.path_of(files[-1]).read_bytes()
    change(store.path_of(files[-1]))
    for use in range(BOUND - 1):
        assert store.compare_stamps([output]) == [], f"use {use + 1} checked slice {use}"
    assert [c.digest for c in store.compare_stamps([output])] == [files[-1], tree]
    store.ingest_stream([content])
    store.trees.materialize(tree)
    # asked to check the whole tree (a derivation's inputs): every file, whatever the cursor says
    assert store.compare_stamps([output]) == []
    change(store.path_of(files[-1]))
    assert [c.digest for c in store.compare_stamps([output], whole=True)] == [files[-1], tree]
