"""Datasets a repository generates (the original API's ``AbstractDataset``), presented as definitions.

Repositories that generate their datasets (the ir_datasets bridge of
``datamaestro-text``) yield :class:`AbstractDataset` objects; the registry
and the pipeline see them through :meth:`AbstractDataset.as_definition`, a
:class:`GeneratedDefinition` with one volatile resource that calls the
dataset's ``download()``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .. import session
from ..definition import DatasetDefinition, _split_doc, set_data_ids
from ..errors import DatamaestroError
from ..resource import Resource
from ..store.actions import Kind

if TYPE_CHECKING:
    from ..definition import Location
    from ..repository import Repository


class DataDefinition:
    """The original datamaestro's base of data and dataset descriptions; here, its id helper.

    A dataset's description is a :class:`~datamaestro.definition.DatasetDefinition`
    (also importable as ``DatasetWrapper``).
    """

    @staticmethod
    def repository_relpath(target: type) -> "tuple[Repository | None, list[str]]":
        """The repository whose package holds ``target`` and the id parts below it (``["config", "lecun", "mnist"]``)."""
        from ..ids import camel_to_dotted

        repositories = session.current().repositorymap
        components = f"{target.__module__}.{target.__name__}".split(".")
        repository, longest = None, -1
        for index in range(len(components)):
            prefix = ".".join(components[: index + 1])
            if prefix in repositories:
                repository, longest = repositories[prefix], index
        if repository is None and components[0] == "datamaestro":
            longest = 0
        parts = components[longest + 1 :]
        if parts:
            parts = [part.lower() for part in parts[:-1]] + [camel_to_dotted(parts[-1])]
        return repository, parts


class AbstractDataset:
    """A dataset that builds its config itself (the original datamaestro's API).

    Repositories that generate their datasets (the ir_datasets bridge of
    ``datamaestro-text``) subclass it, set ``id`` and implement
    :meth:`_prepare` (the config) and, when there is data to fetch outside
    the store, :meth:`download`. datamaestro lists them through the
    repository's ``modules()`` and prepares them by calling ``download()``.

    :param repository: the repository the dataset belongs to
    """

    name: str | None = None
    url: str | None = None
    doi: str | None = None

    def __init__(self, repository: "Repository | None" = None):
        self.repository = repository
        self.id: str = ""
        self.tags: set[str] = set()
        self.tasks: set[str] = set()
        self.aliases: set[str] = set()
        self.resources: dict[str, Resource] = {}
        #: the resources in the order they are produced (1.16's dataset folder, see :mod:`datamaestro.compat.folder`)
        self.ordered_resources: list[Resource] = []
        self._download_error = None
        self.hooks: dict[str, list[Callable]] = {"pre-use": [], "pre-download": []}
        self.timestamp = False
        self.version = None

    @property
    def description(self) -> str:
        """The long description ('' by default)."""
        return ""

    @property
    def configtype(self) -> type | None:
        """The config type, when known."""
        return None

    @property
    def context(self):
        """The repository's context, else the session in scope."""
        context = getattr(self.repository, "context", None)
        return context if context is not None else session.current()

    def attach_resource(self, resource: Resource) -> None:
        """Lists a resource bound to this dataset (under its variable name), as 1.16's ``bind`` did.

        :raises AssertionError: the name is taken (1.16's error)
        """
        key = resource.varname or resource.name
        if key in self.resources:
            raise AssertionError(f"Name {key} already declared as a resource")
        self.resources[key] = resource
        self.ordered_resources.append(resource)

    @staticmethod
    def find(name: str, context=None):
        """The dataset with this id (the original API), in ``context`` or the session in scope.

        :raises UsageError: no installed dataset has this id
        """
        context = session.current() if context is None else context
        return context.dataset(name)

    @property
    def datapath(self) -> Path:
        """``<data dir>/data/<repository>/<id as path>``."""
        from ..context import NO_REPOSITORY

        repository = self.repository.id if self.repository is not None else NO_REPOSITORY
        return self.context.data_dir / "data" / repository / Path(*self.id.split("."))

    def _prepare(self, download: bool = False):
        """Builds the config. Subclasses implement it."""
        raise NotImplementedError(f"{type(self).__name__} must implement _prepare()")

    def prepare(self, download: bool = False, variant_kwargs: dict | None = None):
        """The config; ``download=True`` fetches the data first.

        :raises DownloadError: a resource could not be produced (chained to its error)
        """
        config = self._prepare(variant_kwargs=variant_kwargs) if variant_kwargs is not None else self._prepare()
        if download:
            self._download_or_raise()
        return config

    def download(self, force: bool = False) -> bool:
        """Fetches the data, wherever it lives: the resources bound to this dataset, into its folder (1.16's flow, see :mod:`datamaestro.compat.folder`); nothing without resources.

        False when a resource failed.
        """
        if not self.ordered_resources:
            return True
        from .folder import download

        return download(self, force)

    def _download_or_raise(self, force: bool = False) -> None:
        """:meth:`download`, raising the :class:`DownloadError` (chained to the resource's error) instead of returning False."""
        from ..errors import DownloadError

        self._download_error = None
        if self.download(force) is False:
            raise self._download_error or DownloadError(f"Could not download dataset {self.id or self!r}", hint="see the messages above")

    def is_prepared(self) -> bool:
        """Whether the data is there already: every bound resource is (reads only); False without resources.

        The data of a generated dataset lives where its own code puts it (the
        ir_datasets cache), out of the store's sight: without an override,
        datamaestro runs ``download()``, which the dataset makes cheap when
        its data is there.
        """
        if not self.ordered_resources:
            return False
        from .folder import is_prepared

        return is_prepared(self)

    def register_hook(self, name: str, hook: Callable) -> None:
        """Registers a hook (``pre-use``, ``pre-download``)."""
        self.hooks.setdefault(name, []).append(hook)

    def as_definition(self) -> "GeneratedDefinition":
        """This dataset presented as a definition (what the registry and the pipeline handle)."""
        return GeneratedDefinition(self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.id!r})"


class GeneratedDefinition(DatasetDefinition):
    """A :class:`DatasetDefinition` view of an :class:`AbstractDataset` that a repository generates.

    Search, ``info``, ``get_dataset`` and ``prepare`` treat it like any
    definition: its config is the dataset's ``prepare()``, and preparing it
    runs one resource that calls the dataset's ``download()`` (the data
    lives where the dataset's own code puts it, e.g. ir_datasets' cache).

    :param dataset: the generated dataset
    """

    def __init__(self, dataset: AbstractDataset):
        self.foreign = dataset
        repository = dataset.repository
        super().__init__(
            dataset,
            base=dataset.configtype if isinstance(dataset.configtype, type) else None,
            id=dataset.id,
            url=dataset.url,
            tags=sorted(dataset.tags),
            tasks=sorted(dataset.tasks),
            aliases=sorted(dataset.aliases),
            doi=dataset.doi,
            module=type(repository).__module__ if repository is not None else type(dataset).__module__,
            qualname="",
        )
        self.name, self.description = _split_doc(dataset.description)
        if dataset.name:
            self.name = dataset.name
        # the dataset's own hooks and annotations (a user agreement) stay its own
        self.hooks = dataset.hooks
        self.agreements = list(getattr(dataset, "agreements", []))
        self.production_checks = list(getattr(dataset, "production_checks", []))
        self.add_resource("download", GeneratedDownload(dataset))

    def _compute_id(self) -> str:
        """The id the repository gave the dataset, as is."""
        return self._explicit_id

    def repository_in(self, context) -> "Repository | None":
        """The repository that generated the dataset."""
        return self.foreign.repository

    def config(self, *, location: Location | None = None, **variant):
        """The dataset's own config (``prepare(download=False)``), with nested data ids set.

        Its paths are the dataset's own business (``location`` is not used).
        """
        if variant:
            from ..errors import VariantError

            raise VariantError(f"dataset {self.id!r} does not declare variants but variant values {sorted(variant)} were supplied", hint="drop the [...] selector")
        result = self.foreign.prepare(download=False)
        set_data_ids(result, self.data_id)
        return result

    def __repr__(self) -> str:
        return f"GeneratedDefinition({self.id!r})"


class GeneratedDownload(Resource):
    """The one resource of a generated dataset: calls its ``download()``.

    It keeps nothing in the store (its kind is ``value``) and runs on every
    prepare (``volatile``): the dataset's code knows whether its data is
    there, and the store cannot.
    """

    kind = Kind.VALUE
    volatile = True

    def __init__(self, dataset: AbstractDataset):
        super().__init__("download")
        self.dataset_object = dataset

    def recipe(self) -> dict:
        """The dataset's id."""
        return {**super().recipe(), "dataset": self.dataset_object.id}

    def produce(self, job) -> "Any":
        """Runs the dataset's ``download()``."""
        from ..errors import DownloadError
        from ..store import Output

        try:
            ok = self.dataset_object.download()
        except DatamaestroError:
            raise
        except Exception as exc:
            raise DownloadError(f"{self.dataset_object.id}: {type(exc).__name__}: {exc}", hint="see the dataset's documentation; run with --traceback for details") from exc
        if ok is False:
            # a dataset folder of 1.16 says which resource failed, and why
            error = getattr(self.dataset_object, "_download_error", None)
            if isinstance(error, DatamaestroError):
                raise error
            raise DownloadError(f"{self.dataset_object.id}: its download failed", hint="run with --debug for the dataset's messages")
        return Output(Kind.VALUE, value=None)

    def present_output(self, manifest_of) -> "Any":
        """The dataset's own ``is_prepared()`` answer, as an output (None: not prepared, or it cannot tell)."""
        from ..store import Output

        return Output(Kind.VALUE, value=None) if self.dataset_object.is_prepared() else None

    def value(self):
        """Nothing: generated datasets build their config themselves."""
        return None


def resolve_dataset_id(dataset, variant: dict | None = None, context=None):
    """The dataset and the variant's axis values (1.16's ``datamaestro.context._resolve_dataset_id``).

    ``dataset`` is an id (``"id[axis=value]"``), a definition or a
    ``@dataset`` target; ``variant`` selects a variant without a selector.

    :raises VariantError: (a ``ValueError``) a selector and ``variant``
        both given, a variant for a dataset without variants, an unknown
        axis or value
    """
    from ..errors import VariantError
    from ..variants import split_id_selector

    selector = ""
    if isinstance(dataset, str):
        name, selector = split_id_selector(dataset)
        definition = AbstractDataset.find(name, context=context)
    else:
        definition = getattr(dataset, "__dataset__", dataset)
        name = definition.id
    definition = getattr(definition, "__dataset__", definition)
    if selector and variant is not None:
        raise VariantError(f"dataset {name!r} received both a selector {selector!r} and a `variant` kwarg; pass only one", hint=f"use {name}[{selector}] alone")
    variants = getattr(definition, "variants", None)
    if variants is None:
        if selector:
            raise VariantError(f"dataset {name!r} does not declare variants but selector {selector!r} was supplied", hint=f"use {name}")
        if variant:
            raise VariantError(f"dataset {name!r} does not declare variants but `variant` kwarg {variant!r} was supplied", hint="drop variant=")
        return definition, {}
    if variant is not None:
        axes = getattr(variants, "axes", None)
        if isinstance(axes, dict):
            unknown = sorted(set(variant) - set(axes))
            if unknown:
                raise VariantError(f"unknown variant axes {unknown} for dataset {name!r}", hint=f"axes: {', '.join(sorted(axes))}")
        values = dict(variant)
    else:
        values = variants.parse_selector(selector)
    return definition, variants.resolve(**values)


# recipes, pickles and messages keep naming the 1.x module
from . import keep_public_module  # noqa: E402

keep_public_module(globals(), "datamaestro.definitions")
