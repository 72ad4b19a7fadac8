"""The Python entry points of datamaestro 1.16: what ``prepare_dataset`` accepts, the wrapper's ``prepare()``, ``Context``."""

from __future__ import annotations

from pathlib import Path

import pytest

from datamaestro.api import find_dataset, prepare_dataset
from datamaestro.context import Context
from datamaestro.errors import DatamaestroError
from datamaestro_testimage.config.com.lecun import MNIST

MNIST_ID = "com.lecun.mnist"


def test_prepare_dataset_takes_a_definition_a_dataset_class_or_a_config(mnist_server, dm_context):
    definition = find_dataset(MNIST_ID)
    by_id = prepare_dataset(MNIST_ID, download=False)
    assert prepare_dataset(definition, download=False).__xpm__.identifier.all == by_id.__xpm__.identifier.all
    assert prepare_dataset(MNIST, download=False).id == by_id.id
    # a config: its dataset is prepared, and the config itself handed back
    assert not by_id.is_prepared()
    assert prepare_dataset(by_id) is by_id
    assert by_id.is_prepared() and Path(by_id.train.images.path).is_file()
    with pytest.raises(DatamaestroError, match="is not a dataset id"):
        prepare_dataset(42)


def test_the_wrapper_prepare_returns_one_config(mnist_server, dm_context):
    definition = find_dataset(MNIST_ID)
    config = definition.prepare()
    assert definition.prepare() is config
    assert definition.prepare(download=True) is config  # same folder: same config
    assert Path(config.train.images.path).is_file()


def test_context_attributes_of_the_original(mnist_server, dm_context):
    assert dm_context.datapath == dm_context.data_dir / "data"
    assert dm_context.cachepath == dm_context.data_dir / "cache"
    assert Context.instance() is dm_context and Context.INSTANCE is dm_context
    assert Context.MAINDIR == dm_context.data_dir
    assert dm_context.running_test is True
    assert dm_context.keep_downloads is False and dm_context.traceback is False
    assert dm_context.user_settings is dm_context.settings
    image = dm_context.repository("image")
    assert image in list(dm_context.repositories())
    assert dm_context.repositorymap[image.basemodule()] is image
    assert dm_context.repository(None) is None
    with pytest.raises(Exception, match="No datasets repository named nope"):
        dm_context.repository("nope")
    assert MNIST_ID in {getattr(dataset, "id", None) for dataset in dm_context.datasets()}
    assert dm_context.dataset(MNIST_ID).id == MNIST_ID
    with dm_context.downloadURL(mnist_server.url("mnist/t10k-labels-idx1-ubyte.gz")) as downloaded:
        assert downloaded.path.read_bytes() == (mnist_server.root / "mnist/t10k-labels-idx1-ubyte.gz").read_bytes()
    assert not downloaded.path.exists()


def test_context_frompath(tmp_path):
    with Context.frompath(tmp_path / "elsewhere") as context:
        assert Context.instance() is context
        assert context.datapath == tmp_path / "elsewhere" / "data"
