"""Datasets of the Hugging Face Hub: :class:`HFDownloader` (``hf_download``).

The Hub's data is managed by the ``datasets`` library (its own cache,
Arrow shards): datamaestro does not copy it into the store. The resource's
value is the description :class:`~datamaestro.data.huggingface.HuggingFaceDataset`
is built from; preparing runs ``datasets``' download. The ``datasets``
library is needed only then (``pip install datasets``)::

    @hf_download("dataset", "sentence-transformers/msmarco-hard-negatives", split="train")
    @dataset(HuggingFacePairwiseSampleDataset)
    def ensemble(dataset):
        return dataset
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import DatamaestroError
from ..store import Output
from ..resource import ValueResource
from ..store.actions import Kind

if TYPE_CHECKING:
    from ..pipeline import Job


def _datasets_library():
    try:
        import datasets
    except ModuleNotFoundError:
        raise DatamaestroError(
            "this dataset is loaded with the Hugging Face `datasets` library, which is not installed",
            hint="pip install datasets",
        ) from None
    return datasets


def hf_download_and_prepare(source: str, name: str | None = None, *, data_files=None, split: str | None = None, revision: str | None = None):
    """Downloads a Hub dataset into the ``datasets`` cache (only ``split`` when given); returns its builder."""
    datasets = _datasets_library()
    builder = datasets.load_dataset_builder(source, name, data_files=data_files, revision=revision)
    builder.download_and_prepare()
    return builder


class HFDownloader(ValueResource):
    """A dataset of the Hugging Face Hub (kept in the ``datasets`` cache, not in the store).

    :param varname: the variable name
    :param repo_id: the Hub repository (``user/dataset``)
    :param name: the dataset's configuration name
    :param data_files: the files to load
    :param split: the split to load
    :param revision: a commit, branch or tag
    :param streaming: stream the data (nothing is downloaded on prepare)
    :param local_path: a local copy to load instead of the Hub
    """

    volatile = True

    def __init__(
        self,
        varname: str,
        repo_id: str,
        *,
        name: str | None = None,
        data_files: str | None = None,
        split: str | None = None,
        revision: str | None = None,
        streaming: bool = False,
        local_path: Path | str | None = None,
        transient: bool = False,
    ):
        super().__init__(varname, transient=transient, varname=varname)
        self.repo_id = repo_id
        self.config_name = name
        self.data_files = data_files
        self.split = split
        self.revision = revision
        self.streaming = streaming
        self.local_path = Path(local_path) if local_path is not None else None

    def recipe(self) -> dict[str, Any]:
        """What selects the data."""
        return {**super().recipe(), **{k: v for k, v in self.value().items() if k not in ("streaming", "local_path")}}

    def produce(self, job: "Job") -> Output:
        """Lets ``datasets`` download the data (nothing for streaming or a local copy)."""
        if not self.streaming and self.local_path is None:
            hf_download_and_prepare(self.repo_id, self.config_name, data_files=self.data_files, split=self.split, revision=self.revision)
        return Output(Kind.VALUE, value=None)

    def value(self) -> dict[str, Any]:
        """The fields of a :class:`~datamaestro.data.huggingface.HuggingFaceDataset`."""
        return {
            "repo_id": self.repo_id,
            "name": self.config_name,
            "data_files": self.data_files,
            "split": self.split,
            "revision": self.revision,
            "streaming": self.streaming,
            "local_path": self.local_path,
        }

    prepare = value


hf_download = HFDownloader.apply
