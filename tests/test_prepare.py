"""Preparing datasets through the store, end to end, with a real local HTTP server."""

import gzip
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from datamaestro.api import prepare_dataset, prepare_definition
from datamaestro.context import Context
from datamaestro.data import File
from datamaestro.definitions import Dataset, dataset
from datamaestro.download.checks import Md5Check
from datamaestro.download.single import FileDownloader
from datamaestro.errors import DownloadError, IntegrityError, OfflineError
from support.mnistdata import MNIST_FILES, write_mnist


def store_snapshot(store_dir: Path) -> dict[str, bytes]:
    """Every object and action of a store, by path (tmp excluded)."""
    snapshot = {}
    for folder in ("objects", "actions", "views", "trees"):
        base = store_dir / folder
        if base.is_dir():
            for path in sorted(base.rglob("*")):
                if path.is_file() and not path.is_symlink():
                    snapshot[str(path.relative_to(store_dir))] = path.read_bytes()
    return snapshot


def test_prepare_mnist_through_the_store(mnist_server, dm_context):
    config = prepare_dataset("com.lecun.mnist")
    folder = dm_context.data_dir / "data" / "image" / "com" / "lecun" / "mnist"
    store = dm_context.store_dir.resolve()
    for name in MNIST_FILES:
        path = folder / name
        assert path.is_symlink()
        assert path.resolve().is_relative_to(store / "objects")
        assert os.stat(path.resolve()).st_mode & 0o222 == 0  # objects are read-only
    np.testing.assert_array_equal(config.train.images.data(), mnist_server.mnist["train_images.idx"])
    np.testing.assert_array_equal(config.test.labels.data(), mnist_server.mnist["test_labels.idx"])
    assert config.train.images.data().shape == (600, 28, 28)
    assert list((dm_context.store_dir / "tmp").iterdir()) == []


def test_full_size_mnist_shape(dm_context, http_server):
    from support.mnistdata import mirror_settings

    write_mnist(http_server.root, 60000, 10000)
    mirror_settings(http_server.base_url)
    with Context(overrides={"data_dir": dm_context.data_dir}, progress=False):
        ds = prepare_dataset("com.lecun.mnist")
        assert ds.train.images.data().shape == (60000, 28, 28)
        assert ds.test.images.data().shape == (10000, 28, 28)


def test_warm_prepare_makes_no_request_and_no_rehash(mnist_server, dm_context, monkeypatch):
    prepare_dataset("com.lecun.mnist")
    requests_before = len(mnist_server.requests)

    def forbidden(*args, **kwargs):
        raise AssertionError("a warm prepare must not hash or write data")

    import datamaestro.store.digests as digests
    import datamaestro.store.objects as objects

    monkeypatch.setattr(digests, "digest_of_file", forbidden)
    monkeypatch.setattr(objects, "digest_of_file", forbidden)
    monkeypatch.setattr(objects.ObjectWriter, "__init__", forbidden)
    with Context(overrides={"data_dir": dm_context.data_dir}, progress=False):
        result = prepare_definition("com.lecun.mnist")
    assert result.produced == []
    assert len(mnist_server.requests) == requests_before


def test_two_data_dirs_on_one_store_download_once(tmp_path, mnist_server):
    store = tmp_path / "shared-store"
    first = Context(overrides={"data_dir": tmp_path / "a", "store_dir": store}, progress=False)
    second = Context(overrides={"data_dir": tmp_path / "b", "store_dir": store}, progress=False)
    with first:
        prepare_dataset("com.lecun.mnist")
    count = len(mnist_server.requests)
    assert count == 4
    with second:
        config = prepare_dataset("com.lecun.mnist")
    assert len(mnist_server.requests) == count
    assert config.train.images.path.is_relative_to(tmp_path / "b")
    assert config.train.images.path.resolve() == (tmp_path / "a/data/image/com/lecun/mnist/train_images.idx").resolve()
    assert {r.kind for r in first.store.roots()} == {"data"} and len(first.store.roots()) == 2


def test_prepare_adopts_data_of_the_original_datamaestro(mnist_server, dm_context):
    # The original datamaestro left plain (decompressed) files in the dataset folder
    folder = dm_context.data_dir / "data" / "image" / "com" / "lecun" / "mnist"
    folder.mkdir(parents=True)
    for name, relative in MNIST_FILES.items():
        (folder / name).write_bytes(gzip.decompress((mnist_server.root / relative).read_bytes()))
    (folder / "notes.txt").write_text("mine")
    config = prepare_dataset("com.lecun.mnist")
    assert mnist_server.requests == []
    assert (folder / "train_images.idx").is_symlink()
    assert (folder / "notes.txt").read_text() == "mine"  # what no resource claims stays
    np.testing.assert_array_equal(config.train.images.data(), mnist_server.mnist["train_images.idx"])


def test_offline_lists_missing_urls_without_any_request(mnist_server, dm_context, monkeypatch):
    monkeypatch.setenv("DATAMAESTRO_OFFLINE", "1")
    with Context(overrides={"data_dir": dm_context.data_dir}, progress=False):
        with pytest.raises(OfflineError) as info:
            prepare_dataset("com.lecun.mnist")
    assert len(info.value.urls) == 4
    assert "http://127.0.0.1:9/mnist/train-images-idx3-ubyte.gz" in str(info.value)
    assert mnist_server.requests == []
    # once present, offline works
    monkeypatch.delenv("DATAMAESTRO_OFFLINE")
    with Context(overrides={"data_dir": dm_context.data_dir}, progress=False):
        prepare_dataset("com.lecun.mnist")
    monkeypatch.setenv("DATAMAESTRO_OFFLINE", "1")
    with Context(overrides={"data_dir": dm_context.data_dir}, progress=False):
        assert prepare_dataset("com.lecun.mnist").train.images.data().shape == (600, 28, 28)


# -- failures: a clear error naming the URL; the store and readable path unchanged


def single_file_dataset(url: str, **options):
    @dataset(id="test.prepare.single")
    class Single(Dataset):
        """One file"""

        DATA = FileDownloader("data.bin", url, **options)

        def config(self) -> File:
            return File.C(path=self.DATA.path)

    return Single.__dataset__


PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


def fast_context(data_dir: Path, **overrides) -> Context:
    settings = {"data_dir": data_dir, "retries": 1, "read_timeout": 0.5, "connect_timeout": 1.0, **overrides}
    return Context(overrides=settings, progress=False)


@pytest.mark.parametrize(
    "fault, params, error, words",
    [
        ("wrong-bytes", {}, IntegrityError, ["md5", "test.prepare.single/data.bin"]),
        ("truncate", {}, DownloadError, ["truncated"]),
        ("404", {}, DownloadError, ["404"]),
        ("slow", {"delay": 3}, DownloadError, ["timeout"]),
        ("reset", {}, DownloadError, []),
    ],
)
def test_failures_leave_store_and_readable_path_unchanged(tmp_path, http_server, fault, params, error, words):
    (http_server.root / "data.bin").write_bytes(PAYLOAD)
    url = http_server.url("data.bin")
    definition = single_file_dataset(url, checker=Md5Check(hashlib.md5(PAYLOAD).hexdigest()))
    with fast_context(tmp_path / "data") as context:
        context.pipeline().run(context.request_of(definition))
        readable = definition.datapath / "data.bin"
        before = store_snapshot(context.store_dir), os.readlink(definition.datapath / ".view")
        # the server now misbehaves, and the definition asks for the file again under a new URL
        (http_server.root / "moved.bin").write_bytes(PAYLOAD)
        http_server.set_fault("moved.bin", fault, **params)
        moved = single_file_dataset(http_server.url("moved.bin"), checker=Md5Check(hashlib.md5(PAYLOAD).hexdigest()))
        with pytest.raises(error) as info:
            context.pipeline().run(context.request_of(moved))
        message = str(info.value)
        assert http_server.url("moved.bin") in message
        assert info.value.hint
        for word in words:
            assert word in message
        assert (store_snapshot(context.store_dir), os.readlink(definition.datapath / ".view")) == before
        assert readable.read_bytes() == PAYLOAD
        # nothing in tmp/ but, after a network failure, the bytes received, for the next run to resume
        assert [p.name for p in (context.store_dir / "tmp").iterdir()] in ([], ["partial"])
        for kept in (context.store_dir / "tmp").glob("partial/*.data"):
            assert PAYLOAD.startswith(kept.read_bytes())


def test_server_error_then_success(tmp_path, http_server):
    (http_server.root / "data.bin").write_bytes(PAYLOAD)
    http_server.set_fault("data.bin", "500-then-200")
    definition = single_file_dataset(http_server.url("data.bin"))
    with fast_context(tmp_path / "data") as context:
        result = context.pipeline().run(context.request_of(definition))
    assert (result.datapath / "data.bin").read_bytes() == PAYLOAD
    assert http_server.count("data.bin") == 2


def test_gc_between_check_and_publish_is_repaired(tmp_path, http_server, monkeypatch):
    from datamaestro.store import maintenance
    from datamaestro.store.layout import remove_tree

    (http_server.root / "data.bin").write_bytes(PAYLOAD)
    definition = single_file_dataset(http_server.url("data.bin"))
    with fast_context(tmp_path / "data") as context:
        first = context.pipeline().run(context.request_of(definition))
        remove_tree(first.datapath)  # the data is now unreachable, but its action record stays
        store = context.store
        register_root = store.register_root

        # another user's gc, at the worst moment: the run has found its output in the
        # store, and is about to publish it (a gc cannot run during the publication
        # itself: it holds the gc lock)
        def gc_then_register(*args, **kwargs):
            maintenance.gc(store, grace_seconds=0)
            monkeypatch.setattr(store, "register_root", register_root)
            return register_root(*args, **kwargs)

        monkeypatch.setattr(store, "register_root", gc_then_register)
        result = context.pipeline().run(context.request_of(definition))
    assert (result.datapath / "data.bin").read_bytes() == PAYLOAD
    assert http_server.count("data.bin") == 2
