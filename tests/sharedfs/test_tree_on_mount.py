"""A large tree in a store on a SeaweedFS mount: its materialization leaves every stamp true, and the rotation catches a real change.

SeaweedFS's ``link()`` sets the linked file's modification time to the time
of the link: the stamp of an object, recorded when it was committed, said
another second once the tree's folder linked it, and the next use took every
file linked a second later for changed (moved to quarantine, downloaded
again). The materialization now puts the time back after each link. It also
writes the rotation's index of the on-use check (docs/store.md, "Large
trees"), so that the first warm use checks one slice, not every file (13 ms
a file on this mount under load). Here: a tree of 64 files (4 slices of 16,
the slice size on a network file system) prepared into a store on a real
SeaweedFS mount, its materialization held back past the second of its
objects' commit (``tree-materialize`` pause), then used: no use reports a
change, and a file changed in place (same size, other bytes) is caught
within ``ceil(64 / 16)`` uses.
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
from datamaestro.store.testpoints import ENV_PAUSE
from datamaestro.store.treeslices import SLICE_FILES_NETWORK, TreeSlices
from support.seaweedfs import SeaweedMount, SeaweedServer, unavailable_reason

pytestmark = pytest.mark.sharedfs

if unavailable_reason():
    pytest.skip(unavailable_reason(), allow_module_level=True)

DATASET = "org.samples.corpus"
ARCHIVE = "samples/corpus.tar.gz"
FILES = 64
#: the most uses that may pass before a changed file is caught (docs/store.md)
BOUND = math.ceil(FILES / SLICE_FILES_NETWORK)
TIMEOUT = 300


@pytest.fixture(scope="module")
def mount(tmp_path_factory):
    """A SeaweedFS server and one mount of its folder ``trees``."""
    folder = tmp_path_factory.mktemp("treemount")
    with SeaweedServer(folder / "server", volume_max=8) as server, SeaweedMount(server, folder / "mount", filer_path="trees", workdir=folder / "mount.weed") as mounted:
        yield mounted


def write_corpus(root: Path) -> None:
    """``samples/corpus.tar.gz``: :data:`FILES` small files of distinct bytes (each its own object)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as archive:
        for index in range(FILES):
            data = f"file {index:05d}\n".encode()
            info = tarfile.TarInfo(f"d{index % 10}/f{index:05d}.txt")
            info.size, info.mtime = len(data), 0
            archive.addfile(info, io.BytesIO(data))
    (root / "samples").mkdir(parents=True, exist_ok=True)
    (root / "samples" / "corpus.tar.gz").write_bytes(buffer.getvalue())


def prepare(store: Path, pauses: str = "") -> subprocess.CompletedProcess:
    """``datamaestro --store STORE prepare org.samples.corpus`` in a new process."""
    env = {**os.environ, ENV_PAUSE: pauses}
    result = subprocess.run(["datamaestro", "--store", str(store), "prepare", DATASET], capture_output=True, text=True, timeout=TIMEOUT, env=env)
    assert result.returncode == 0, result.stderr
    return result


def test_a_tree_linked_on_the_mount_is_not_taken_for_changed_and_a_real_change_is_caught_within_the_bound(mount, mnist_server):
    write_corpus(mnist_server.root)
    store_path = mount.path / "store"
    # the links come more than a second after every object was committed and stamped
    prepare(store_path, pauses="tree-materialize=1.2")
    store = Store(store_path, create=False)
    assert not store.layout.precise_stat and not store.layout.local  # stamps to the second, slices of 16
    folder = Path(os.environ["DATAMAESTRO_DIR"]) / "data" / "image" / "org" / "samples" / "corpus" / "files"
    tree = "blake3:" + "".join(folder.resolve().parts[-2:])
    output = Output(Kind.TREE, tree)

    # the materialization started the rotation: the first use checks one slice, not the whole tree
    slices = TreeSlices(store.layout)
    first = slices.next_slice(tree)
    assert first is not None and first.block == 0 and first.blocks == BOUND

    # a warm prepare (the console script) and a whole turn of the rotation: every file compared with its stamp, none changed
    assert "changed" not in prepare(store_path).stderr
    for use in range(BOUND):
        assert store.compare_stamps([output]) == [], f"use {use + 1} took a file linked on the mount for changed"
    assert mnist_server.count(ARCHIVE) == 1
    assert not (store.layout.quarantine.exists() and any(store.layout.quarantine.iterdir()))

    # a real change, the kind an mtime to the second must show: same size, other bytes, one file
    index = 37
    name = folder / f"d{index % 10}/f{index:05d}.txt"
    expected = name.read_bytes()
    target = Path(os.path.realpath(name))
    digest = _digest_of(store, tree, name.relative_to(folder))
    assert store.path_of(digest).samefile(target)
    os.chmod(target, 0o644)
    target.write_bytes(expected.replace(b"file", b"FILE"))
    os.chmod(target, 0o444)
    for use in range(1, BOUND + 1):
        changed = store.compare_stamps([output])
        if changed:
            break
    else:
        pytest.fail(f"a changed file was not caught in {BOUND} uses")
    assert digest in [c.digest for c in changed], changed

    # the next prepare fetches the tree again: the file reads as it was
    prepare(store_path)
    assert mnist_server.count(ARCHIVE) == 2
    assert name.read_bytes() == expected


def _digest_of(store: Store, tree: str, path: Path) -> str:
    """The digest of the file ``path`` of the tree, as its document says."""
    (digest,) = [e["digest"] for e in store.trees.iter_tree_entries(tree) if e["path"] == path.as_posix()]
    return digest
