"""Resources: the nodes of a dataset's DAG and the one protocol they share.

A resource says what it needs (:meth:`Resource.dependencies`), what it does
(:meth:`Resource.recipe`, a JSON description whose blake3 is the action-cache
key) and how to do it (:meth:`Resource.produce`, which writes into the store
through the :class:`~datamaestro.pipeline.Job` it is given and returns an
:class:`~datamaestro.store.Output`). The pipeline does the rest: order,
caching, locking, views. A custom derivation only implements ``produce``
(or, simpler, subclasses :class:`datamaestro.download.custom.Derived`).

Resources written for the original datamaestro (in published plugins) run
too: a subclass that implements ``download(force)`` or ``_download(path)``
instead of ``produce`` writes under a work folder the pipeline gives it as
its dataset folder, and what it wrote is stored (see
:mod:`datamaestro.download.legacy`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import DefinitionError
from ..store.actions import Kind

if TYPE_CHECKING:
    from ..definitions import DatasetDefinition
    from ..pipeline import Job
    from ..store import Output


class Resource:
    """One step of a dataset: a download, an extraction, a derivation or a value.

    :param name: the entry's name in the dataset's folder (``train.csv``);
        also the variable name given to decorator-style definitions (without
        its extension)
    :param transient: an intermediate: dropped from the dataset's view once
        every resource that uses it is complete (and so collectable)
    :param varname: explicit variable name for decorator-style definitions
    """

    #: ``file``, ``tree`` or ``value``: what :meth:`produce` returns
    kind = Kind.FILE

    def __init__(self, name: str | None = None, *, transient: bool = False, varname: str | None = None):
        if name is not None and (not isinstance(name, str) or name.startswith("/") or ".." in name.split("/")):
            raise DefinitionError(f"resource name {name!r} must be a relative path inside the dataset folder")
        self.name = name
        self.varname = varname or (name.split("/")[-1].split(".")[0] if name else None)
        self.transient = transient
        self.definition: DatasetDefinition | None = None
        self.attribute: str | None = None
        #: inputs, for subclasses written for the original API (``self._dependencies.append(r)``)
        self._dependencies: list[Resource] = []
        self._post = False

    @classmethod
    def apply(cls, *args, **kwargs) -> "Resource":
        """Creates the resource (the original datamaestro's factory name).

        The result works as a class attribute and as a decorator over
        ``@dataset`` alike.
        """
        return cls(*args, **kwargs)

    def __call__(self, target):
        """Used as a decorator on a decorator-style definition: adds itself to it."""
        from ..definitions import resource_decorator

        return resource_decorator(self)(target)

    # -- binding, done by the dataset machinery
    def bind(self, attribute: str, definition: "DatasetDefinition") -> None:
        """Attaches the resource to its dataset, under a class attribute name."""
        self.attribute = attribute
        if self.name is None:
            self.name = attribute.lower()
        if self.varname is None:
            self.varname = attribute.lower()
        self.definition = definition

    # -- the protocol
    def dependencies(self) -> list["Resource"]:
        """The resources whose outputs this one needs (default: those in ``_dependencies``)."""
        return list(self._dependencies)

    def recipe(self) -> dict[str, Any]:
        """A JSON description of what this resource does, without its inputs.

        The pipeline adds the input digests and hashes the whole into the
        recipe key. Subclasses extend the dict with every parameter that
        changes the output (for a subclass of the original API, its
        attributes are taken).
        """
        cls = type(self)
        recipe = {"class": f"{cls.__module__}.{cls.__qualname__}"}
        if self.is_legacy():
            from .legacy import legacy_parameters

            recipe["parameters"] = legacy_parameters(self)
        return recipe

    def urls(self) -> list[str]:
        """The URLs :meth:`produce` would download (for offline reports)."""
        return []

    def produce(self, job: "Job") -> "Output":
        """Does the work and returns what was stored. Subclasses implement it.

        The default runs a subclass of the original API (``download`` /
        ``_download``) in a work folder and stores what it wrote.
        """
        if self.is_legacy():
            from .legacy import run_legacy

            return run_legacy(self, job)
        raise NotImplementedError(f"{type(self).__name__} does not implement produce()")

    # -- the original datamaestro's resource API, for the plugins written for it
    @classmethod
    def is_legacy(cls) -> bool:
        """True for a subclass written for the original API (it implements ``download`` or ``_download``)."""
        return cls.download is not Resource.download or hasattr(cls, "_download")

    def download(self, force: bool = False) -> None:
        """The original API's step: writes the output at :attr:`transient_path` (via ``_download``)."""
        download = getattr(self, "_download", None)
        if download is None:
            raise NotImplementedError(f"{type(self).__name__} implements neither produce() nor download()")
        download(self.transient_path)

    def prepare(self):
        """The value given to decorator-style definitions (the original API's name of :meth:`value`)."""
        return self.path

    @property
    def transient_path(self) -> Path:
        """Where a resource of the original API writes (inside the work folder the pipeline gives)."""
        return self.path

    @property
    def dataset(self) -> "DatasetDefinition | None":
        """The dataset the resource belongs to (the original API's name of :attr:`definition`)."""
        return self.definition

    @property
    def context(self):
        """The original API's context: settings, ``downloadURL``, ``datapath``."""
        from .legacy import LegacyContext

        return LegacyContext.current()

    def has_files(self) -> bool:
        """Whether the output is a file or a folder (not a value)."""
        return self.kind != Kind.VALUE

    def postinit(self) -> None:
        """The original API's lazy initialization hook (nothing to do here)."""

    # -- what definitions use
    @property
    def path(self) -> Path:
        """The readable path of this resource: ``<dataset folder>/<name>``."""
        if self.definition is None:
            raise DefinitionError(f"resource {self.name!r} is not attached to a dataset")
        return self.definition.datapath / self.name

    def value(self) -> Any:
        """What a decorator-style definition receives: the path (or the value)."""
        if self.is_legacy() and type(self).prepare is not Resource.prepare:
            return self.prepare()
        return self.path

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class FileResource(Resource):
    """A resource whose output is one file."""

    kind = Kind.FILE


class FolderResource(Resource):
    """A resource whose output is a folder (a tree in the store)."""

    kind = Kind.TREE


class ValueResource(Resource):
    """A resource that produces a JSON value and no file (kept out of views)."""

    kind = Kind.VALUE

    def value(self) -> Any:
        """The value (subclasses of the original API implement ``prepare()``)."""
        if type(self).prepare is not Resource.prepare:
            return self.prepare()
        raise NotImplementedError(f"{type(self).__name__} must implement value()")


class LocalResourceMixin:
    """Marks a resource of the original API as local (nothing remote to check)."""


class Download(Resource):
    """The original datamaestro's older name of :class:`Resource`."""


class FilesCopy(FolderResource):
    """A folder made of some files of another resource's folder (no byte is copied).

    Useful to keep a few files of a transient archive::

        ARCHIVE = ZipDownloader("data", url, transient=True)
        FILES = FilesCopy(ARCHIVE, {"queries.jsonl": "queries.jsonl", "test.tsv": "qrels/test.tsv"})

    :param source: the folder resource to take files from
    :param files: ``{path in the new folder: path in the source folder}``
    :param name: the folder's name (default: the attribute's name)
    """

    def __init__(self, source: Resource, files: dict[str, str], name: str | None = None, *, transient: bool = False):
        super().__init__(name, transient=transient)
        if not isinstance(source, Resource):
            raise DefinitionError(f"FilesCopy: {source!r} is not a resource")
        self.source = source
        self.files = dict(files)
        self._dependencies.append(source)

    def recipe(self) -> dict[str, Any]:
        """The file mapping."""
        return {**super().recipe(), "files": dict(sorted(self.files.items()))}

    def produce(self, job: "Job") -> "Output":
        """A tree whose entries are the source's objects, under their new paths."""
        from ..errors import ArchiveError
        from ..store import Output

        source = job.input(self.source)
        if source.kind != Kind.TREE:
            raise DefinitionError(f"FilesCopy {self.name}: {self.source.name} is not a folder")
        entries = {entry["path"]: entry for entry in job.store.trees.read(source.digest)["entries"]}
        selected = []
        for target, origin in sorted(self.files.items()):
            entry = entries.get(origin.strip("/"))
            if entry is None or entry.get("kind") != "file":
                raise ArchiveError(
                    f"{self.source.name} has no file {origin!r} (wanted by {self.name}/{target})",
                    hint="check the file paths of the definition",
                )
            selected.append({**entry, "path": target.strip("/")})
        return Output(Kind.TREE, job.store.trees.store_entries(selected))


def __getattr__(name: str):
    # ``from datamaestro.download import reference`` (the original's import path),
    # resolved lazily: links imports this module
    if name == "reference":
        from .links import reference

        return reference
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
