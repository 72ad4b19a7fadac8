"""A dataset of the Hugging Face Hub, loaded with the ``datasets`` library.

``Param`` fields say *which* data (they make the identifier), ``Meta``
fields *how* it is loaded (streaming, a local copy)::

    data = HuggingFaceDataset.C(repo_id="user/dataset", split="train")
    data.data   # a datasets.Dataset (pip install datasets)
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Optional

from experimaestro import Meta, Param, PathGenerator, Task, field

from . import Base


class HuggingFaceDataset(Base):
    """A Hub dataset (or a local copy of one).

    :param repo_id: the Hub repository (``user/dataset``)
    :param name: the dataset's configuration name
    :param data_files: the files to load
    :param split: the split to load
    :param revision: a commit, branch or tag
    :param streaming: stream instead of downloading
    :param local_path: a local copy to load instead of the Hub
    """

    repo_id: Param[str]
    """The Hub repository"""

    name: Param[Optional[str]] = field(default=None, ignore_default=True)
    """The dataset's configuration name"""

    data_files: Param[Optional[str]] = field(default=None, ignore_default=True)
    """The files to load"""

    split: Param[Optional[str]] = field(default=None, ignore_default=True)
    """The split to load"""

    revision: Param[Optional[str]] = field(default=None, ignore_default=True)
    """A commit, branch or tag"""

    streaming: Meta[bool] = field(default=False, ignore_default=True)
    """Stream the data instead of downloading it"""

    local_path: Meta[Optional[Path]] = field(default=None, ignore_default=True)
    """A local copy, loaded instead of the Hub"""

    @property
    def source(self) -> str:
        """The local copy's path, else the Hub repository."""
        return str(self.local_path) if self.local_path is not None else self.repo_id

    def download(self) -> None:
        """Prepares the owning dataset, then lets ``datasets`` download the data."""
        super().download()
        if self.streaming or self.local_path is not None:
            return
        from ..hf_datasets import hf_download_and_prepare

        hf_download_and_prepare(self.source, self.name, data_files=self.data_files, split=self.split, revision=self.revision)

    @cached_property
    def data(self):
        """The data, as ``datasets`` loads it.

        Read through the builder :meth:`download` prepared (a build restricted
        to one split lives in its own cache folder: a plain ``load_dataset``
        would miss it and fetch everything again).
        """
        from ..hf_datasets import _datasets_library, hf_download_and_prepare

        datasets = _datasets_library()
        if self.local_path is not None:
            try:
                return datasets.load_from_disk(str(self.local_path))
            except Exception:
                # not a save_to_disk folder: a copy of the repository
                return datasets.load_dataset(str(self.local_path))
        if self.streaming:
            return datasets.load_dataset(self.source, self.name, data_files=self.data_files, split=self.split, revision=self.revision, streaming=True)
        builder = hf_download_and_prepare(self.source, self.name, data_files=self.data_files, split=self.split, revision=self.revision)
        return builder.as_dataset(split=self.split)


class FlattenAndShuffleDataset(Task):
    """Concatenates Hub datasets, shuffles them (with a seed) and saves the result in the task's folder.

    The indices are flattened, so that reading the result is sequential. The
    task's result (what ``submit()`` returns) is a copy of the first
    sample's config, with ``local_path`` the saved folder and ``streaming``
    off::

        shuffled = FlattenAndShuffleDataset.C(samples=[subset1, subset2], seed=42).submit(launcher=launcher)
        shuffled.local_path   # the task's folder
    """

    samples: Param[list[HuggingFaceDataset]]
    """The datasets to concatenate and shuffle"""

    seed: Param[int]
    """The seed of the shuffle"""

    output_dir: Meta[Path] = field(default_factory=PathGenerator("shuffled_dataset"))
    """Where the dataset is saved"""

    def execute(self):
        """Concatenates, shuffles, flattens and saves (with as many processes as CPUs given)."""
        import logging
        import os

        if not self.samples:
            raise ValueError("FlattenAndShuffleDataset received an empty list of samples.")
        from ..hf_datasets import _datasets_library

        datasets = _datasets_library()
        logger = logging.getLogger(__name__)
        logger.info("concatenating %d datasets", len(self.samples))
        combined = datasets.concatenate_datasets([sample.data for sample in self.samples])
        shuffled = combined.shuffle(seed=self.seed)
        processes = int(os.environ.get("SLURM_CPUS_PER_TASK", os.cpu_count() or 1))
        flattened = shuffled.flatten_indices(num_proc=processes, writer_batch_size=10000)
        flattened.save_to_disk(self.output_dir, num_proc=processes)
        logger.info("dataset saved to %s", self.output_dir)

    def __submit__(self, dep, add_action, **kwargs):
        if not self.samples:
            raise ValueError("FlattenAndShuffleDataset received an empty list of samples.")
        first = self.samples[0]
        values = {key: getattr(first, key) for key in first.__xpmtype__.arguments.keys()}
        values["local_path"] = self.output_dir
        values["streaming"] = False
        return dep(first.__class__.C(**values))
