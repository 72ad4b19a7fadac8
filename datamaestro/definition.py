"""A dataset definition: the ``@dataset`` decorator, what it builds, and where its data lives.

Two styles are accepted. The class style (preferred)::

    @dataset(url="http://yann.lecun.com/exdb/mnist/", tags=["images"])
    class MNIST(Dataset):
        \"\"\"The MNIST database

        Handwritten digits (description: the rest of the docstring).\"\"\"

        TRAIN_IMAGES = FileDownloader("train_images.idx", "http://.../train-images-idx3-ubyte.gz")

        def config(self) -> IDX:
            return IDX.C(path=self.TRAIN_IMAGES.path)

and the older decorator style of the published plugins, where resource
decorators stack over ``@dataset`` on a function that receives the resources'
paths as arguments (named after the file name without extension)::

    @filedownloader("train_images.idx", "http://.../train-images-idx3-ubyte.gz")
    @dataset(ImageClassification, url="http://yann.lecun.com/exdb/mnist/")
    def MNIST(train_images):
        return {"train": ...}

The dataset id comes from the module path below the repository's ``config``
package plus the lower-cased name (``<pkg>.config.com.lecun`` + ``MNIST`` ->
``com.lecun.mnist``), unless ``id=`` says otherwise.
"""

from __future__ import annotations

import inspect
import typing
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from . import session
from .errors import DefinitionError
from .ids import dataset_id
from .resource import Resource

if TYPE_CHECKING:
    from .lock.model import LockedDataset


#: the repository folder of the readable folders of definitions in no repository (a class prepared by the code defining it)
NO_REPOSITORY = "__custom__"


def readable_path(data_dir: Path, repository_id: str, dataset_id: str) -> Path:
    """A dataset's readable folder: ``<data dir>/data/<repository>/<id as path>``."""
    return data_dir / "data" / repository_id / Path(*dataset_id.split("."))


@dataclass(frozen=True)
class Location:
    """Where a dataset's files are read (what :meth:`Context.locate` answers).

    :ivar readable: the readable folder, ``<data dir>/data/<repository>/<id as path>``
    :ivar pinned_view: the immutable view of the manifest a lock in scope
        pins, which configs point at instead (None without a pin)
    """

    readable: Path
    pinned_view: Path | None = None

    @property
    def path(self) -> Path:
        """The folder configs point at: the pinned view, else the readable folder."""
        return self.pinned_view if self.pinned_view is not None else self.readable


@dataclass(frozen=True)
class Request:
    """One resolved request for a dataset, built once by :meth:`Context.request <datamaestro.context.Context.request>`: what a prepare starts from.

    Nothing downstream derives any of these again (the pipeline, the
    config, the warm record all read them from here).

    :ivar definition: the dataset's definition
    :ivar variant: a family's axis values, defaults filled in (empty without variants)
    :ivar entry_id: the id a project's lock knows it by: the canonical id,
        plus a family's canonical selector (``org.family[a=1,b=2]``)
    :ivar locked: the lock entry that pins it (the variant's own entry, else
        the family's), checked against the definition; None when no lock pins it
    :ivar location: its readable folder, and the view the entry pins
    """

    definition: "DatasetDefinition"
    variant: Mapping[str, Any]
    entry_id: str
    locked: "LockedDataset | None"
    location: "Location"

    @property
    def pins(self) -> dict:
        """The expected outputs by resource name (empty when no lock pins it)."""
        return dict(self.locked.pins()) if self.locked is not None else {}

    def config(self):
        """The dataset's config, its paths at :attr:`location` (downloads nothing)."""
        return self.definition.config(location=self.location, **self.variant)


#: the folder a definition's resources resolve to while its config is built
#: (or while a 1.x resource runs in its work folder): ``{id(definition): folder}``
_located: ContextVar[dict[int, Path]] = ContextVar("datamaestro_located", default={})


def _split_doc(doc: str | None) -> tuple[str, str]:
    text = inspect.cleandoc(doc or "")
    first, _, rest = text.partition("\n")
    return first.strip(), rest.strip()


def _tags_of(obj) -> list[str]:
    return list(getattr(obj, "__datamaestro_tags__", []))


def _tasks_of(obj) -> list[str]:
    return list(getattr(obj, "__datamaestro_tasks__", []))


class DatasetDefinition:
    """Everything known about one dataset: id, metadata, resources, config builder.

    Built by :func:`dataset`; reached through ``target.__dataset__`` or
    :meth:`datamaestro.context.Context.dataset`.
    """

    def __init__(
        self,
        target: Any,
        *,
        base: type | None = None,
        id: str | None = None,
        url: str | None = None,
        tags: list[str] | None = None,
        tasks: list[str] | None = None,
        aliases: list[str] | None = None,
        licence: str | None = None,
        doi: str | None = None,
        timestamp: str | None = None,
        size: str | None = None,
        variants: Any = None,
        as_prepare: bool = False,
        module: str | None = None,
        qualname: str | None = None,
    ):
        self.target = target
        self.base = _template_base(base)
        self.template = base if self.base is not base else None
        self.variants = _normalize_variants(variants)
        self.as_prepare = as_prepare
        #: hooks of the original API (``useragreement`` registers "pre-use")
        self.hooks: dict[str, list[Callable]] = {"pre-use": [], "pre-download": []}
        #: where the definition is declared (default: the target's module and name)
        self.module = module if module is not None else target.__module__
        self.qualname = qualname if qualname is not None else target.__qualname__
        self._explicit_id = id
        self.url = url
        self._tags = list(tags or [])
        self._tasks = list(tasks or [])
        self.aliases = list(aliases or [])
        self.licence = licence
        self.doi = doi
        self.timestamp = timestamp
        self.size = size
        self.name, self.description = _split_doc(target.__doc__)
        self.resources: dict[str, Resource] = {}
        self.agreements: list[tuple[str, str]] = []
        #: ``check(definition, context)`` run before anything of the dataset is produced (may raise)
        self.production_checks: list[Callable] = []
        #: the configs :meth:`prepare` returned, by (folder, variant): the original API hands back the same object
        self._prepared_configs: dict[tuple, Any] = {}
        self.id = self._compute_id()

    # -- identity
    def _compute_id(self) -> str:
        """The id, by the original datamaestro's rules (see :func:`datamaestro.ids.dataset_id`)."""
        return dataset_id(self.module, self.qualname, self._explicit_id)

    @property
    def repository(self) -> Any:
        """The repository whose config package holds this definition, in the session in scope."""
        return self.repository_in(session.current().registry)

    @repository.setter
    def repository(self, repository: Any) -> None:
        # the original API let code (tests, in-memory repositories) say which repository holds a definition
        self.__dict__["_repository"] = repository

    def repository_in(self, registry) -> Any:
        """The repository of this definition among a registry's (None outside one); the one set on it, if any."""
        repository = self.__dict__.get("_repository")
        if repository is not None:
            return repository
        return registry.repository_for_module(self.module)

    def readable_folder(self, data_dir: Path, registry) -> Path:
        """This definition's readable folder under a data dir; a definition in no repository goes under :data:`NO_REPOSITORY`."""
        repository = self.repository_in(registry)
        return readable_path(data_dir, repository.id if repository is not None else NO_REPOSITORY, self.id)

    @property
    def data_id(self) -> str:
        """The id given to the config: ``<id>@<repository>`` as the original datamaestro does."""
        repository = self.repository
        return f"{self.id}@{repository.id}" if repository is not None else self.id

    @property
    def datapath(self) -> Path:
        """The folder configs point at: the location in scope (a :class:`Request`'s, see :meth:`located_at`).

        Outside one (the original API's ``dataset.datapath`` read by user
        code), the location the session in scope gives (see :class:`Location`).
        """
        located = _located.get().get(id(self))
        if located is not None:
            return located
        return session.current().locate(self).path

    @contextmanager
    def located_at(self, folder: Path):
        """Resolves this definition's resource paths under ``folder`` for a ``with`` block.

        What :meth:`config` does with the dataset's :class:`Location`, and
        what the runner of 1.x resources does with its work folder.
        """
        token = _located.set({**_located.get(), id(self): folder})
        try:
            yield folder
        finally:
            _located.reset(token)

    # -- metadata
    def _metadata_sources(self) -> list:
        """Objects whose tags and tasks the dataset inherits: itself, its template, its config type's classes."""
        sources = [self.target]
        if self.template is not None:
            sources.append(self.template)
        config_type = self.config_type
        if config_type is not None:
            sources.extend(config_type.__mro__)
        return sources

    @property
    def tags(self) -> list[str]:
        """Tags of the dataset, of its template and of its config type (and its parents)."""
        return sorted(set(self._tags).union(*(_tags_of(source) for source in self._metadata_sources())))

    @property
    def tasks(self) -> list[str]:
        """Tasks of the dataset, of its template and of its config type (and its parents)."""
        return sorted(set(self._tasks).union(*(_tasks_of(source) for source in self._metadata_sources())))

    @property
    def config_type(self) -> type | None:
        """The type of the config the dataset returns (from ``@dataset(Base)`` or the return annotation)."""
        if self.base is not None:
            return self.base
        function = self.target.config if inspect.isclass(self.target) else self.target
        try:
            annotation = typing.get_type_hints(function).get("return")
        except Exception:
            # an annotation naming something the module cannot resolve: unknown type
            annotation = None
        annotation = typing.get_origin(annotation) or annotation
        return annotation if inspect.isclass(annotation) else None

    @property
    def type_name(self) -> str:
        """``module.Class`` of the config type, '' if unknown."""
        config_type = self.config_type
        return f"{config_type.__module__}.{config_type.__qualname__}" if config_type else ""

    # -- resources
    def add_resource(self, attribute: str, resource: Resource) -> None:
        """Attaches a resource under an attribute (class style) or a variable name."""
        if not isinstance(resource, Resource):
            raise DefinitionError(f"{self.id}: {attribute} is not a resource")
        resource.bind(attribute, self)
        for other in self.resources.values():
            if other.name == resource.name:
                raise DefinitionError(f"{self.id}: two resources are named {resource.name!r}")
        self.resources[attribute] = resource

    def ordered_resources(self) -> list[Resource]:
        """Resources in dependency order (inputs first); raises on a cycle."""
        ordered: list[Resource] = []
        state: dict[int, str] = {}

        def visit(resource: Resource, chain: list[str]) -> None:
            key = id(resource)
            if state.get(key) == "done":
                return
            if state.get(key) == "visiting":
                raise DefinitionError(f"{self.id}: resource cycle {' -> '.join(chain + [resource.name])}")
            state[key] = "visiting"
            for dependency in resource.dependencies():
                if dependency.definition is None:
                    # an input given inline, not as a class attribute: it belongs here too
                    self.add_resource(dependency.name or f"input{len(self.resources)}", dependency)
                visit(dependency, chain + [resource.name])
            state[key] = "done"
            ordered.append(resource)

        for resource in list(self.resources.values()):
            visit(resource, [])
        return ordered

    def describe(self, datapath: Path, states=None) -> dict:
        """What ``info`` shows of the dataset: its metadata and resources, its readable folder ``datapath``.

        :param states: something whose ``state(resource)`` says each
            resource's state in the store (a pipeline); None: no state shown
        """
        resources = []
        for resource in self.ordered_resources():
            entry = {
                "name": resource.name,
                "class": type(resource).__name__,
                "kind": resource.kind,
                "transient": resource.transient,
                "urls": resource.urls(),
                "depends_on": [d.name for d in resource.dependencies()],
            }
            if states is not None:
                entry["state"] = states.state(resource)
            resources.append(entry)
        repository = self.repository
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "url": self.url,
            "repository": repository.id if repository else None,
            "type": self.type_name,
            "tags": self.tags,
            "tasks": self.tasks,
            "aliases": [a for a in self.aliases if a != self.id],
            "licence": self.licence,
            "datapath": str(datapath),
            "resources": resources,
        }

    # -- configs
    def config(self, *, location: Location | None = None, **variant):
        """Builds the dataset's config; downloads nothing (paths may not exist yet).

        :param location: where the dataset lives (what a prepare found;
            default: asked to the session in scope)
        :param variant: the values of a variant family's axes (see
            :mod:`datamaestro.variants`); missing ones take their defaults
        """
        if location is None:
            location = session.current().locate(self)
        with self.located_at(location.path):
            return self._build_config(variant)

    def _build_config(self, variant: dict):
        """The config, built while resource paths resolve to the dataset's location."""
        data_id = self.data_id
        if self.variants is not None:
            variant = self.variants.resolve(**variant)
            dataset_id, at, repository = data_id.partition("@")
            data_id = dataset_id + self.variants.format_selector(variant) + at + repository
        elif variant:
            from .errors import VariantError

            raise VariantError(f"dataset {self.id!r} does not declare variants but variant values {sorted(variant)} were supplied", hint="drop the [...] selector")
        if not inspect.isclass(self.target):
            # as the original: pre-use hooks run for function-style definitions
            for hook in self.hooks["pre-use"]:
                hook(self)
        if inspect.isclass(self.target):
            instance = self.target()
            result = instance.config(**variant)
        elif self.as_prepare:
            result = self.target(self, None)
        else:
            arguments = {r.varname: r.value() for r in self.resources.values()}
            result = self.target(**arguments)
        if isinstance(result, dict):
            config_type = self.config_type
            if config_type is None:
                raise DefinitionError(f"{self.id}: returned a dict but @dataset names no config type")
            result = config_type.C(**result)
        from experimaestro import Config

        if not isinstance(result, Config):
            raise DefinitionError(f"{self.id}: the definition returned {type(result).__name__}, not a data config")
        set_data_ids(result, data_id)
        return result

    def prepare(self, download: bool = False, variant_kwargs: dict | None = None):
        """The config (the original datamaestro's ``AbstractDataset.prepare``); ``download=True`` prepares it first.

        As in the original, repeated calls return the same config object
        (one per variant, and per place the data is read from); a dataset
        without variants ignores ``variant_kwargs``.
        """
        context = session.current()
        location = context.prepare(self).location if download else context.locate(self)
        variant = self.variants.resolve(**(variant_kwargs or {})) if self.variants is not None else {}
        key = (location.path, tuple(sorted((name, repr(value)) for name, value in variant.items())))
        cached = self._prepared_configs.get(key)
        if cached is None:
            cached = self._prepared_configs[key] = self.config(location=location, **variant)
        return cached

    _prepare = prepare

    def is_prepared(self) -> bool:
        """Whether the data is present, in the session in scope (see :meth:`Context.is_prepared`)."""
        return session.current().is_prepared(self)

    def download(self, force: bool = False) -> bool:
        """Makes the data present (the original API; ``force`` is ignored: the store is content-addressed)."""
        session.current().prepare(self)
        return True

    def has_files(self) -> bool:
        """Whether a resource of the dataset has files (not only values or references)."""
        return any(resource.has_files() for resource in self.resources.values())

    def hasfiles(self) -> bool:
        """Deprecated name of :meth:`has_files`."""
        from .lazy import warn_once

        warn_once("DatasetDefinition.hasfiles", "hasfiles() is deprecated, use has_files()")
        return self.has_files()

    def register_hook(self, name: str, hook: Callable) -> None:
        """Registers a hook of the original API (``pre-use``: before the config is built)."""
        self.hooks.setdefault(name, []).append(hook)

    @property
    def context(self):
        """The session in scope (the original API's ``dataset.context``)."""
        return session.current()

    @property
    def configtype(self) -> type | None:
        """The original API's name of :attr:`config_type`."""
        return self.config_type

    def __repr__(self) -> str:
        return f"DatasetDefinition({self.id!r})"


def _template_base(base):
    """The config type of ``@dataset(base)``, where ``base`` may be a ``@metadataset`` template."""
    template = getattr(base, "__datamaestro__", None)
    # a template (``metadataset``) carries the config type of the datasets built on it
    return getattr(template, "base", base) if template is not None else base


def _normalize_variants(variants):
    """A variants instance from ``@dataset(variants=...)`` (a class is instantiated)."""
    if variants is None:
        return None
    from .variants import Variants

    if inspect.isclass(variants) and issubclass(variants, Variants):
        return variants()
    if isinstance(variants, Variants):
        return variants
    from .errors import VariantsTypeError

    raise VariantsTypeError(f"dataset(variants=...) must be a Variants instance or subclass (got {variants!r})")


def set_data_ids(config, data_id: str) -> None:
    """Gives every nested data config without an id one derived from its place.

    The root gets ``<id>@<repo>``; a child under key ``train`` gets
    ``<id>.train@<repo>`` (the scheme of the original datamaestro, so that
    experimaestro identifiers stay the same).
    """
    from experimaestro import Config

    from .data import Base

    dataset_id, at, repository = data_id.partition("@")
    suffix = f"@{repository}" if at else ""

    def visit(value, path: str) -> None:
        if isinstance(value, Base):
            if value.__xpm__.values.get("id"):
                return
            value.id = path + suffix
        if isinstance(value, Config):
            for key, child in list(value.__xpm__.values.items()):
                if key == "id":
                    continue
                if isinstance(child, Config):
                    visit(child, f"{path}.{key}")
                elif isinstance(child, (list, tuple)):
                    for index, item in enumerate(child):
                        if isinstance(item, Config):
                            visit(item, f"{path}.{key}.{index}")

    visit(config, dataset_id)


class _DataPath:
    """``MyDataset.data_path``: the readable folder of a class-style dataset (the original's shortcut)."""

    def __get__(self, obj, owner=None):
        owner = owner if owner is not None else type(obj)
        definition = getattr(owner, "__dataset__", None)
        if definition is None:
            raise AttributeError(f"{owner.__name__} has no __dataset__: is @dataset applied?")
        return definition.datapath


class Dataset:
    """Base class of class-style dataset definitions.

    Subclasses declare resources as class attributes and implement
    :meth:`config`, which builds the data config from ``self.RESOURCE.path``.
    """

    __dataset__: DatasetDefinition

    #: the dataset's readable folder (``MyDataset.data_path``)
    data_path = _DataPath()

    def config(self):
        """Returns the dataset's data config (an experimaestro ``Config``)."""
        raise NotImplementedError(f"{type(self).__name__} must implement config()")


def dataset(base: type | None = None, **metadata) -> Callable:
    """Declares a dataset: a :class:`Dataset` subclass or a function.

    :param base: the config type a decorator-style function's dict is built
        into (default: the return annotation of ``config()`` or of the
        function); a ``@metadataset`` template gives its type and tags
    :param id: explicit id (``"x"``: module path + ``x``; ``""``: the module path
        alone; ``".x.y"``: module path + ``x.y``; a dotted id: used as is)
    :param url: the dataset's home page
    :param tags: free tags (``search tag:...``)
    :param tasks: tasks the dataset serves (``search task:...``)
    :param aliases: other ids that resolve to this dataset
    :param licence: licence or user-agreement text shown by ``info``
    :param doi: the DOI of the dataset's paper
    :param size: the size of the data (free text, shown by ``info``)
    :param timestamp: the date of a dataset that changes over time
    :param variants: a :class:`~datamaestro.variants.Variants` class or
        instance: the dataset is a family, addressed as ``id[axis=value,...]``
    :param as_prepare: the function receives ``(definition, None)`` and
        sets its resources up itself (the original API)

    One ``dataset(...)`` may decorate several definitions (a shared
    ``TIPSTER = dataset(url=...)`` used as ``@TIPSTER`` on each).
    """

    def decorate(target):
        definition = DatasetDefinition(target, base=base, **metadata)
        pending = getattr(target, "__datamaestro_pending__", [])
        if inspect.isclass(target):
            for attribute, value in vars(target).items():
                if isinstance(value, Resource):
                    definition.add_resource(attribute, value)
        for resource in reversed(pending):
            definition.add_resource(resource.varname, resource)
        for annotation in reversed(getattr(target, "__datamaestro_annotations__", [])):
            annotation.annotate(definition)
        target.__dataset__ = definition
        return target

    # what the original API's ``DatasetWrapper(annotation, target)`` reads
    decorate.base = base
    decorate.metadata = metadata
    return decorate


def resource_decorator(resource: Resource) -> Callable:
    """Turns a resource into a decorator for decorator-style definitions (what using a resource as a decorator does)."""
    return resource.__call__
