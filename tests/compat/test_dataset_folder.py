"""1.16's dataset folder where it meets the store: a dataset object with its own folder, prepared through datamaestro's API.

The dataset folder (``.state.json``, ``.downloads/``) is the dataset's own,
outside the store; the store sees it through ``download()`` and
``is_prepared()`` only (see datamaestro/compat/folder.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from datamaestro.api import prepare_dataset
from datamaestro.data import File
from datamaestro.definitions import AbstractDataset, _bind_class_resources
from datamaestro.download import FileResource
from datamaestro.errors import DatamaestroError, DownloadError


class Counted(FileResource):
    """Writes one file; counts its runs (in the dataset object, so that a test sees them)."""

    def _download(self, destination: Path):
        self.dataset.runs.append(self.name)
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_text("data")


class Broken(FileResource):
    """Writes half its file, then fails."""

    def _download(self, destination: Path):
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_text("half")
        raise RuntimeError("connection reset")


class Outside(AbstractDataset):
    """A dataset that keeps its data in a folder of its own."""

    def __init__(self, folder: Path, dataset_id: str):
        super().__init__(None)
        self.folder = folder
        self.id = dataset_id
        self.runs: list[str] = []

    @property
    def datapath(self) -> Path:
        return self.folder

    def _prepare(self, download=False):
        return File.C(path=self.folder / "data.txt")


def test_a_dataset_folder_is_prepared_once_through_the_api(dm_context, tmp_path):
    dataset = Outside(tmp_path / "outside", "test.compat.folder")
    Counted("data.txt").bind("DATA", dataset)
    definition = dataset.as_definition()
    assert definition.is_prepared() is False

    prepare_dataset(definition, context=dm_context)
    prepare_dataset(definition, context=dm_context)

    assert dataset.runs == ["DATA"], "the second prepare found the resource complete in the dataset's folder"
    assert (dataset.folder / "data.txt").read_text() == "data"
    assert json.loads((dataset.folder / ".state.json").read_text())["resources"]["DATA"]["state"] == "complete"
    assert not (dataset.folder / ".downloads").exists()
    assert definition.is_prepared() is True


def test_a_failed_resource_is_one_clear_error_and_leaves_no_partial_data(dm_context, tmp_path):
    dataset = Outside(tmp_path / "outside", "test.compat.broken")
    Broken("data.txt").bind("DATA", dataset)

    with pytest.raises(DatamaestroError) as raised:
        prepare_dataset(dataset.as_definition(), context=dm_context)

    assert "connection reset" in str(raised.value)
    assert not (dataset.folder / ".downloads" / "data.txt").exists()
    assert not (dataset.folder / "data.txt").exists()
    with pytest.raises(DownloadError) as raised:
        dataset.prepare(download=True)
    assert isinstance(raised.value.__cause__, RuntimeError)


def test_class_attributes_are_bound_in_dependency_order(tmp_path):
    class Resources:
        """The resources, declared as class attributes as 1.16's class-based datasets did."""

        RESULT = Counted("result.txt")
        SOURCE = Counted("source.txt", transient=True)

    Resources.RESULT._dependencies.append(Resources.SOURCE)
    dataset = Outside(tmp_path / "outside", "test.compat.classes")
    _bind_class_resources(Resources, dataset)

    assert dataset.download() is True
    assert dataset.runs == ["SOURCE", "RESULT"]
    assert (dataset.folder / "result.txt").exists()
    assert not (dataset.folder / "source.txt").exists(), "a transient input is removed once its users are complete"
    assert dataset.is_prepared() is True
    assert dataset.download() is True
    assert dataset.runs == ["SOURCE", "RESULT"], "nothing runs again"
