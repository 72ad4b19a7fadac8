"""Several downloads gathered in one folder: :class:`MultipleDownloader`."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Mapping

from ..errors import DefinitionError
from ..lazy import lazy_getattr
from ..store import Output
from ..store.layout import remove_tree
from ..resource import FolderResource
from .single import FileSink, TransformingSink, _checkers, _transforms
from ..store.actions import Kind

if TYPE_CHECKING:
    from ..resource import Job


class MultipleDownloader(FolderResource):
    """Downloads several files into one folder, stored as one tree.

    Each file is decompressed on the fly according to its URL (``.gz``,
    ``.bz2``, ``.xz``), as :class:`~datamaestro.download.single.FileDownloader`
    does; compressed tar archives are kept as they are.

    :param name: the folder's name in the dataset folder
    :param files: ``{path in the folder: URL}``; paths may contain folders
        (``"qrels/test.tsv"``)
    :param checkers: ``{path in the folder: checker or list of checkers}``,
        applied to the downloaded bytes of that file
    :param transient: an intermediate, dropped once its dependents are complete
    :param varname: explicit variable name for decorator-style definitions

    Example::

        @dataset(url="https://example.org/qa")
        class QA(Dataset):
            SPLITS = MultipleDownloader("splits", {
                "train.jsonl": "https://example.org/qa/train.jsonl.gz",
                "dev.jsonl": "https://example.org/qa/dev.jsonl.gz",
            }, checkers={"train.jsonl": Md5Check("...")})

            def config(self) -> Folder:
                return Folder.C(path=self.SPLITS.path)
    """

    def __init__(self, name: str, files: Mapping[str, str], *, checkers: Mapping | None = None, transient: bool = False, varname: str | None = None):
        super().__init__(name, transient=transient, varname=varname)
        if not isinstance(files, Mapping) or not files:
            raise DefinitionError(f"{name}: files must be a non-empty dict {{path: URL}}")
        self.files: dict[str, str] = {}
        for path, url in files.items():
            parts = path.split("/") if isinstance(path, str) else [""]
            if path.startswith("/") or any(part in ("", ".", "..") for part in parts):
                raise DefinitionError(f"{name}: {path!r} must be a relative path inside the folder (no '.', '..' or empty parts)")
            if not isinstance(url, str) or "://" not in url:
                raise DefinitionError(f"{name}: {url!r} (for {path}) is not a URL")
            self.files[path] = url
        for path in self.files:
            if any(other.startswith(path + "/") for other in self.files):
                raise DefinitionError(f"{name}: {path!r} is both a file and the folder of another file")
        unknown = set(checkers or ()) - set(self.files)
        if unknown:
            raise DefinitionError(f"{name}: checkers name files that are not downloaded: {sorted(unknown)}")
        self.transforms = {path: _transforms(None, url) for path, url in self.files.items()}
        self.checkers = {path: _checkers((checkers or {}).get(path), None) for path in self.files}

    def recipe(self) -> dict:
        """Every file's URL, transforms and checks."""
        from .transforms import recipe_of

        return {
            **super().recipe(),
            "files": {
                path: {"url": url, "transforms": recipe_of(self.transforms[path]), "checks": [c.recipe() for c in self.checkers[path]]}
                for path, url in sorted(self.files.items())
            },
        }

    def urls(self) -> list[str]:
        """Every URL, in path order."""
        return [url for _, url in sorted(self.files.items())]

    def produce(self, job: "Job") -> Output:
        """Downloads every file into a tmp folder of the store, then stores the folder."""
        folder = job.tmp_path(".multiple")
        size = 0
        try:
            os.mkdir(folder, 0o700)
            for path, url in sorted(self.files.items()):
                target = folder / path
                target.parent.mkdir(parents=True, exist_ok=True)
                with target.open("wb") as fp:
                    sink = TransformingSink(FileSink(fp), self.transforms[path])
                    result = job.download(url, sink, checkers=self.checkers[path], description=f"{job.description}/{path}")
                    sink.finish()
                size += result.size
            digest = job.store.ingest_tree(folder, move=True)
        finally:
            remove_tree(folder)
        return Output(Kind.TREE, digest, size=size)


multipledownloader = MultipleDownloader.apply


class _Retired:
    """A resource class of the original datamaestro that no longer exists: importable, it says what replaces it when used."""

    replacement = ""

    def __init__(self, *args, **kwargs):
        raise DefinitionError(f"{type(self).__name__} (datamaestro 1) is not supported", hint=f"use {self.replacement}")


class List(_Retired):
    """The original's list of downloads (its constructor did not work in datamaestro 1.16 either)."""

    replacement = "MultipleDownloader(name, {path: url, ...})"


class Datasets(_Retired):
    """The original's links to other datasets' folders."""

    replacement = "datamaestro.download.links.links(name, key=OtherDataset, ...)"


#: the retired classes, under their public names, whose first use warns
_retired = {"List": List, "Datasets": Datasets}
_List, _Datasets = List, Datasets
del List, Datasets
__getattr__ = lazy_getattr(
    __name__,
    {name: f"{__name__}:_{name}" for name in _retired},
    deprecated={name: f"datamaestro.download.multiple.{name} is deprecated: use {retired.replacement}" for name, retired in _retired.items()},
)
