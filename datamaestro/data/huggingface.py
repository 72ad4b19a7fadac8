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

from experimaestro import Meta, Param, field

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
        from ..download.huggingface import hf_download_and_prepare

        hf_download_and_prepare(self.source, self.name, data_files=self.data_files, split=self.split, revision=self.revision)

    @cached_property
    def data(self):
        """The data, as ``datasets`` loads it."""
        from ..download.huggingface import _datasets_library

        datasets = _datasets_library()
        if self.local_path is not None:
            try:
                return datasets.load_from_disk(str(self.local_path))
            except Exception:
                return datasets.load_dataset(str(self.local_path))
        return datasets.load_dataset(
            self.source, self.name, data_files=self.data_files, split=self.split, revision=self.revision, streaming=self.streaming
        )
