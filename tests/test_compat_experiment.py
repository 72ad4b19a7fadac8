"""An experimaestro experiment whose task takes a dataset config: the data is prepared, the task reads it.

Inside an experiment ``prepare_dataset`` downloads nothing; experimaestro
calls ``prepare()`` on the data config (data types are
``experimaestro.Prepare``) before the task runs, and the task, in its own
process, reads the files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from experimaestro import Meta, Param, PathGenerator, Task, experiment, field

from datamaestro.api import prepare_dataset
from datamaestro_testimage.data import ImageClassification


class CountImages(Task):
    """Writes the shape of the training images of an image classification dataset."""

    data: Param[ImageClassification]
    """The dataset"""

    output: Meta[Path] = field(default_factory=PathGenerator("shape.json"))
    """Where the shape is written"""

    def execute(self):
        """Reads the images and writes their shape."""
        self.output.write_text(json.dumps(list(self.data.train.images.data().shape)))


def test_a_task_gets_its_data_prepared(mnist_server, tmp_path, monkeypatch):
    # the job process imports this module and reads the same settings and data dir
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))
    data_dir = Path(os.environ["DATAMAESTRO_DIR"])
    with experiment(tmp_path / "xp", "datamaestro", port=None, register_signals=False, no_db=True, no_environmental_impact=True) as xp:
        dataset = prepare_dataset("com.lecun.mnist")
        # nothing was downloaded yet: experimaestro prepares the data before the task
        assert not (data_dir / "data" / "image" / "com" / "lecun" / "mnist").exists()
        task = CountImages.C(data=dataset).submit()
        xp.wait()
    assert json.loads(Path(task.output).read_text()) == [600, 28, 28]
    assert (data_dir / "data" / "image" / "com" / "lecun" / "mnist" / "train_images.idx").is_symlink()
