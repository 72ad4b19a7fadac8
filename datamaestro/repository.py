"""The base class of a plugin's repository of datasets.

A plugin declares its repository under the ``datamaestro.repositories``
entry point (``image = datamaestro_image:Repository``); its datasets live in
the modules of its ``config`` package. Finding the installed repositories
and indexing their datasets is the registry's work
(:mod:`datamaestro.registry`).
"""

from __future__ import annotations

import functools

import importlib
import importlib.util
import logging
from pathlib import Path
from typing import Any, Iterator

logger = logging.getLogger(__name__)


#: the original datamaestro's attributes of ``Repository``, kept in :mod:`datamaestro.compat.repository` and read there on first use
_FACE_NAMES = frozenset({"datapath"})


class Repository:
    """Base class of a plugin's repository.

    Subclasses set ``NAMESPACE`` (the short name used in data paths and ids,
    e.g. ``image``), ``DESCRIPTION`` and ``AUTHOR``; datasets are found in the
    ``config`` package next to the subclass's module.
    """

    NAMESPACE: str = ""
    DESCRIPTION: str = ""
    AUTHOR: str = ""

    def __init__(self, context: Any, name: str | None = None):
        #: the session's context it was created with (the original API), for the plugin's own code
        self.context = context
        self.id = (self.NAMESPACE or name or type(self).__module__.split(".")[0]).strip()
        self.name = self.id

    @property
    def package(self) -> str:
        """The top-level package of the plugin."""
        return type(self).__module__.split(".")[0]

    @classmethod
    def basemodule(cls) -> str:
        """The module of the repository class: datasets of modules below it belong to it."""
        return cls.__module__

    @property
    def config_package(self) -> str:
        """The package holding dataset definitions (``<package>.config``)."""
        return f"{self.package}.config"

    @property
    def basedir(self) -> Path | None:
        """The folder of the plugin's top-level package (the original API)."""
        return package_folder(self.package)

    def __getattr__(self, name: str) -> Any:
        # only for names not found otherwise: the original datamaestro's attributes (compat/repository.py)
        if name not in _FACE_NAMES:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        from .lazy import resolve

        # a 1.x face: loaded through the lazy loader's table of strings on first use, so that the core never imports it
        return vars(resolve("datamaestro.compat.repository:RepositoryFace"))[name].__get__(self, type(self))

    @property
    def version(self) -> str:
        """The installed version of the plugin's distribution ('' if unknown)."""
        return distribution_version(self.package)

    def module_names(self) -> list[str]:
        """Names of every module of the config package (found without importing them).

        Empty for a repository that generates its datasets (it overrides :meth:`modules`).
        """
        if type(self).modules is not Repository.modules:
            return []
        folder = package_folder(self.package)
        if folder is None or not (folder / "config").is_dir():
            return []
        names = []
        for path in sorted((folder / "config").rglob("*.py")):
            relative = path.relative_to(folder).with_suffix("")
            parts = list(relative.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            names.append(".".join([self.package, *parts]))
        return names

    def modules(self) -> Iterator["ModuleDatasets"]:
        """The datasets, grouped by module (the original API; imports every config module).

        A repository that generates its datasets (rather than declaring them
        in ``config`` modules) overrides this and :meth:`search`.
        """
        for name in self.module_names():
            try:
                module = importlib.import_module(name)
            except Exception as exc:  # a broken plugin module must not hide the others
                logger.warning("cannot import %s: %s", name, exc)
                continue
            yield ModuleDatasets(module)

    def __iter__(self) -> Iterator:
        """Every dataset of the repository."""
        for group in self.modules():
            yield from group

    def definitions(self) -> Iterator:
        """Every dataset: :class:`DatasetDefinition` or generated :class:`AbstractDataset` objects."""
        return iter(self)

    def search(self, name: str):
        """The dataset with this id or alias, or None (the original API); a variant selector (``id[axis=value]``) is ignored."""
        from .variants import split_id_selector

        name = split_id_selector(name)[0]
        for definition in self:
            if definition.id == name or name in getattr(definition, "aliases", ()):
                return definition
        return None

    def __repr__(self) -> str:
        return f"Repository({self.id!r})"


#: The original datamaestro's name of the base class
BaseRepository = Repository


class ModuleDatasets:
    """The datasets a config module defines (what :meth:`Repository.modules` yields).

    :ivar module: the module
    :ivar id: the module path below ``config``
    """

    def __init__(self, module):
        self.module = module
        name = module.__name__
        self.id = name.split(".config.", 1)[1] if ".config." in name else ""
        self.title, self.description = _module_doc(module)

    def __iter__(self):
        from .definition import DatasetDefinition

        name = self.module.__name__
        for attribute, value in list(vars(self.module).items()):
            definition = getattr(value, "__dataset__", None)
            if isinstance(definition, DatasetDefinition) and definition.target is value and getattr(value, "__module__", None) == name:
                if "<locals>" in definition.qualname:
                    # made by a factory function: found again through the module's variable
                    definition.module_attribute = attribute
                yield definition


def _module_doc(module) -> tuple[str, str]:
    text = (module.__doc__ or "").strip()
    first, _, rest = text.partition("\n")
    return first.strip(), rest.strip()


def package_folder(package: str) -> Path | None:
    """The folder of a top-level package, found without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def distribution_version(package: str) -> str:
    """The version of the distribution that provides ``package``."""
    from importlib.metadata import version

    try:
        for distribution in _packages_distributions().get(package, []):
            return version(distribution)
    except Exception:
        pass
    return ""


@functools.lru_cache(maxsize=1)
def _packages_distributions() -> dict:
    """``importlib.metadata.packages_distributions()``, read once per process (it reads every installed distribution)."""
    from importlib.metadata import packages_distributions

    return packages_distributions()
