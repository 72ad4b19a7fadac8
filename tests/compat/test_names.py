"""Names code written for datamaestro 1.16 imports: they stay importable and mean what they meant; deprecated ones warn once."""

from __future__ import annotations

import importlib
import os
import shutil
import warnings
from pathlib import Path

import pytest

from datamaestro.api import find_dataset, prepare_dataset
from datamaestro.data import Folder
from datamaestro.definitions import Dataset, dataset
from datamaestro.errors import DefinitionError

MNIST_ID = "com.lecun.mnist"


def test_definitions_names():
    from datamaestro.definitions import AbstractDataset, DataDefinition, DatasetDefinition, DatasetWrapper, datatags, datatasks, metadataset  # noqa: F401

    assert issubclass(DatasetDefinition, DatasetWrapper)  # every definition is one; DatasetWrapper(annotation, target) builds one as 1.16 did
    assert isinstance(find_dataset(MNIST_ID), DatasetWrapper)
    target = type("ProcessedMNIST", (), {})
    target.__module__ = "datamaestro.config.lecun"
    assert DataDefinition.repository_relpath(target) == (None, ["config", "lecun", "processed.mnist"])


def test_resource_state_is_read_from_the_store(mnist_server, dm_context):
    from datamaestro.download import ResourceState

    definition = find_dataset(MNIST_ID)
    resource = definition.resources["TRAIN_IMAGES"] if "TRAIN_IMAGES" in definition.resources else next(iter(definition.resources.values()))
    assert resource.state == ResourceState.NONE
    prepare_dataset(MNIST_ID)
    assert resource.state == ResourceState.COMPLETE == "complete"
    # its object collected (as `store gc` would): PARTIAL, produced again on the next prepare
    _, output = dm_context.pipeline().lookup(resource)
    object_path = dm_context.store.objects.path_of(output.digest)
    os.chmod(object_path.parent, 0o755)
    object_path.unlink()
    assert resource.state == ResourceState.PARTIAL
    assert not (dm_context.store_dir / ".state.json").exists() and not list(dm_context.data_dir.rglob(".state.json"))


def test_filename_name_and_dependencies():
    from datamaestro.download import FileResource as LegacyFileResource
    from datamaestro.download.custom import derived
    from datamaestro.download.single import FileDownloader

    text = FileDownloader("text.txt.gz", "http://127.0.0.1:9/text.txt.gz")
    assert text.filename == "text.txt.gz" and text.name == "text.txt.gz" and text.varname == "text"
    # a list, as the original's property, and callable, as here
    assert text.dependencies == [] and text.dependencies() == []

    def count(inputs, output):
        output.write_text("1")

    lines = derived("lines.txt", [text], count)
    assert lines.dependencies() == [text]

    class OldStyle(LegacyFileResource):
        """A 1.16 resource declaring its inputs as a property."""

        @property
        def dependencies(self):
            return [text]

    old = OldStyle("old.txt")
    assert old.dependencies == [text] and old.dependencies() == [text]


def fill_folder(context, root: Path, force: bool = False) -> None:
    """A custom_download function: fetches a file through the context."""
    with context.downloadURL(os.environ["TEST_LABELS_URL"]) as downloaded:
        shutil.copy(downloaded.path, root / "labels.gz")


@dataset(id="test.compat.names.custom")
class Custom(Dataset):
    """A dataset filled by a function"""

    from datamaestro.download import custom_download

    DATA = custom_download("data", downloader=fill_folder)

    def config(self) -> Folder:
        return Folder.C(path=self.DATA.path)


def test_custom_download(mnist_server, dm_context, monkeypatch):
    monkeypatch.setenv("TEST_LABELS_URL", mnist_server.url("mnist/t10k-labels-idx1-ubyte.gz"))
    config = prepare_dataset(Custom)
    assert (Path(config.path) / "labels.gz").read_bytes() == (mnist_server.root / "mnist/t10k-labels-idx1-ubyte.gz").read_bytes()
    prepare_dataset(Custom)
    assert mnist_server.count("mnist/t10k-labels-idx1-ubyte.gz") == 1  # cached by its recipe


@pytest.mark.parametrize(
    "module, name",
    [
        ("datamaestro.download.sync", "gsync"),
        ("datamaestro.download.multiple", "List"),
        ("datamaestro.download.multiple", "Datasets"),
    ],
)
def test_retired_names_import_warn_and_say_what_replaces_them(module, name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        retired = getattr(importlib.import_module(module), name)
    with pytest.raises(DefinitionError, match="not supported") as caught:
        retired("name", "gs://bucket/path")
    assert caught.value.hint.startswith("use ")


def test_deprecated_aliases_warn_once():
    from datamaestro import resource
    from datamaestro.download.single import ConcatDownloader, FileDownloader

    resource._warned.discard("datamaestro.download.single.SingleDownload")
    with pytest.warns(DeprecationWarning, match="SingleDownload is deprecated"):
        from datamaestro.download.single import SingleDownload
    assert SingleDownload is FileDownloader
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from datamaestro.download.single import SingleDownload as again  # noqa: F401 (no second warning)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from datamaestro.download.single import concatdownload
    assert concatdownload.__self__ is ConcatDownloader

    definition = find_dataset(MNIST_ID)
    resource._warned.discard("DatasetDefinition.hasfiles")
    with pytest.warns(DeprecationWarning, match="use has_files"):
        assert definition.hasfiles() is True
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert definition.hasfiles() is True
