"""A remote cache in a folder: push, then pull-through on prepare and sync (real processes, a real server).

The same code serves object storage (``tests/test_remote_s3.py`` runs it on
a real S3 server); a folder is the quickest remote to set up.
"""

from __future__ import annotations

import os
from pathlib import Path

from datamaestro.store import Store
from support.lockproject import PINNED_FILES, dm, in_project, make_project, readable_files, served  # noqa: F401 (fixture)
from support.mnistdata import MNIST_FILES

MNIST = "com.lecun.mnist"
BUNDLE = "org.pinned.bundle"
SERVED = [*MNIST_FILES.values(), "pinned/files.tar.gz", "pinned/text.txt.gz"]


def counts(server) -> dict[str, int]:
    """GET requests per served file."""
    return {path: server.count(path) for path in SERVED}


def remote_env(folder: Path) -> dict[str, str]:
    """The remote cache ``lab`` in a folder, given as the environment variable."""
    return {"DATAMAESTRO_REMOTES": f'lab = {{ url = "file://{folder}" }}'}


def pushed(served, tmp_path) -> tuple[Path, Path]:
    """Prepares the bundle and MNIST on data dir ``a`` and pushes them to a remote folder; returns (project, remote).

    The prepares run in this process (the set-up: a new process costs seconds on a loaded
    machine); the push, what the tests check, is the console script's.
    """
    from datamaestro.api import prepare_dataset

    project = make_project(tmp_path / "project")
    remote = tmp_path / "remote"
    Store(remote)
    with in_project(project, tmp_path / "a") as context:
        for dataset in (BUNDLE, MNIST):
            prepare_dataset(dataset, context=context)
    result = dm(project, "store", "push", str(remote), BUNDLE, MNIST, data=tmp_path / "a")
    assert "pushed" in result.stdout and "of 2 datasets" in result.stdout
    return project, remote


def test_a_fresh_store_prepares_from_the_remote_without_any_request(served, tmp_path):
    project, remote = pushed(served, tmp_path)
    before = counts(served)

    result = dm(project, "prepare", BUNDLE, data=tmp_path / "b", env=remote_env(remote))
    dm(project, "prepare", MNIST, data=tmp_path / "b", env=remote_env(remote))

    assert counts(served) == before, result.stderr
    files = readable_files(tmp_path / "b", "image", BUNDLE)
    assert {f"files/{name}": data for name, data in PINNED_FILES.items()}.items() <= files.items()
    assert files["upper.txt"] == b"SOME TEXT\n" and files["count.txt"].strip() == b"3"
    assert readable_files(tmp_path / "b", "image", BUNDLE) == readable_files(tmp_path / "a", "image", BUNDLE)
    assert dm(project, "store", "verify", data=tmp_path / "b").returncode == 0


def test_a_second_push_sends_nothing(served, tmp_path):
    project, remote = pushed(served, tmp_path)
    again = dm(project, "store", "push", str(remote), BUNDLE, MNIST, data=tmp_path / "a")
    assert "pushed 0 objects" in again.stdout


def test_a_corrupt_remote_object_is_refused_and_the_original_url_used(served, tmp_path):
    project, remote = pushed(served, tmp_path)
    labels = readable_files(tmp_path / "a", "image", MNIST)["train_labels.idx"]
    damaged = (tmp_path / "a" / "data" / "image" / "com" / "lecun" / "mnist" / "train_labels.idx").resolve()
    in_remote = remote / "objects" / damaged.parent.name / damaged.name
    os.chmod(in_remote, 0o644)
    in_remote.write_bytes(bytes(len(labels)))  # same size, other bytes
    before = counts(served)

    result = dm(project, "prepare", MNIST, data=tmp_path / "c", env=remote_env(remote))

    assert "refused" in result.stderr
    assert readable_files(tmp_path / "c", "image", MNIST)["train_labels.idx"] == labels
    after = counts(served)
    assert after[MNIST_FILES["train_labels.idx"]] == before[MNIST_FILES["train_labels.idx"]] + 1
    assert {p: n for p, n in after.items() if p != MNIST_FILES["train_labels.idx"]} == {p: n for p, n in before.items() if p != MNIST_FILES["train_labels.idx"]}


def test_offline_a_folder_remote_is_used(served, tmp_path):
    project, remote = pushed(served, tmp_path)
    served.stop()
    result = dm(project, "--offline", "prepare", BUNDLE, data=tmp_path / "b", env=remote_env(remote), check=False)
    assert result.returncode == 0, result.stderr
    assert readable_files(tmp_path / "b", "image", BUNDLE) == readable_files(tmp_path / "a", "image", BUNDLE)


def test_lock_here_and_sync_elsewhere_through_the_remote(served, tmp_path):
    project, remote = pushed(served, tmp_path)
    dm(project, "add", BUNDLE, MNIST, data=tmp_path / "a")
    dm(project, "lock", data=tmp_path / "a")
    before = counts(served)

    result = dm(project, "sync", data=tmp_path / "b", env=remote_env(remote))

    assert counts(served) == before
    assert "from peers" in result.stdout and f"from lab ({remote})" in result.stdout
    assert readable_files(tmp_path / "b", "image", BUNDLE) == readable_files(tmp_path / "a", "image", BUNDLE)


def test_push_of_a_dataset_never_prepared_says_so(served, tmp_path):
    project = make_project(tmp_path / "project")
    remote = tmp_path / "remote"
    Store(remote)
    result = dm(project, "store", "push", str(remote), BUNDLE, data=tmp_path / "a")
    assert "not prepared in this store" in result.stderr and "pushed 0 objects" in result.stdout


def test_an_unknown_remote_name_is_one_message(served, tmp_path):
    project = make_project(tmp_path / "project")
    result = dm(project, "store", "push", "nowhere", BUNDLE, data=tmp_path / "a", check=False)
    assert result.returncode == 2 and "no remote named 'nowhere'" in result.stderr and "Traceback" not in result.stderr


def test_an_unsupported_scheme_and_a_remote_without_url_are_one_message(served, tmp_path):
    project = make_project(tmp_path / "project")
    dm(project, "add", MNIST, data=tmp_path / "a")
    dm(project, "lock", data=tmp_path / "a")
    ftp = dm(project, "sync", "--from", "ftp://mirror.example/store", data=tmp_path / "b", check=False)
    assert ftp.returncode == 2 and "the scheme ftp:// is not supported" in ftp.stderr and "Traceback" not in ftp.stderr
    nameless = dm(project, "prepare", MNIST, data=tmp_path / "b", env={"DATAMAESTRO_REMOTES": 'lab = { endpoint = "http://127.0.0.1:1" }'}, check=False)
    assert nameless.returncode == 2 and '[remotes.lab] needs url = "s3://bucket/prefix"' in nameless.stderr
    unknown = dm(project, "prepare", MNIST, data=tmp_path / "b", env={"DATAMAESTRO_REMOTES": 'lab = { url = "s3://b/p", secret = "x" }'}, check=False)
    assert unknown.returncode == 2 and "has unknown keys ['secret']" in unknown.stderr
