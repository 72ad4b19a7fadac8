"""The resource protocol: the nodes of a dataset's DAG and the one interface they share.

A resource says what it needs (:meth:`Resource.dependencies`), what it does
(:meth:`Resource.recipe`, a JSON description whose blake3 is the action-cache
key) and how to do it (:meth:`Resource.produce`, which writes into the store
through the :class:`Job` it is given (the pipeline's, which implements this
protocol) and returns an
:class:`~datamaestro.store.Output`). The pipeline does the rest: order,
caching, locking, views. A custom derivation only implements ``produce``
(or, simpler, subclasses :class:`datamaestro.download.custom.Derived`).

Resources written for the original datamaestro (``download()`` /
``_download()`` instead of ``produce``) subclass the classes that
``datamaestro.download`` exports, which add that API on top of these (see
:mod:`datamaestro.compat.legacy`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Protocol

from .errors import DefinitionError
from .lazy import _warned, warn_once  # noqa: F401 (_warned: the warned-once set, which tests reset here)
from .store.actions import Kind

if TYPE_CHECKING:
    from .fetch import FetchResult
    from .settings import Settings
    from .store import Output, Store


class OwningDataset(Protocol):
    """The dataset a resource belongs to, as a resource sees it (:class:`datamaestro.definition.DatasetDefinition`).

    A protocol rather than an import: definitions are built from resources,
    so this module sits below them and never imports them.
    """

    datapath: Path

    def add_resource(self, attribute: str, resource: "Resource") -> None:
        """Binds ``resource`` to the dataset under ``attribute``."""


class Job(Protocol):
    """What :meth:`Resource.produce` is given: all a resource may use (the pipeline makes it, :class:`datamaestro.pipeline.Job`).

    A resource calls these and nothing else of the pipeline or the session:
    the corridor runs down, never back up.

    :ivar store: the :class:`~datamaestro.store.Store` it writes into
    :ivar settings: the session's settings (limits, the data dir)
    :ivar definition: the dataset being prepared
    :ivar resource: the resource being produced
    :ivar expected: the output a lock pins, or None
    :ivar context: the session's context, for plugin code only (a 1.x resource, a custom download)
    """

    store: "Store"
    settings: "Settings"
    definition: Any
    resource: "Resource"
    expected: "Output | None"
    context: Any

    @property
    def description(self) -> str:
        """``<dataset id>/<resource name>``, for messages and progress bars."""

    def input(self, resource: "Resource") -> "Output":
        """The output of an input resource (present in the store)."""

    def input_path(self, resource: "Resource") -> Path:
        """The store path of an input: a file object or a tree folder."""

    def download(self, url: str, sink, *, checkers: Iterable = (), description: str | None = None) -> "FetchResult":
        """Streams ``url`` into ``sink`` through the session's transport (mirrors, retries, resume, the lock's pin checked)."""

    def tmp_path(self, hint: str = "") -> Path:
        """A unique path in the store's tmp folder (same file system as objects)."""

    def prepare_dataset(self, definition: Any) -> Any:
        """Prepares another dataset (a reference's), shown as soon as it is complete; its pipeline result."""


class ResourceState(str, Enum):
    """The state of a resource in the store (the original API's ``ResourceState``), see :attr:`Resource.state`.

    COMPLETE: its output is in the store (as the lock in scope pins it, or
    as last produced); PARTIAL: produced once, its output has gone
    (collected), so it is produced again; NONE: never produced on this
    store. There is no state file: the store's action records say it.
    """

    NONE = "none"
    PARTIAL = "partial"
    COMPLETE = "complete"


class CheckStatus(str, Enum):
    """What a resource's ``check()`` found (the original API)."""

    OK = "ok"
    FAILED = "failed"
    #: nothing remote to check (a resource made from local data)
    SKIPPED = "skipped"
    ERROR = "error"


@dataclass
class ResourceCheckResult:
    """The answer of a resource's ``check()``: is its source reachable (the original API)."""

    resource: str | None
    status: CheckStatus
    message: str = ""
    url: str | None = None


class DependencyList(list):
    """The inputs of a resource: a list, which may also be called (``resource.dependencies()``).

    The original datamaestro exposed ``dependencies`` as a property (a
    list); here it is a method. Both spellings work on the resources that
    do not override it.
    """

    def __call__(self) -> list["Resource"]:
        return list(self)


class _Dependencies:
    """The ``dependencies`` attribute of :class:`Resource` (see :class:`DependencyList`)."""

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        return DependencyList(obj._dependencies)


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
        self.definition: OwningDataset | None = None
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
        definition = getattr(target, "__dataset__", None)
        if callable(getattr(target, "attach_resource", None)):
            # a dataset object of the original API (the resource decorates it directly)
            self.bind(self.varname, target)
        elif getattr(definition, "target", None) is target:
            # above @dataset: the definition exists
            definition.add_resource(self.varname, self)
        else:
            # below @dataset: kept until @dataset runs
            target.__datamaestro_pending__ = getattr(target, "__datamaestro_pending__", []) + [self]
        return target

    # -- binding, done by the dataset machinery
    def bind(self, attribute: str, definition: "OwningDataset") -> None:
        """Attaches the resource to its dataset, under a class attribute name."""
        self.attribute = attribute
        if self.name is None:
            self.name = attribute.lower()
        if self.varname is None:
            self.varname = attribute.lower()
        self.definition = definition
        # a dataset object of the original API lists the resources bound to it
        attach = getattr(definition, "attach_resource", None)
        if attach is not None:
            attach(self)

    #: the resources whose outputs this one needs (default: those in ``_dependencies``); subclasses override it with a method
    dependencies = _Dependencies()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        declared = vars(cls).get("dependencies")
        if isinstance(declared, property):
            # written for the original API, where it was a property: keep it callable too
            getter = declared.fget
            cls.dependencies = property(lambda self: DependencyList(getter(self)))

    # -- the protocol

    def recipe(self) -> dict[str, Any]:
        """A JSON description of what this resource does, without its inputs.

        The pipeline adds the input digests and hashes the whole into the
        recipe key. Subclasses extend the dict with every parameter that
        changes the output (for a subclass of the original API, its
        attributes are taken).
        """
        cls = type(self)
        return {"class": f"{cls.__module__}.{cls.__qualname__}"}

    def urls(self) -> list[str]:
        """The URLs :meth:`produce` would download (for offline reports)."""
        return []

    def produce(self, job: "Job") -> "Output":
        """Does the work and returns what was stored. Subclasses implement it."""
        raise NotImplementedError(f"{type(self).__name__} does not implement produce()")

    # -- names of the original API that keep their meaning
    def prepare(self):
        """The value given to decorator-style definitions (the original API's name of :meth:`value`)."""
        return self.value()

    @property
    def dataset(self) -> "OwningDataset | None":
        """The dataset the resource belongs to (the original API's name of :attr:`definition`)."""
        return self.definition

    def has_files(self) -> bool:
        """Whether the output is a file or a folder (not a value)."""
        return self.kind != Kind.VALUE

    @property
    def state(self) -> ResourceState:
        """NONE, PARTIAL or COMPLETE, read from the store of the session in scope (no network, no rehash)."""
        from . import session

        return ResourceState(session.current().resource_state(self))

    @state.setter
    def state(self, value: ResourceState) -> None:
        # the original's resources set their state; here the store's action records say it
        pass

    def hasfiles(self) -> bool:
        """Deprecated name of :meth:`has_files`."""
        warn_once("Resource.hasfiles", "hasfiles() is deprecated, use has_files()")
        return self.has_files()

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
        return self.path

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class FileResource(Resource):
    """A resource whose output is one file."""

    kind = Kind.FILE

    @property
    def filename(self) -> str | None:
        """The file's name in the dataset folder, extension included (the original API's name; :attr:`name` here)."""
        return self.name


class FolderResource(Resource):
    """A resource whose output is a folder (a tree in the store)."""

    kind = Kind.TREE


class ValueResource(Resource):
    """A resource that produces a JSON value and no file (kept out of views)."""

    kind = Kind.VALUE

    def value(self) -> Any:
        """The value. Subclasses implement it."""
        raise NotImplementedError(f"{type(self).__name__} must implement value()")
