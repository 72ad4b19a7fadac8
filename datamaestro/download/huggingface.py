"""Datasets and files of the Hugging Face Hub: :class:`HFDownloader` (``hf_download``) and :class:`HFSnapshotDownloader`.

:class:`HFDownloader`'s data is managed by the ``datasets`` library (its own
cache, Arrow shards): datamaestro does not copy it into the store. The
resource's value is the description
:class:`~datamaestro.data.huggingface.HuggingFaceDataset` is built from;
preparing runs ``datasets``' download, of the requested split only when
one is given. :class:`HFSnapshotDownloader` fetches raw files of a
repository (``huggingface_hub.snapshot_download``) into the store.

Before the Hub, the ``hf_resolver`` helpers are asked for a local copy
(:mod:`datamaestro.helpers`: ``DATAMAESTRO_HF_DATASETS_CACHE``,
``DATAMAESTRO_HF_MODELS_CACHE``, or a plugin). The libraries are needed
only when something is fetched (``pip install datasets huggingface_hub``)::

    @hf_download("dataset", "sentence-transformers/msmarco-hard-negatives", split="train")
    @dataset(HuggingFacePairwiseSampleDataset)
    def ensemble(dataset):
        return dataset
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import DatamaestroError, DownloadError
from ..hf_datasets import _datasets_library, hf_builder, hf_download_and_prepare  # noqa: F401 (hf_builder: part of this module's API)
from ..hf_resolvers import resolve_hf
from ..resource import CheckStatus, FolderResource, ResourceCheckResult, ValueResource
from ..store import Output
from ..store.actions import Kind

if TYPE_CHECKING:
    from ..resource import Job

logger = logging.getLogger(__name__)

def hub_endpoint() -> str:
    """The Hub's address (``$HF_ENDPOINT``, as ``huggingface_hub`` reads it, else huggingface.co)."""
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def _head(url: str, resource: str | None) -> ResourceCheckResult:
    """A HEAD request answered as a :class:`ResourceCheckResult`."""
    import requests

    try:
        response = requests.head(url, allow_redirects=True, timeout=30)
    except requests.RequestException as exc:
        return ResourceCheckResult(resource, CheckStatus.ERROR, str(exc), url)
    status = CheckStatus.OK if response.status_code < 400 else CheckStatus.FAILED
    return ResourceCheckResult(resource, status, f"HTTP {response.status_code}", url)


class HFDownloader(ValueResource):
    """A dataset of the Hugging Face Hub (kept in the ``datasets`` cache, not in the store).

    :param varname: the variable name
    :param repo_id: the Hub repository (``user/dataset``)
    :param name: the dataset's configuration name
    :param data_files: the files to load
    :param split: the split to load (only this one is prepared)
    :param revision: a commit, branch or tag
    :param streaming: stream the data (nothing is downloaded on prepare)
    :param local_path: a local copy to load instead of the Hub (a
        ``hf_resolver`` may give one too)
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
        #: the Hub's ``name`` (``Resource.name`` is the resource's)
        self.config_name = name
        self.data_files = data_files
        self.split = split
        self.revision = revision
        self.streaming = streaming
        self.local_path = Path(local_path) if local_path is not None else None

    def resolved_local_path(self) -> Path | None:
        """``local_path``, else the local copy a ``hf_resolver`` finds, else None (the Hub)."""
        if self.local_path is not None:
            return self.local_path
        return resolve_hf("dataset", self.repo_id, self.config_name, self.data_files)

    def recipe(self) -> dict[str, Any]:
        """What selects the data (not how it is loaded)."""
        return {**super().recipe(), **{k: v for k, v in self.value().items() if k not in ("streaming", "local_path")}}

    def produce(self, job: "Job") -> Output:
        """Lets ``datasets`` download the data (nothing when streaming or for a local copy)."""
        self.download()
        return Output(Kind.VALUE, value=None)

    def download(self, force: bool = False) -> bool:
        """Writes the data into the ``datasets`` cache, unless streaming or a local copy serves (the original API); True."""
        if self.local_path is None:
            # a local copy a hf_resolver found: kept, as the original did
            self.local_path = self.resolved_local_path()
        if self.local_path is None and not self.streaming:
            hf_download_and_prepare(self.repo_id, self.config_name, data_files=self.data_files, split=self.split, revision=self.revision)
        return True

    def value(self) -> dict[str, Any]:
        """The fields of a :class:`~datamaestro.data.huggingface.HuggingFaceDataset` (``local_path`` a ``str``, or None)."""
        local_path = self.resolved_local_path()
        return {
            "repo_id": self.repo_id,
            "name": self.config_name,
            "data_files": self.data_files,
            "split": self.split,
            "revision": self.revision,
            "streaming": self.streaming,
            "local_path": str(local_path) if local_path is not None else None,
        }

    prepare = value

    def check(self) -> ResourceCheckResult:
        """Whether the local copy exists, or the Hub answers for the repository (the original API)."""
        local_path = self.resolved_local_path()
        if local_path is not None:
            exists = local_path.exists()
            message = "local mirror present" if exists else f"local mirror missing: {local_path}"
            return ResourceCheckResult(self.name, CheckStatus.OK if exists else CheckStatus.FAILED, message, str(local_path))
        return _head(f"{hub_endpoint()}/api/datasets/{self.repo_id}", self.name)


hf_download = HFDownloader.apply


class HFSnapshotDownloader(FolderResource):
    """Raw files of a Hub repository (``huggingface_hub.snapshot_download``), stored as a folder.

    For repositories the ``datasets`` library cannot read (shards, model
    checkpoints). When a ``hf_resolver`` finds a local copy of the
    repository, its :attr:`path` is that copy, and nothing is fetched nor
    copied.

    :param varname: the folder's name in the dataset folder
    :param repo_id: the Hub repository
    :param repo_type: ``dataset``, ``model`` or ``space``
    :param allow_patterns: the files to fetch (glob patterns)
    :param ignore_patterns: files not to fetch
    :param revision: a commit, branch or tag

    Example::

        SHARDS = HFSnapshotDownloader("shards", repo_id="org/repo", allow_patterns=["folder/*.jsonl.tar.gz"])
    """

    def __init__(
        self,
        varname: str,
        repo_id: str,
        *,
        repo_type: str = "dataset",
        allow_patterns: list[str] | None = None,
        ignore_patterns: list[str] | None = None,
        revision: str | None = None,
        transient: bool = False,
    ):
        super().__init__(varname, transient=transient, varname=varname)
        self.repo_id = repo_id
        self.repo_type = repo_type
        self.allow_patterns = allow_patterns
        self.ignore_patterns = ignore_patterns
        self.revision = revision

    def resolved_path(self) -> Path | None:
        """The local copy a ``hf_resolver`` finds, or None."""
        return resolve_hf("model", self.repo_id, self.revision)

    @property
    def path(self) -> Path:
        """The local copy a ``hf_resolver`` finds, else the folder in the dataset."""
        resolved = self.resolved_path()
        return resolved if resolved is not None else super().path

    def recipe(self) -> dict[str, Any]:
        """The repository, its type, the patterns and the revision."""
        return {
            **super().recipe(),
            "repo_id": self.repo_id,
            "repo_type": self.repo_type,
            "allow_patterns": self.allow_patterns,
            "ignore_patterns": self.ignore_patterns,
            "revision": self.revision,
        }

    def urls(self) -> list[str]:
        """The repository's page on the Hub."""
        return [f"{hub_endpoint()}/{self.repo_type}s/{self.repo_id}"]

    def produce(self, job: "Job") -> Output:
        """Fetches the files into the store's tmp folder, then stores them as a tree (an empty one when a local copy serves)."""
        from ..store.layout import remove_tree

        work = job.tmp_path(".hf")
        work.mkdir()
        try:
            self._download(work)
            return Output(Kind.TREE, job.store.ingest_tree(work, move=True))
        finally:
            # empty folders after the move, or a failed fetch
            if os.path.lexists(work):
                remove_tree(work)

    def _download(self, folder: Path) -> None:
        """``snapshot_download`` into ``folder``, without its bookkeeping (``.cache``); nothing when a local copy serves."""
        if self.resolved_path() is not None:
            logger.info("%s: served by a local copy, nothing fetched", self.repo_id)
            return
        folder.mkdir(parents=True, exist_ok=True)
        try:
            from huggingface_hub import snapshot_download
        except ModuleNotFoundError:
            raise DatamaestroError("this dataset is fetched with the `huggingface_hub` library, which is not installed", hint="pip install huggingface_hub") from None
        try:
            snapshot_download(
                repo_id=self.repo_id,
                repo_type=self.repo_type,
                allow_patterns=self.allow_patterns,
                ignore_patterns=self.ignore_patterns,
                revision=self.revision,
                local_dir=str(folder),
            )
        except Exception as exc:
            raise DownloadError(f"{self.repo_id}: {type(exc).__name__}: {exc}", hint="check the repository name and your Hub token (HF_TOKEN)") from exc
        cache = folder / ".cache"
        if cache.is_dir():
            from ..store.layout import remove_tree

            remove_tree(cache)

    def check(self) -> ResourceCheckResult:
        """Whether the Hub answers for the repository (the original API)."""
        return _head(f"{hub_endpoint()}/api/{self.repo_type}s/{self.repo_id}", self.name)
