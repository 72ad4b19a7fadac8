"""Definitions (class and decorator styles), the registry's index, search."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from datamaestro.api import get_dataset
from datamaestro.data import File
from datamaestro.definitions import Dataset, dataset
from datamaestro.download import FileResource
from datamaestro.download.single import FileDownloader, filedownloader
from datamaestro.errors import DatasetNotFoundError, DefinitionError, UsageError
from datamaestro.search import search


def test_class_style_resources_in_definition_order(dm_context):
    @dataset(id="test.defs.ordered", tags=["t"], tasks=["k"], url="http://home/")
    class Ordered(Dataset):
        """Ordered things

        Longer description
        on two lines."""

        B = FileDownloader("b.txt", "http://127.0.0.1:9/b.txt")
        A = FileDownloader("a.txt", "http://127.0.0.1:9/a.txt")

        def config(self) -> File:
            return File.C(path=self.A.path)

    definition = Ordered.__dataset__
    assert definition.id == "test.defs.ordered"
    assert definition.name == "Ordered things"
    assert definition.description == "Longer description\non two lines."
    assert [r.name for r in definition.ordered_resources()] == ["b.txt", "a.txt"]
    assert definition.tags == ["t"] and definition.tasks == ["k"]
    assert definition.type_name == "datamaestro.data.File"
    config = definition.config()
    assert config.path == dm_context.data_dir / "data" / "__custom__" / "test" / "defs" / "ordered" / "a.txt"
    assert config.id == "test.defs.ordered"


def test_ids_from_module_path():
    @dataset()
    class Thing(Dataset):
        """A thing"""

    assert Thing.__dataset__.id == "test_definitions.thing"

    @dataset(id="renamed")
    class Other(Dataset):
        """Another"""

    assert Other.__dataset__.id == "test_definitions.renamed"


class Upper(FileResource):
    """A resource with inputs (only its dependencies matter here)."""

    def __init__(self, name, inputs):
        super().__init__(name)
        self.inputs = list(inputs)

    def dependencies(self):
        return self.inputs


def test_dependencies_come_first_and_cycles_are_refused():
    raw = FileDownloader("raw.txt", "http://127.0.0.1:9/raw.txt", transient=True)

    @dataset(id="test.defs.dag")
    class Dag(Dataset):
        """DAG"""

        UPPER = Upper("upper.txt", [raw])
        RAW = raw

    assert [r.name for r in Dag.__dataset__.ordered_resources()] == ["raw.txt", "upper.txt"]

    first = Upper("first.txt", [])
    second = Upper("second.txt", [first])
    first.inputs = [second]

    @dataset(id="test.defs.cycle")
    class Cycle(Dataset):
        """Cycle"""

        FIRST = first
        SECOND = second

    with pytest.raises(DefinitionError, match="cycle"):
        Cycle.__dataset__.ordered_resources()


def test_decorator_style_passes_paths(dm_context):
    @filedownloader("data.csv", "http://127.0.0.1:9/data.csv")
    @filedownloader("extra.txt", "http://127.0.0.1:9/extra.txt")
    @dataset(File, id="test.defs.decorated")
    def decorated(data, extra):
        """Decorated"""
        assert extra.name == "extra.txt"
        return {"path": data}

    definition = decorated.__dataset__
    assert sorted(definition.resources) == ["data", "extra"]
    assert definition.config().path.name == "data.csv"


def test_bad_definitions():
    with pytest.raises(DefinitionError, match="not a URL"):
        FileDownloader("x", "not a url")
    with pytest.raises(DefinitionError, match="relative path"):
        FileDownloader("../x", "http://127.0.0.1:9/x")
    with pytest.raises(DefinitionError, match="two resources"):

        @dataset(id="test.defs.twice")
        class Twice(Dataset):
            """Twice"""

            A = FileDownloader("same", "http://127.0.0.1:9/a")
            B = FileDownloader("same", "http://127.0.0.1:9/b")


def test_plugin_mnist_config_without_network(dm_context, monkeypatch):
    import socket

    def no_network(*args, **kwargs):
        raise AssertionError("get_dataset must not touch the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    config = get_dataset("com.lecun.mnist")
    folder = dm_context.data_dir / "data" / "image" / "com" / "lecun" / "mnist"
    assert config.train.images.path == folder / "train_images.idx"
    assert config.test.labels.path == folder / "test_labels.idx"
    assert config.id == "com.lecun.mnist@image"
    assert config.train.id == "com.lecun.mnist.train@image"
    assert config.train.images.id == "com.lecun.mnist.train.images@image"
    assert not folder.exists()


def test_unknown_id_suggests_close_ids(dm_context):
    with pytest.raises(DatasetNotFoundError) as info:
        get_dataset("com.lecun.mnsit")
    assert info.value.suggestions[0] == "com.lecun.mnist"
    assert "did you mean com.lecun.mnist?" in str(info.value)
    assert get_dataset("mnist").id == "com.lecun.mnist@image"  # an alias


def test_search_terms(dm_context):
    index = dm_context.registry.index()
    ids = lambda *terms: [e.id for e in search(index, terms)]  # noqa: E731
    assert ids("mnist") == ["com.lecun.mnist"]
    assert ids("HANDWRITTEN") == ["com.lecun.mnist"]  # description, any case
    assert ids("tag:digits") == ["com.lecun.mnist", "org.example.digits"]
    assert ids("tag:digits", "task:classification") == ["org.example.digits"]
    assert ids("repo:image", "type:ImageClassification") == ["com.lecun.mnist"]
    assert ids("type:data.File") == ["org.example"]
    assert ids("repo:text") == []
    with pytest.raises(UsageError, match="unknown search field 'colour'"):
        ids("colour:red")


def test_index_is_cached_and_search_imports_no_plugin_module(dm_context, tmp_path):
    """The index is kept per user: a search on another, new data dir imports no plugin either."""
    dm_context.registry.index()
    fingerprint = dm_context.registry.fingerprint()
    assert (Path(os.environ["DATAMAESTRO_CACHE"]) / dm_context.registry.index_entry_name(fingerprint)).is_file()
    assert not (dm_context.data_dir / "cache" / "index").exists()
    code = (
        "import sys, json\n"
        "from datamaestro.context import Context\n"
        "from datamaestro.api import search_datasets\n"
        "ids = [e.id for e in search_datasets(['mnist'])]\n"
        "loaded = [m for m in sys.modules if m.startswith('datamaestro_testimage.config') or m in ('experimaestro', 'numpy', 'requests')]\n"
        "print(json.dumps([ids, loaded]))\n"
    )
    env = {**os.environ, "DATAMAESTRO_DIR": str(tmp_path / "another-data-dir")}
    output = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    ids, loaded = json.loads(output)
    assert ids == ["com.lecun.mnist"]
    assert loaded == []


def test_index_falls_back_to_the_data_dir_when_the_user_cache_cannot_be_written(dm_context, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("DATAMAESTRO_CACHE", str(blocker / "cache"))  # mkdir fails even for root
    dm_context.registry.index()
    name = dm_context.registry.index_entry_name(dm_context.registry.fingerprint())
    assert (dm_context.data_dir / "cache" / name).is_file()
    # the next registry reads it instead of importing the plugins again
    dm_context.registry._index = None
    monkeypatch.setattr(type(dm_context.registry), "_build_index", lambda self: pytest.fail("the index was built again"))
    assert "com.lecun.mnist" in [entry.id for entry in dm_context.registry.index()]


def test_index_rebuilt_when_a_plugin_changes(dm_context):
    registry = dm_context.registry
    before = registry.fingerprint()
    import datamaestro_testimage.config.org.example as module

    path = Path(module.__file__)
    stat = path.stat()
    try:
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
        assert registry.fingerprint() != before
    finally:
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert registry.fingerprint() == before
