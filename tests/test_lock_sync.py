"""Sync from peers (a store folder, a plain web server), export, sharing one store, gc.

Every sync is a real ``datamaestro`` process; the other store is served by a
plain ``python -m http.server`` process, as a lab would publish it.
"""

import gzip
import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support.lockproject import StaticServer, dm, in_project, lock_project, make_project, readable_files, served  # noqa: F401
from support.mnistdata import MNIST_FILES

MNIST = "com.lecun.mnist"
BUNDLE = "org.pinned.bundle"
LABELS = MNIST_FILES["train_labels.idx"]


@pytest.fixture
def locked(served, tmp_path):
    """A project using MNIST and the pinned bundle, locked (hence prepared) on data dir ``tmp_path/a``."""
    return lock_project(make_project(tmp_path / "project"), tmp_path / "a", MNIST, BUNDLE)


def same_data(first: Path, second: Path) -> None:
    """Both data dirs show the same files for the project's datasets."""
    for dataset_id in (MNIST, BUNDLE):
        expected = readable_files(first, "image", dataset_id)
        assert expected and readable_files(second, "image", dataset_id) == expected, dataset_id


def object_path(store: Path, digest: str) -> Path:
    """Where an object is in a store folder."""
    return store / "objects" / digest[7:9] / digest[9:]


def pinned_digest(project: Path, resource: str) -> str:
    """The output digest the project's lock pins for a resource."""
    text = (project / "datamaestro.lock").read_text()
    return re.search(rf'name = "{re.escape(resource)}"\n(?:[^\[].*\n)*?digest = "(blake3:[0-9a-f]+)"', text).group(1)


def corrupt_copy(store: Path, target: Path, digest: str) -> Path:
    """A copy of a store's objects in which one object has other bytes (same size)."""
    shutil.copytree(store / "objects", target / "objects")
    damaged = object_path(target, digest)
    os.chmod(damaged, 0o644)
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    return target


def test_sync_offline_from_a_store_folder_with_the_server_stopped(locked, served, tmp_path):
    served.stop()
    other = tmp_path / "b"
    result = dm(locked, "sync", "--offline", "--from", str(locked.data / "store"), data=other)
    assert "synced 2 datasets (2 from peers)" in result.stdout and "took 10 objects from" in result.stdout
    same_data(locked.data, other)
    # derived outputs came from the peer too: nothing was computed (no action records)
    assert not (other / "store" / "actions").exists()
    # nothing from the peer: offline, nothing can be done, and the message says what is missing
    third = dm(locked, "sync", "--offline", data=tmp_path / "c", check=False)
    assert third.returncode == 1 and "offline mode" in third.stderr and "127.0.0.1:9/mnist/" in third.stderr


def test_sync_from_a_plain_web_server_with_the_server_stopped(locked, served, tmp_path):
    served.stop()
    with StaticServer(locked.data / "store") as peer:
        other = tmp_path / "b"
        result = dm(locked, "sync", "--from", peer.url, data=other)
    assert "synced 2 datasets (2 from peers)" in result.stdout and f"took 10 objects from {peer.url}" in result.stdout
    same_data(locked.data, other)


def test_a_corrupted_peer_is_refused_and_the_object_taken_elsewhere(locked, served, tmp_path):
    labels = pinned_digest(locked, "train_labels.idx")
    bad = corrupt_copy(locked.data / "store", tmp_path / "bad", labels)
    with StaticServer(bad) as bad_web:
        # a bad web peer and no other: the object comes from the original URL
        before = served.count(LABELS)
        other = tmp_path / "b"
        result = dm(locked, "sync", "--from", bad_web.url, data=other)
        assert re.search(rf"^refused {labels} from {bad_web.url}: content hashes to blake3:\w+, not {labels}$", result.stderr, re.M)
        assert served.count(LABELS) == before + 1 and "1 from peers, 1 produced" in result.stdout
        same_data(locked.data, other)

        # a bad folder and the bad web peer first, then the good store: refused twice, then taken
        served.stop()
        third = tmp_path / "c"
        result = dm(locked, "sync", "--from", str(bad), "--from", bad_web.url, "--from", str(locked.data / "store"), data=third)
        refused = [line for line in result.stderr.splitlines() if line.startswith("refused")]
        assert len(refused) == 2, result.stderr
        assert refused[0].startswith(f"refused {labels} from {bad}: {object_path(bad, labels)}: content hashes to blake3:")
        assert refused[1].startswith(f"refused {labels} from {bad_web.url}: content hashes to blake3:")
        assert "2 from peers" in result.stdout
        same_data(locked.data, third)


def test_export_for_an_air_gapped_machine(locked, served, tmp_path):
    export = tmp_path / "usb"
    out = dm(locked, "store", "export", str(locked / "datamaestro.lock"), str(export), data=locked.data).stdout
    assert out.startswith(f"exported 12 objects to {export}")  # 4 + 6 outputs and tree files, 2 manifests
    from datamaestro.store import LAYOUT_PARTS, format_layout

    assert (export / "VERSION").read_text() == format_layout(LAYOUT_PARTS)
    served.stop()
    # exactly what the lock needs: no transient input, no other object
    exported = {p.parent.name + p.name for p in (export / "objects").rglob("*") if p.is_file()}
    assert len(exported) == 12
    airgapped = tmp_path / "airgapped"
    dm(locked, "sync", "--frozen", "--offline", "--from", str(export), data=airgapped)
    same_data(locked.data, airgapped)
    # the store lacks data of the lock: export says to sync first
    empty = dm(locked, "store", "export", str(locked / "datamaestro.lock"), str(tmp_path / "x"), data=tmp_path / "empty", check=False)
    assert empty.returncode == 1 and "run `datamaestro sync` first" in empty.stderr


READER = """
import hashlib, json, sys
from datamaestro.api import prepare_dataset
digests = set()
for _ in range(int(sys.argv[1])):
    config = prepare_dataset("com.lecun.mnist")
    digests.add(hashlib.sha256(config.train.labels.path.read_bytes()).hexdigest())
print(json.dumps(sorted(digests)))
"""


def test_two_projects_with_different_pins_on_one_store(served, tmp_path):
    data = tmp_path / "shared"  # one data dir and one store for both projects
    old = lock_project(make_project(tmp_path / "old", "old"), data, MNIST)
    old_bytes = (data / "data" / "image" / "com" / "lecun" / "mnist" / "train_labels.idx").read_bytes()
    new_labels = gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x03\x01\x02\x03", mtime=0)
    (served.root / LABELS).write_bytes(new_labels)
    new = lock_project(make_project(tmp_path / "new", "new"), data, MNIST)
    # the new project locked what the store had (the action cache): upgrading fetches the new file
    assert pinned_digest(new, "train_labels.idx") == pinned_digest(old, "train_labels.idx")
    dm(new, "lock", "--upgrade", data=data)
    assert pinned_digest(new, "train_labels.idx") != pinned_digest(old, "train_labels.idx")

    env = {**os.environ, "DATAMAESTRO_DIR": str(data)}
    readers = [
        subprocess.Popen([sys.executable, "-c", READER, "15"], cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for project in (old, new, old, new)
    ]
    results = [reader.communicate(timeout=120) for reader in readers]
    assert all(reader.returncode == 0 for reader in readers), [err for _, err in results]
    seen = [set(eval(out)) for out, _ in results]
    assert seen[0] == seen[2] == {hashlib.sha256(old_bytes).hexdigest()}
    assert seen[1] == seen[3] == {hashlib.sha256(gzip.decompress(new_labels)).hexdigest()}

    # gc: the old project's lock is gone; what only it used goes, the new project's data stays
    dm(new, "sync", data=data)  # the shared readable folder shows the new version
    (old / "datamaestro.lock").unlink()
    store = data / "store"
    old_object = [p for p in (store / "objects").rglob("*") if p.is_file() and p.read_bytes() == old_bytes]
    assert len(old_object) == 1
    out = dm(new, "store", "gc", "--grace", "0", data=data).stdout
    assert "dropped root lock" in out and str(old / "datamaestro.lock") in out
    assert not old_object[0].exists()
    new_data = readable_files(data, "image", MNIST)
    assert new_data["train_labels.idx"] == gzip.decompress(new_labels)
    with in_project(new, data) as context:
        assert context.store.has(pinned_digest(new, "train_labels.idx"))
        assert context.store.has(pinned_digest(new, "train_images.idx"))


def test_one_thread_takes_objects_from_store_folders_on_a_local_disk(tmp_path, monkeypatch):
    from datamaestro.project import sync as lock_sync
    from datamaestro.remotes.folder import FolderRemote
    from datamaestro.remotes.web import HttpRemote
    from datamaestro.store.layout import on_local_disk

    folder = FolderRemote(tmp_path / "peer")
    web = HttpRemote("http://127.0.0.1:1/", lambda: None)
    # threads only take turns on small local files; they hide the waits of a network
    assert lock_sync.default_jobs([folder]) == (1 if on_local_disk(tmp_path) else lock_sync.default_jobs())
    assert lock_sync.default_jobs([folder, web]) == lock_sync.default_jobs() > 1
    monkeypatch.setattr(lock_sync, "on_local_disk", lambda path: False)  # the folder on NFS
    assert lock_sync.default_jobs([folder]) > 1
