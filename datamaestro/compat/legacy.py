"""Resources written for the original datamaestro, run through the store.

The classes ``datamaestro.download`` exports (:class:`Resource`,
:class:`FileResource`, :class:`FolderResource`, :class:`ValueResource`,
:class:`Download`) are the core resource classes plus the original API
(:class:`LegacyResourceMixin`): a subclass that implements ``download()``
or ``_download()`` instead of ``produce()`` is run by :func:`run_legacy`.

A resource of the original API writes its output where it is told
(``download(force)`` writes under ``self.definition.datapath``;
``_download(destination)`` writes at ``destination``) and reads its inputs
at their readable paths. :func:`run_legacy` gives it a fresh work folder in
the store's tmp area as its dataset folder, with links to the store paths
of its inputs inside, runs it, and stores what it wrote at its path: a file
becomes an object, a folder a tree. The work folder is removed afterwards,
so a failure leaves nothing behind.

Its ``context`` is a :class:`LegacyContext`: the session's
:class:`~datamaestro.context.Context` plus the original's helpers
(``downloadURL`` goes through the fetcher, hence through mirrors, retries
and the lock's pins).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from .. import resource as core
from ..resource import ResourceState  # noqa: F401 (the original exported it from datamaestro.download)
from ..errors import DatamaestroError, DefinitionError, DownloadError
from ..store import Output
from ..store.objects import remove_tree
from ..store.actions import Kind
from ..download.multiple import _Retired

if TYPE_CHECKING:
    from ..pipeline import Job

logger = logging.getLogger(__name__)

_state = threading.local()

#: attributes the pipeline or the base class set, which say nothing of the output
_NOT_PARAMETERS = {"definition", "attribute", "_dependencies", "_dependents", "_post", "transient", "varname", "_entry"}


def legacy_parameters(resource: "Resource") -> dict[str, Any]:
    """A JSON description of a legacy resource's attributes, for its recipe key.

    The original API has no recipe: what determines the output is the
    constructor's arguments, kept as attributes. Values are described as
    JSON (sets sorted, callables and classes by qualified name, resources
    by name); anything else by its type's name.
    """
    return {key: _describe(value) for key, value in sorted(vars(resource).items()) if key not in _NOT_PARAMETERS}


def _describe(value: Any, depth: int = 0) -> Any:
    from ..resource import Resource

    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Resource):
        return {"resource": value.name}
    if depth > 4:
        return type(value).__qualname__
    if isinstance(value, dict):
        return {str(k): _describe(v, depth + 1) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (set, frozenset)):
        return sorted((_describe(v, depth + 1) for v in value), key=repr)
    if isinstance(value, (list, tuple)):
        return [_describe(v, depth + 1) for v in value]
    qualname = getattr(value, "__qualname__", None)
    if qualname is not None:
        return f"{getattr(value, '__module__', '')}.{qualname}"
    pattern = getattr(value, "pattern", None)
    if isinstance(pattern, (str, bytes)):
        return f"re:{pattern!r}"
    return {"object": f"{type(value).__module__}.{type(value).__qualname__}", "state": _describe(getattr(value, "__dict__", {}), depth + 1)}


def run_legacy(resource: "Resource", job: "Job") -> Output:
    """Runs a resource of the original API in a work folder and stores its output.

    :raises DefinitionError: the resource wrote nothing where it should have
    :raises DownloadError: its code failed (the message names the exception)
    """
    definition = resource.definition
    work = job.tmp_path(".legacy")
    os.mkdir(work, 0o700)
    try:
        for dependency in resource.dependencies():
            output = job.input(dependency)
            if output.kind in ("file", "tree") and dependency.name:
                link = work / dependency.name
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(job.input_path(dependency))
        _state.job = job
        try:
            with definition.located_at(work):
                result = resource.download(force=False)
        except DatamaestroError:
            raise
        except Exception as exc:
            raise DownloadError(
                f"{type(resource).__name__}: {type(exc).__name__}: {exc}",
                hint="the plugin's code failed; run with --traceback for details",
            ) from exc
        finally:
            _state.job = None
        if result is False:
            raise DownloadError(f"{type(resource).__name__} reported a failure", hint="run with --debug for its messages")
        return _store_output(resource, job, work / resource.name)
    finally:
        remove_tree(work)


def _store_output(resource: "Resource", job: "Job", target: Path) -> Output:
    if target.is_symlink():
        # an input passed through, or a link to a folder the user provides: store what it points at
        target = target.resolve()
        if target.is_file():
            return Output(Kind.FILE, job.store.ingest_file(target))
        if target.is_dir():
            return Output(Kind.TREE, job.store.ingest_tree(target))
    elif target.is_file():
        return Output(Kind.FILE, job.store.ingest_file(target, move=True))
    elif target.is_dir():
        return Output(Kind.TREE, job.store.ingest_tree(target, move=True))
    if not resource.has_files():
        return Output(Kind.VALUE, value=None)
    raise DefinitionError(
        f"{type(resource).__name__} wrote nothing at {resource.name!r} in its dataset folder",
        hint="the plugin's resource does not follow the original API; report it to its authors",
    )


class CachedFile:
    """A downloaded file, removed when the ``with`` block ends (the original ``downloadURL`` result).

    :ivar path: where the bytes are
    """

    def __init__(self, path: Path):
        self.path = path
        self.keep = False

    def __enter__(self) -> "CachedFile":
        return self

    def __exit__(self, *exc_info) -> None:
        self.path.unlink(missing_ok=True)


class LegacyContext:
    """The context resources of the original API see: the current Context, plus its helpers.

    Unknown attributes are the Context's (``settings``, ``store``...).
    """

    def __init__(self, context, job: "Job | None" = None):
        self._context = context
        self._job = job

    @classmethod
    def current(cls) -> "LegacyContext":
        """The current context, with the job being run (if any)."""
        from .. import session

        return cls(session.current(), getattr(_state, "job", None))

    def __getattr__(self, name: str):
        return getattr(self._context, name)

    @property
    def datapath(self) -> Path:
        """``<data dir>/data``."""
        return self._context.data_dir / "data"

    @property
    def cachepath(self) -> Path:
        """``<data dir>/cache``."""
        return self._context.data_dir / "cache"

    @property
    def running_test(self) -> bool:
        """False: there is no test mode (tests use their own data dir)."""
        return False

    def preference(self, key: str, default: Any = None) -> Any:
        """A user preference: not supported (the original read them from a YAML file)."""
        return default

    @contextlib.contextmanager
    def downloadURL(self, url: str, size: int | None = None) -> Iterator[CachedFile]:
        """Downloads ``url`` into a tmp file of the store; yields a :class:`CachedFile`.

        The download goes through the fetcher: mirrors, retries, resume and
        the lock's pins apply. The file is removed when the block ends.
        """
        from ..download.checks import SizeCheck
        from ..download.single import FileSink

        store = self._context.store
        path = store.tmp_path(".download")
        checkers = [SizeCheck(size)] if size else []
        try:
            with path.open("wb") as fp:
                if self._job is not None:
                    self._job.download(url, FileSink(fp), checkers=checkers)
                else:
                    self._context.fetcher().fetch(url, FileSink(fp), checkers=checkers, description=url)
            with CachedFile(path) as cached:
                yield cached
        finally:
            path.unlink(missing_ok=True)


class LegacyResourceMixin:
    """The original datamaestro's resource API, on top of a core resource class.

    A subclass that implements ``download(force)`` or ``_download(path)``
    (and not ``produce``) is *legacy*: its recipe holds its attributes (the
    original API has no recipe) and :func:`run_legacy` produces it.
    """

    @classmethod
    def is_legacy(cls) -> bool:
        """True for a subclass written for the original API (it implements ``download`` or ``_download``)."""
        return cls.download is not LegacyResourceMixin.download or hasattr(cls, "_download")

    def recipe(self) -> dict[str, Any]:
        """The core recipe, plus the attributes of a legacy subclass."""
        recipe = super().recipe()
        if self.is_legacy():
            recipe["parameters"] = legacy_parameters(self)
        return recipe

    def produce(self, job: "Job") -> Output:
        """Runs a legacy subclass in a work folder (:func:`run_legacy`)."""
        if self.is_legacy():
            return run_legacy(self, job)
        return super().produce(job)

    def download(self, force: bool = False) -> None:
        """The original API's step: writes the output at :attr:`transient_path` (via ``_download``)."""
        download = getattr(self, "_download", None)
        if download is None:
            raise NotImplementedError(f"{type(self).__name__} implements neither produce() nor download()")
        download(self.transient_path)

    def value(self) -> Any:
        """What a decorator-style definition receives: the subclass's own ``prepare()``, else the core value."""
        if _overrides_prepare(type(self)):
            return self.prepare()
        return super().value()

    def prepare(self):
        """The value given to decorator-style definitions (the original API's name of ``value``)."""
        return super().value()

    # -- 1.16's dataset folder (a dataset object with its own ``datapath``, see :mod:`datamaestro.compat.folder`)
    def _folder_dataset(self):
        """The 1.16 dataset object this resource is bound to (None when bound to a definition, or unbound)."""
        from .generated import AbstractDataset

        definition = self.__dict__.get("definition")
        return definition if isinstance(definition, AbstractDataset) else None

    def bind(self, attribute: str, definition) -> None:
        """Attaches the resource to its dataset; to a 1.16 dataset object as 1.16 did.

        There, the resource takes the attribute's name (unless given a
        ``varname``) and is registered in ``dataset.resources`` and
        ``dataset.ordered_resources``; its file keeps its own name.

        :raises AssertionError: already bound, or the name is taken (1.16's errors)
        """
        from .generated import AbstractDataset

        if not isinstance(definition, AbstractDataset):
            return super().bind(attribute, definition)
        if self.__dict__.get("definition") is not None:
            raise AssertionError(f"Resource {self.name} is already bound to a dataset")
        derived = self.name.split("/")[-1].split(".")[0] if self.name else None
        key = self.varname if self.varname and self.varname != derived else attribute
        if key in definition.resources:
            raise AssertionError(f"Name {key} already declared as a resource")
        self._entry = self.name if self.name is not None else key
        self.attribute = attribute
        self.name = key
        self.varname = key
        self.definition = definition
        definition.resources[key] = self
        definition.ordered_resources.append(self)

    @property
    def filename(self) -> str | None:
        """The file's name in the dataset folder, extension included."""
        return self.__dict__.get("_entry", self.name)

    @property
    def path(self) -> Path:
        """The output's path: ``<datapath>/<file name>`` in a 1.16 dataset folder, else the readable path."""
        dataset = self._folder_dataset()
        if dataset is None:
            return super().path
        return Path(dataset.datapath) / self._entry

    @property
    def transient_path(self) -> Path:
        """Where a resource of the original API writes: ``<datapath>/.downloads/<file name>`` in a 1.16 dataset folder, else its path in the work folder the pipeline gives."""
        dataset = self._folder_dataset()
        if dataset is None:
            return self.path
        return Path(dataset.datapath) / ".downloads" / self._entry

    @property
    def state(self) -> ResourceState:
        """In a 1.16 dataset folder, its ``.state.json``; else the store's action records (see :class:`ResourceState`)."""
        dataset = self._folder_dataset()
        if dataset is None:
            return core.Resource.state.fget(self)
        from .folder import ResourceStateFile

        return ResourceStateFile(dataset.datapath).read(self.name)

    @state.setter
    def state(self, value: ResourceState) -> None:
        # only a 1.16 dataset folder records states itself; the store's action records are not written from here
        dataset = self._folder_dataset()
        if dataset is not None:
            from .folder import ResourceStateFile

            ResourceStateFile(dataset.datapath).write(self.name, value)

    @property
    def dependents(self) -> list:
        """The resources that use this one (set by the dataset once its resources are bound)."""
        return self.__dict__.get("_dependents", [])

    @property
    def can_recover(self) -> bool:
        """Whether a partial output can be resumed (kept after a failure); False by default."""
        return False

    def stream(self):
        """A byte stream of the output before it is complete; None (not supported) by default."""
        return None

    def files_present(self) -> bool:
        """Whether the output is in the dataset folder (a folder at the dataset's own path must hold data)."""
        dataset = self._folder_dataset()
        if dataset is None:
            return self.path.exists()
        from .folder import folder_has_data

        return folder_has_data(self.path, Path(dataset.datapath))

    def cleanup(self) -> None:
        """Removes the output and its transient data from a 1.16 dataset folder (state NONE).

        Nothing for a resource of a definition: the store's garbage
        collector removes outputs nothing uses.
        """
        dataset = self._folder_dataset()
        if dataset is None:
            return
        from .folder import delete_path

        for path in (self.path, self.transient_path):
            delete_path(path)
        self.state = ResourceState.NONE

    @property
    def context(self):
        """The original API's context: the dataset's in a 1.16 dataset folder, else settings, ``downloadURL``, ``datapath``."""
        dataset = self._folder_dataset()
        if dataset is not None:
            return dataset.context
        return LegacyContext.current()


def _overrides_prepare(cls: type) -> bool:
    """True when a class below the mixin defines its own ``prepare``."""
    for klass in cls.__mro__:
        if klass is LegacyResourceMixin:
            return False
        if "prepare" in vars(klass):
            return True
    return False


class Resource(LegacyResourceMixin, core.Resource):
    """A resource, with the original API (``datamaestro.download.Resource``)."""


class FileResource(LegacyResourceMixin, core.FileResource):
    """A resource whose output is one file, with the original API."""


class FolderResource(LegacyResourceMixin, core.FolderResource):
    """A resource whose output is a folder (a tree in the store), with the original API."""


class ValueResource(LegacyResourceMixin, core.ValueResource):
    """A resource that produces a JSON value and no file, with the original API.

    A subclass of the original API implements ``prepare()``, which gives the value.
    """


class Download(Resource):
    """The original datamaestro's older name of :class:`Resource`."""


class LocalResourceMixin:
    """Marks a resource of the original API as local (nothing remote to check)."""


# recipes, pickles and messages keep naming the 1.x module
from . import keep_public_module  # noqa: E402

keep_public_module(globals(), 'datamaestro.download')


class gsync(_Retired, Download):
    """The original's ``gsutil rsync`` resource (``datamaestro.download.sync.gsync``), retired: using it says what replaces it."""

    replacement = "a custom_download whose function runs `gsutil -m rsync gs://... <root>`"
