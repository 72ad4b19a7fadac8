"""Preparation as an experimaestro job, and ``is_prepared()`` answered from the store.

experimaestro 2 runs a ``Prepare`` config's ``prepare()`` before the tasks
that use it, in the driver or, once ``.submit(launcher=...)`` is called, as a
job of its own; it asks ``is_prepared()`` first and refuses to submit a
config that cannot answer it. These tests run real experiments (the job
processes import this module) against a local HTTP server.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from experimaestro import Meta, Param, PathGenerator, RunMode, Task, experiment, field
from experimaestro.core.objects.config import clone
from experimaestro.core.serialization import deserialize, serialize
from experimaestro.launchers.direct import DirectLauncher
from experimaestro.connectors.local import LocalConnector
from experimaestro.scheduler.prepare import PrepareResource

from datamaestro.api import find_dataset, prepare_dataset
from datamaestro.data import File
from datamaestro_testimage.data import ImageClassification

MNIST_ID = "com.lecun.mnist"
TRAIN_IMAGES = "mnist/train-images-idx3-ubyte.gz"


class CountImages(Task):
    """Writes the shape of the training images of an image classification dataset."""

    data: Param[ImageClassification]
    """The dataset"""

    run: Param[int] = field(default=0)
    """Distinguishes runs (so that a second experiment runs the task again)"""

    output: Meta[Path] = field(default_factory=PathGenerator("shape.json"))
    """Where the shape is written"""

    def execute(self):
        """Reads the images and writes their shape."""
        self.output.write_text(json.dumps(list(self.data.train.images.data().shape)))


@pytest.fixture
def job_environment(monkeypatch):
    """The job processes import this module and read the test's settings and data dir."""
    tests_dir = Path(__file__).parents[1]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tests_dir), os.environ.get("PYTHONPATH", "")]))
    PrepareResource.reset()
    yield
    PrepareResource.reset()


def _experiment(workdir: Path, **options):
    return experiment(workdir, "datamaestro", port=None, register_signals=False, no_db=True, no_environmental_impact=True, **options)


def _prepare_job_logs(workdir: Path) -> list[Path]:
    """The logs of the preparation jobs that ran in a workspace (a job marked done without running has none)."""
    return sorted((workdir / "jobs" / "experimaestro.prepare").glob("*/*.err"))


def test_preparation_runs_as_a_job_then_never_again(mnist_server, tmp_path, job_environment):
    launcher = DirectLauncher(LocalConnector.instance())
    with _experiment(tmp_path / "xp1") as xp:
        dataset = prepare_dataset(MNIST_ID).submit(launcher=launcher)
        assert not dataset.is_prepared()
        task = CountImages.C(data=dataset).submit()
        xp.wait()
    assert json.loads(Path(task.output).read_text()) == [600, 28, 28]
    # the job process downloaded, not this one
    assert len(_prepare_job_logs(tmp_path / "xp1")) == 1
    assert mnist_server.count(TRAIN_IMAGES) == 1
    assert prepare_dataset(MNIST_ID, download=False).is_prepared()

    # data there: a new experiment runs its task, and no preparation job
    PrepareResource.reset()
    with _experiment(tmp_path / "xp2") as xp:
        dataset = prepare_dataset(MNIST_ID).submit(launcher=launcher)
        task = CountImages.C(data=dataset, run=1).submit()
        xp.wait()
    assert json.loads(Path(task.output).read_text()) == [600, 28, 28]
    assert _prepare_job_logs(tmp_path / "xp2") == []
    assert mnist_server.count(TRAIN_IMAGES) == 1


def test_prepare_mode_warms_the_store_and_runs_no_task(mnist_server, tmp_path, job_environment):
    with _experiment(tmp_path / "xp", run_mode=RunMode.PREPARE):
        dataset = prepare_dataset(MNIST_ID)
        task = CountImages.C(data=dataset).submit()
    assert not Path(task.output).exists()
    assert not (tmp_path / "xp" / "jobs").exists()
    assert find_dataset(MNIST_ID).is_prepared()
    assert mnist_server.count(TRAIN_IMAGES) == 1


def test_is_prepared_answers_from_the_store(mnist_server, dm_context):
    definition = find_dataset(MNIST_ID)
    config = prepare_dataset(MNIST_ID, download=False)
    assert definition.is_prepared() is False
    assert config.is_prepared() is False
    assert config.train.images.is_prepared() is False  # a nested config reaches its dataset too
    prepare_dataset(MNIST_ID)
    assert definition.is_prepared() is True
    assert config.is_prepared() is True
    requests = len(mnist_server.requests)
    # no network, and no rehash: a damaged object is not noticed (that is `store verify`'s job)
    assert config.is_prepared() and len(mnist_server.requests) == requests
    # the readable folder no longer shows the data: not prepared
    view_link = dm_context.locate(definition).path / ".view"
    view_link.unlink()
    assert definition.is_prepared() is False
    prepare_dataset(MNIST_ID)
    assert definition.is_prepared() is True


def test_is_prepared_honours_the_lock_in_scope(mnist_server, tmp_path):
    import re

    from datamaestro.api import add_datasets, lock_project
    from datamaestro.context import Context

    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text('[project]\nname = "xp"\n')
    with Context(overrides={"data_dir": tmp_path / "data"}, progress=False, project_dir=project) as context:
        add_datasets([MNIST_ID])
        lock_project()
        definition = find_dataset(MNIST_ID)
        assert context.lock_path is not None
        # locking prepared the data: the pinned view is there
        assert definition.is_prepared() is True
        # a lock pinning other bytes (its manifest made to match): what the store holds is not what the lock wants
        from datamaestro.lock.fileformat import loads
        from datamaestro.store.views import manifest_digest

        text = re.sub(r'\ndigest = "blake3:[0-9a-f]{4}', '\ndigest = "blake3:0000', context.lock_path.read_text(), count=1)
        entry = loads(text).datasets[MNIST_ID]
        context.lock_path.write_text(text.replace(entry.manifest, manifest_digest(entry.entries())))
        assert definition.is_prepared() is False
        with context.without_lock():
            assert definition.is_prepared() is True


def test_an_adhoc_config_has_nothing_to_prepare(dm_context):
    assert File.C(path=Path("x")).is_prepared() is True


def test_prepare_reaches_the_dataset_of_a_cloned_config(mnist_server, dm_context, tmp_path):
    """A copy, experimaestro's clone, and the instance a job process loads all keep the id that leads to the dataset.

    (experimaestro 2.7 configs do not pickle; its own serialization is how a
    config reaches a job.)
    """
    config = prepare_dataset(MNIST_ID, download=False)
    (tmp_path / "serialized").mkdir()
    serialize(config, tmp_path / "serialized")
    loaded = deserialize(tmp_path / "serialized", as_instance=True)
    copies = [config.copy(), clone(config), loaded]
    for copied in copies:
        assert copied.id == config.id
        assert copied.is_prepared() is False
    assert loaded.prepare() is loaded
    assert all(copied.is_prepared() for copied in copies) and config.is_prepared()
    assert Path(loaded.train.images.path).is_file()


def test_is_prepared_follows_references(dm_context, http_server):
    from test_links import make_datasets

    A, B, Both = make_datasets(http_server)
    both = Both.__dataset__
    assert both.is_prepared() is False
    prepare_dataset(Both)
    assert both.is_prepared() is True and A.__dataset__.is_prepared() is True
    # the referenced dataset's definition changes: neither it nor what uses it is prepared any more
    (http_server.root / "a2.txt").write_bytes(b"A2")
    A.DATA.url = http_server.url("a2.txt")
    assert A.__dataset__.is_prepared() is False and both.is_prepared() is False


def test_a_generated_dataset_answers_for_its_own_data(dm_context):
    from datamaestro.definitions import AbstractDataset

    class Outside(AbstractDataset):
        """Data kept by its own code (as ir_datasets' cache)"""

        present = False

        def _prepare(self, download=False):
            return File.C(path=Path("outside"))

        def is_prepared(self):
            return self.present

    outside = Outside()
    outside.id = "test.compat.outside"
    definition = outside.as_definition()
    assert definition.is_prepared() is False
    outside.present = True
    assert definition.is_prepared() is True
    # by default it cannot tell: its download() runs (cheap when its data is there)
    assert AbstractDataset().is_prepared() is False
