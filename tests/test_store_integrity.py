"""The on-use check: objects are stamped when committed and compared with a stat before they are handed out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from datamaestro.api import prepare_dataset
from datamaestro.store import Kind, Output, Store
from datamaestro.store.gc import gc
from datamaestro.store.stamps import read_stamp, stamp_matches, stamp_text
from datamaestro.store.verify import verify

from support.users import read_only_wrapper
from support.lockproject import dm, lock_project, make_project, readable_files, served  # noqa: F401


def change_in_place(path: Path, data: bytes = b"changed\n") -> None:
    """What an owner editing an object does: make it writable, append, make it read-only again."""
    os.chmod(path, 0o644)
    with open(path, "ab") as fp:
        fp.write(data)
    os.chmod(path, 0o444)


def test_a_committed_object_is_stamped_and_passes_the_check(tmp_path):
    store = Store(tmp_path / "store")
    digest = store.ingest_stream([b"some bytes"])
    assert read_stamp(store.layout, digest) == stamp_text(os.stat(store.path_of(digest)), store.layout.precise_stat)
    assert store.compare_stamps([Output(Kind.FILE, digest)]) == []
    assert store.has(digest)


def test_an_object_changed_in_place_is_quarantined_on_use(tmp_path):
    store = Store(tmp_path / "store")
    digest = store.ingest_stream([b"some bytes"])
    change_in_place(store.path_of(digest))
    changed = store.compare_stamps([Output(Kind.FILE, digest)])
    assert [c.digest for c in changed] == [digest] and "size 10 -> 18" in changed[0].why
    assert not store.has(digest) and read_stamp(store.layout, digest) is None
    note = json.loads(changed[0].quarantined.with_name(changed[0].quarantined.name + ".json").read_text())
    assert note["digest"] == digest and "changed after it was stored" in note["why"]
    # a good copy stored again gets its own stamp
    assert store.ingest_stream([b"some bytes"]) == digest
    assert store.compare_stamps([Output(Kind.FILE, digest)]) == []


def test_an_object_without_a_stamp_is_stamped_on_first_use(tmp_path):
    store = Store(tmp_path / "store")
    digest = store.ingest_stream([b"stored before stamps"])
    store.layout.stamp_path(digest).unlink()
    assert store.compare_stamps([Output(Kind.FILE, digest)]) == []
    assert read_stamp(store.layout, digest) is not None


def test_a_tree_holding_a_changed_file_is_removed_on_use(tmp_path):
    store = Store(tmp_path / "store")
    (tmp_path / "src" / "sub").mkdir(parents=True)
    (tmp_path / "src" / "sub" / "a.txt").write_text("a file of a tree")
    tree = store.ingest_tree(tmp_path / "src")
    (tmp_path / "src" / "b.txt").write_text("another tree, with the same file")
    other = store.ingest_tree(tmp_path / "src")
    (file_digest,) = store.trees.iter_object_digests(tree)
    change_in_place(store.path_of(file_digest))
    changed = store.compare_stamps([Output(Kind.TREE, tree), Output(Kind.TREE, other)])
    assert [c.digest for c in changed] == [file_digest, tree, other]
    # their folders held the same inode: gone, so that the outputs are missing and produced again
    assert not store.output_present(Output(Kind.TREE, tree)) and not store.output_present(Output(Kind.TREE, other))


def test_objects_taken_from_a_peer_store_are_stamped_when_committed(tmp_path):
    from datamaestro.remotes.folder import FolderRemote
    from datamaestro.remotes.pull import transfer

    peer = Store(tmp_path / "peer")
    linked = peer.ingest_stream([b"linked from the peer"])
    copied = peer.ingest_stream([b"copied: its peer stamp is gone"])
    peer.layout.stamp_path(copied).unlink()
    store = Store(tmp_path / "store")
    report = transfer(store, [linked, copied], [FolderRemote(peer.root)])
    assert sum(report.taken.values()) == 2
    for digest in (linked, copied):
        assert read_stamp(store.layout, digest) == stamp_text(os.stat(store.path_of(digest)), store.layout.precise_stat)
    # the same inode as the peer's object: its stamp is linked, not written again (no new inode)
    assert os.stat(store.path_of(linked)).st_ino == os.stat(peer.path_of(linked)).st_ino
    assert os.lstat(store.layout.stamp_path(linked)).st_ino == os.lstat(peer.layout.stamp_path(linked)).st_ino
    # stamped at commit: an edit right after the transfer is caught on the first use
    change_in_place(store.path_of(copied))
    assert [c.digest for c in store.compare_stamps([Output(Kind.FILE, copied)])] == [copied]


def test_verify_rehashes_and_stamps_again_an_object_whose_bytes_are_right(tmp_path):
    """A restored backup or a `touch` changes the stat, not the bytes: verify says so by stamping it again."""
    store = Store(tmp_path / "store")
    digest = store.ingest_stream([b"some bytes"])
    os.utime(store.path_of(digest), ns=(1, 1))
    assert verify(store).ok
    assert store.compare_stamps([Output(Kind.FILE, digest)]) == []


def test_gc_drops_the_stamps_of_collected_objects(tmp_path):
    store = Store(tmp_path / "store")
    digest = store.ingest_stream([b"nobody uses this"])
    report = gc(store, grace_seconds=0)
    assert digest in report.objects_deleted
    assert read_stamp(store.layout, digest) is None


def test_a_warm_prepare_fetches_an_object_changed_in_place_again(mnist_server, dm_context):
    prepare_dataset("com.lecun.mnist")
    readable = dm_context.data_dir / "data" / "image" / "com" / "lecun" / "mnist" / "test_labels.idx"
    expected = readable.read_bytes()
    change_in_place(readable.resolve())
    before = len(mnist_server.requests)
    config = prepare_dataset("com.lecun.mnist")
    assert len(mnist_server.requests) == before + 1
    assert readable.read_bytes() == expected
    assert config.test.labels.path.read_bytes() == expected
    assert len(list((dm_context.store.root / "quarantine").glob("*.json"))) == 1


@pytest.mark.usefixtures("served")
def test_sync_fetches_an_object_changed_in_place_again(tmp_path):
    project = lock_project(make_project(tmp_path / "project"), tmp_path / "a", "com.lecun.mnist")
    expected = readable_files(project.data, "image", "com.lecun.mnist")
    change_in_place((project.data / "data" / "image" / "com" / "lecun" / "mnist" / "train_labels.idx").resolve())
    dm(project, "sync", data=project.data)
    assert readable_files(project.data, "image", "com.lecun.mnist") == expected


@pytest.mark.usefixtures("served")
def test_a_repair_says_so_in_one_warning_and_sync_verify_full_counts_it(tmp_path):
    project = lock_project(make_project(tmp_path / "project"), tmp_path / "a", "org.example")
    readme = (project.data / "data" / "image" / "org" / "example" / "readme.txt").resolve()
    change_in_place(readme)
    # a warm prepare: exit 0, and one warning line that says what changed, where it went, and that it is fetched again
    warm = dm(project, "prepare", "org.example", data=project.data)
    said = [line for line in warm.stderr.splitlines() if "was damaged" in line]
    assert len(said) == 1, warm.stderr
    assert "WARNING" in said[0] and "changed after it was stored (size 8 -> 16" in said[0], said
    assert f"moved to {project.data / 'store' / 'quarantine'}" in said[0] and said[0].endswith("fetched again"), said
    assert readme.read_bytes() == b"read me\n"
    # sync --verify full counts the object its check on use has just quarantined
    change_in_place(readme)  # fetched again into the same object
    verified = dm(project, "sync", "--verify", "full", data=project.data)
    assert "rehashed 2 objects: 1 damaged" in verified.stdout, verified.stdout + verified.stderr
    assert sum("was damaged" in line for line in verified.stderr.splitlines()) == 1, verified.stderr


#: Checks one object of a store, as a user who may only read it; prints the error.
READ_ONLY_CHECK = r"""
import sys
from pathlib import Path
from datamaestro.errors import IntegrityError
from datamaestro.store import Kind, Output, Store
try:
    Store(Path(sys.argv[1])).compare_stamps([Output(Kind.FILE, sys.argv[2])])
except IntegrityError as exc:
    print(exc.message)
    sys.exit(1)
"""


def test_a_changed_object_of_a_store_one_may_only_read_is_reported(tmp_path):
    store = Store(tmp_path / "store")
    digest = store.ingest_stream([b"some bytes"])
    change_in_place(store.path_of(digest))
    wrapper = read_only_wrapper(store.root)
    try:
        checked = subprocess.run([*wrapper, sys.executable, "-c", READ_ONLY_CHECK, str(store.root), digest], capture_output=True, text=True, timeout=60)
    finally:
        for folder, _, _ in os.walk(store.root):
            os.chmod(folder, 0o755)
    assert checked.returncode == 1, checked.stderr
    assert f"object {digest} of the store" in checked.stdout and "was changed after it was stored (size 10 -> 18" in checked.stdout
    assert store.has(digest)


def test_a_stamp_is_compared_at_the_precision_it_was_written_with(tmp_path):
    """A stamp written through a FUSE mount (size, mtime in seconds) holds when read where inodes are stable, and back."""
    path = tmp_path / "object"
    path.write_bytes(b"bytes")
    st = os.stat(path)
    for written, read in ((False, True), (True, False)):
        assert stamp_matches(stamp_text(st, written), st, read)[0]
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
    assert not stamp_matches(stamp_text(st, False), os.stat(path), True)[0]


def test_on_a_network_file_system_the_objects_are_looked_up_at_once_and_judged_the_same(tmp_path, monkeypatch):
    """A store that is not on a local disk looks its objects up by threads, a batch at a time; what is changed or missing is still found."""
    import threading

    from datamaestro.store import integrity

    store = Store(tmp_path / "store")
    source = tmp_path / "src"
    count = integrity.LOOKUP_BATCH * 2 + 100  # three batches
    for index in range(count):
        (source / f"d{index % 7}").mkdir(parents=True, exist_ok=True)
        (source / f"d{index % 7}" / f"f{index}").write_bytes(f"file {index}\n".encode())
    tree = store.ingest_tree(source)
    files = list(dict.fromkeys(store.trees.iter_object_digests(tree)))
    changed, removed = files[integrity.LOOKUP_BATCH + 5], files[-3]
    change_in_place(store.path_of(changed))
    os.unlink(store.path_of(removed))

    threads: set[str] = set()
    look_up = integrity._OnUseCheck._look_up

    def spy(self, digest):
        threads.add(threading.current_thread().name)
        return look_up(self, digest)

    monkeypatch.setattr(integrity._OnUseCheck, "_look_up", spy)
    store.layout._local = False  # as on NFS or a FUSE mount
    found = store.compare_stamps([Output(Kind.TREE, tree), Output(Kind.FILE, files[0])], whole=True)
    assert [c.digest for c in found] == [changed, tree]
    assert "changed after it was stored" in json.loads(found[0].quarantined.with_name(found[0].quarantined.name + ".json").read_text())["why"]
    assert not store.output_present(Output(Kind.TREE, tree))
    assert threads and all(name.startswith("on-use-check") for name in threads)

    # a dataset of several files (one check each): looked up at once too, and a changed one found
    threads.clear()
    change_in_place(store.path_of(files[2]))
    found = store.compare_stamps([Output(Kind.FILE, digest) for digest in files[:4]])
    assert [c.digest for c in found] == [files[2]]
    assert threads and all(name.startswith("on-use-check") for name in threads)

    # on a local disk: the same objects, looked up in turn by the caller
    threads.clear()
    store.layout._local = True
    assert store.compare_stamps([Output(Kind.FILE, files[0]), Output(Kind.FILE, files[1])]) == []
    assert threads == {threading.current_thread().name}
