"""Dataset definitions: the ``@dataset`` decorator and what it builds.

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
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .download import Resource
from .errors import DefinitionError

if TYPE_CHECKING:
    from .repository import Repository


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
    ):
        self.target = target
        self.base = base
        self.module = target.__module__
        self.qualname = target.__qualname__
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
        self.id = self._compute_id()

    # -- identity
    def _compute_id(self) -> str:
        explicit = self._explicit_id
        if explicit and "." in explicit and not explicit.startswith("."):
            return explicit
        components = self.module.split(".")
        if "config" not in components[1:]:
            # Outside a repository's config package (a script, a test): the
            # module path itself, lower-cased name appended.
            base = components
        else:
            base = components[components.index("config", 1) + 1 :]
        name = self.qualname.split(".")[-1].lower() if explicit is None else explicit.lstrip(".")
        if name and (not base or base[-1] != name):
            base = base + [name]
        if not base:
            raise DefinitionError(f"{self.module}.{self.qualname}: cannot derive a dataset id")
        return ".".join(base)

    @property
    def repository(self) -> "Repository | None":
        """The repository whose config package holds this definition, in the current context."""
        from .context import Context

        return self.repository_in(Context.instance())

    def repository_in(self, context) -> "Repository | None":
        """The repository of this definition in a given context (None outside one)."""
        return context.registry.repository_for_module(self.module)

    @property
    def data_id(self) -> str:
        """The id given to the config: ``<id>@<repository>`` as the original datamaestro does."""
        repository = self.repository
        return f"{self.id}@{repository.id}" if repository is not None else self.id

    @property
    def datapath(self) -> Path:
        """The readable folder in the current context (see :meth:`datapath_in`)."""
        from .context import Context

        return self.datapath_in(Context.instance())

    def datapath_in(self, context) -> Path:
        """The readable folder: ``<data dir>/data/<repository>/<id as path>``."""
        relative = Path(*self.id.split("."))
        repository = self.repository_in(context)
        if repository is not None:
            return context.data_dir / "data" / repository.id / relative
        return context.data_dir / "data" / "__custom__" / relative

    # -- metadata
    @property
    def tags(self) -> list[str]:
        """Tags of the dataset and of its config type."""
        config_type = self.config_type
        return sorted(set(self._tags) | set(_tags_of(self.target)) | set(_tags_of(config_type) if config_type else ()))

    @property
    def tasks(self) -> list[str]:
        """Tasks of the dataset and of its config type."""
        config_type = self.config_type
        return sorted(set(self._tasks) | set(_tasks_of(self.target)) | set(_tasks_of(config_type) if config_type else ()))

    @property
    def config_type(self) -> type | None:
        """The type of the config the dataset returns (from ``@dataset(Base)`` or the return annotation)."""
        if self.base is not None:
            return self.base
        if inspect.isclass(self.target):
            annotation = inspect.signature(self.target.config).return_annotation
            if isinstance(annotation, str):
                annotation = self._resolve_annotation(annotation)
            return annotation if inspect.isclass(annotation) else None
        return None

    def _resolve_annotation(self, annotation: str):
        import sys

        namespace = vars(sys.modules[self.module])
        try:
            return eval(annotation, namespace)  # a name of the definition's own module
        except Exception:
            return None

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

    # -- configs
    def config(self):
        """Builds the dataset's config; downloads nothing (paths may not exist yet)."""
        if inspect.isclass(self.target):
            instance = self.target()
            result = instance.config()
        else:
            arguments = {r.varname: r.value() for r in self.resources.values()}
            result = self.target(**arguments)
        if isinstance(result, dict):
            if self.base is None:
                raise DefinitionError(f"{self.id}: returned a dict but @dataset names no config type")
            result = self.base.C(**result)
        from experimaestro import Config

        if not isinstance(result, Config):
            raise DefinitionError(f"{self.id}: the definition returned {type(result).__name__}, not a data config")
        set_data_ids(result, self.data_id)
        return result

    def __repr__(self) -> str:
        return f"DatasetDefinition({self.id!r})"


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


class Dataset:
    """Base class of class-style dataset definitions.

    Subclasses declare resources as class attributes and implement
    :meth:`config`, which builds the data config from ``self.RESOURCE.path``.
    """

    __dataset__: DatasetDefinition

    def config(self):
        """Returns the dataset's data config (an experimaestro ``Config``)."""
        raise NotImplementedError(f"{type(self).__name__} must implement config()")


#: The original datamaestro's name for the wrapper of a definition
AbstractDataset = DatasetDefinition


def dataset(base: type | None = None, **metadata) -> Callable:
    """Declares a dataset: a :class:`Dataset` subclass or a function.

    :param base: the config type a decorator-style function's dict is built into
    :param id: explicit id (``"x"``: module path + ``x``; ``""``: the module path
        alone; a dotted id: used as is)
    :param url: the dataset's home page
    :param tags: free tags (``search tag:...``)
    :param tasks: tasks the dataset serves (``search task:...``)
    :param aliases: other ids that resolve to this dataset
    :param licence: licence or user-agreement text shown by ``info``
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
        target.__dataset__ = definition
        return target

    return decorate


def resource_decorator(resource: Resource) -> Callable:
    """Turns a resource into a decorator for decorator-style definitions.

    Works above ``@dataset`` (adds to the definition) and below it (kept
    until ``@dataset`` runs).
    """

    def decorate(target):
        definition = getattr(target, "__dataset__", None)
        if isinstance(definition, DatasetDefinition) and definition.target is target:
            definition.add_resource(resource.varname, resource)
        else:
            target.__datamaestro_pending__ = getattr(target, "__datamaestro_pending__", []) + [resource]
        return target

    return decorate


def datatags(*tags: str) -> Callable:
    """Adds tags to a data type or a dataset."""

    def decorate(target):
        target.__datamaestro_tags__ = _tags_of(target) + list(tags)
        return target

    return decorate


def datatasks(*tasks: str) -> Callable:
    """Adds tasks to a data type or a dataset."""

    def decorate(target):
        target.__datamaestro_tasks__ = _tasks_of(target) + list(tasks)
        return target

    return decorate


def argument(name: str, type_: type, default: Any = inspect.Parameter.empty, help: str | None = None) -> Callable:
    """Declares an experimaestro ``Param`` on a data type (older decorator style)."""

    def decorate(cls):
        from experimaestro import Param

        annotations = cls.__dict__.get("__annotations__", {})
        if name not in annotations:
            annotations = dict(annotations)
            annotations[name] = Param[type_]
            cls.__annotations__ = annotations
            if default is not inspect.Parameter.empty:
                setattr(cls, name, default)
        return cls

    return decorate


def metadataset(base: type | None = None, **metadata) -> Callable:
    """Declares a dataset that gathers other datasets (no resources of its own)."""
    return dataset(base, **metadata)
