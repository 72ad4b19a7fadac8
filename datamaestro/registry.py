"""The registry: installed repositories, found through entry points, and the dataset index.

Importing every plugin module on every command would make ``search`` slow
with thousands of datasets, so the registry keeps an index (JSON, in the
user's code cache, :mod:`datamaestro.codecache`) keyed by a fingerprint of the installed plugins (entry
points, versions, and the size and mtime of every module of their config
packages): the index is rebuilt only when a plugin changes.

A repository may generate its datasets instead of declaring them (the 1.x
``AbstractDataset`` objects of the ``irds`` bridge): such an object offers
``as_definition()``, which the registry calls to present it as a
:class:`~datamaestro.definitions.DatasetDefinition`.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import DatamaestroError, DatasetNotFoundError, DefinitionError
from .repository import Repository, package_folder

if TYPE_CHECKING:
    from .definition import DatasetDefinition

ENTRY_POINT_GROUP = "datamaestro.repositories"
INDEX_FORMAT = 3
logger = logging.getLogger(__name__)


@dataclass
class IndexEntry:
    """What search and listing need of a dataset, without importing it."""

    id: str
    repository: str
    module: str
    qualname: str
    name: str = ""
    description: str = ""
    url: str = ""
    tags: list[str] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)
    type: str = ""
    #: made by the repository's code (``Repository.search`` finds it), not declared in a module
    generated: bool = False
    #: the ids of the user agreements it asks for (``datamaestro agree ID``)
    agreements: list[str] = field(default_factory=list)


@dataclass
class RepositoryEntry:
    """What listing needs of a repository."""

    id: str
    entry_point: str
    description: str
    author: str
    version: str
    error: str = ""


class Registry:
    """The installed repositories and their datasets, through a cached index."""

    def __init__(self, data_dir: Path, plugin_context: Any):
        """:param data_dir: the data dir (its ``cache/`` keeps the index where the user's cache cannot)
        :param plugin_context: what the plugins' repositories are created with (the original API's
            ``Repository(context)``); the registry reads nothing of it
        """
        self.data_dir = data_dir
        self.plugin_context = plugin_context
        self._repositories: dict[str, Repository] | None = None
        self._index: list[IndexEntry] | None = None
        self._problems: dict[str, str] = {}
        self._repository_entries: list[RepositoryEntry] | None = None
        self._entry_points: list | None = None

    # -- entry points
    def entry_points(self):
        """The ``datamaestro.repositories`` entry points, sorted by name (read once per registry; see :mod:`datamaestro.entrypoints`)."""
        if self._entry_points is None:
            from .entrypoints import installed_entry_points

            self._entry_points = installed_entry_points(self.data_dir, ENTRY_POINT_GROUP)
        return self._entry_points

    def repositories(self) -> dict[str, Repository]:
        """Every installed repository, by namespace (imports each plugin's top package).

        Two repositories that declare one namespace would write into the same
        data folders and give the same data ids: one is used, the other is
        reported as shadowed (a warning naming both, and an error line in
        ``datamaestro repositories``). The one used is the distribution
        ``$DATAMAESTRO_REPOSITORIES`` names for the namespace
        (``image=datamaestro-image,text=...``), else the first by name.
        """
        if self._repositories is None:
            self._problems = {}
            loaded = []
            for entry_point in self.entry_points():
                try:
                    repository = _instantiate(entry_point.load(), self.plugin_context, entry_point.name)
                except Exception as exc:
                    logger.warning("cannot load repository %s (%s): %s", entry_point.name, entry_point.value, exc)
                    self._problems[entry_point.value] = f"cannot be loaded: {exc}"
                    continue
                repository.entry_point = entry_point
                loaded.append(repository)
            preferred = preferred_distributions()
            _check_preferences(preferred, self.entry_points(), loaded)
            loaded.sort(
                key=lambda r: (
                    _distribution_name(r.entry_point) != preferred.get(r.id, _distribution_name(r.entry_point)),
                    _distribution_name(r.entry_point),
                    r.entry_point.value,
                )
            )
            repositories: dict[str, Repository] = {}
            for repository in loaded:
                first = repositories.get(repository.id)
                if first is not None:
                    # the user chose with DATAMAESTRO_REPOSITORIES: nothing to warn about
                    chosen = preferred.get(repository.id) == _distribution_name(first.entry_point)
                    logger.log(
                        logging.DEBUG if chosen else logging.WARNING,
                        "namespace %r is declared by two installed repositories, %s and %s: using the first; "
                        "uninstall one of them, or choose with %s=%s=<distribution>, to silence this warning",
                        repository.id,
                        _describe(first),
                        _describe(repository),
                        ENV_PREFERENCES,
                        repository.id,
                    )
                    self._problems[repository.entry_point.value] = f"shadowed: namespace {repository.id!r} is already provided by {_describe(first)}"
                    continue
                repositories[repository.id] = repository
            self._repositories = repositories
        return self._repositories

    def repository_for_module(self, module: str) -> Repository | None:
        """The repository of a module: the one whose class module is the longest prefix of it.

        (``datamaestro_text.datasets.irds...`` belongs to the ``irds``
        repository declared in ``datamaestro_text.datasets.irds``, the rest of
        ``datamaestro_text`` to ``text``.)
        """
        best, length = None, -1
        for repository in self.repositories().values():
            base = repository.basemodule()
            if (module == base or module.startswith(base + ".")) and len(base) > length:
                best, length = repository, len(base)
        if best is not None:
            return best
        package = module.split(".")[0]
        for repository in self.repositories().values():
            if repository.package == package:
                return repository
        return None

    # -- the index
    def index_entry_name(self, fingerprint: str) -> str:
        """The index's name in the code cache (see :mod:`datamaestro.codecache`): one file per set of installed plugins."""
        return f"index/{fingerprint[7:39]}.json"

    def fingerprint(self) -> str:
        """Changes whenever an installed plugin changes (no plugin is imported; its files are stat'ed on every call)."""
        from .store.digests import canonical_json, digest_bytes

        parts = []
        preferred = preferred_distributions()
        _check_preferences(preferred, self.entry_points())
        for entry_point in self.entry_points():
            package = entry_point.value.split(":")[0].split(".")[0]
            folder = package_folder(package)
            files = []
            if folder is not None:
                for dirpath, dirnames, filenames in os.walk(folder):
                    dirnames[:] = [d for d in dirnames if d != "__pycache__"]
                    for filename in filenames:
                        if filename.endswith((".py", ".yaml")):
                            stat = os.stat(os.path.join(dirpath, filename))
                            files.append([os.path.relpath(os.path.join(dirpath, filename), folder), stat.st_size, stat.st_mtime_ns])
            files.sort()
            distribution = entry_point.dist
            parts.append([entry_point.name, entry_point.value, distribution.version if distribution else "", str(folder), files])
        return digest_bytes(canonical_json([INDEX_FORMAT, parts, sorted(preferred.items())]))

    def index(self) -> list[IndexEntry]:
        """Every dataset of every repository (cached on disk, rebuilt when plugins change)."""
        if self._index is None:
            fingerprint = self.fingerprint()
            cached = self._read_index(fingerprint)
            if cached is None:
                cached = self._build_index()
                self._write_index(fingerprint, cached)
            self._repository_entries, self._index = cached
        return self._index

    def repository_entries(self) -> list[RepositoryEntry]:
        """Every repository, as recorded in the index."""
        self.index()
        return self._repository_entries or []

    def _read_index(self, fingerprint: str):
        from .codecache import read_entry

        text = read_entry(self.data_dir, self.index_entry_name(fingerprint))
        if text is None:
            return None
        try:
            data = json.loads(text)
            if data.get("format") != INDEX_FORMAT or data.get("fingerprint") != fingerprint:
                return None
            return (
                [RepositoryEntry(**entry) for entry in data["repositories"]],
                [IndexEntry(**entry) for entry in data["datasets"]],
            )
        except (ValueError, KeyError, TypeError):
            return None

    def _write_index(self, fingerprint: str, content) -> None:
        from .codecache import write_entry

        repositories, datasets = content
        data = {
            "format": INDEX_FORMAT,
            "fingerprint": fingerprint,
            "repositories": [asdict(r) for r in repositories],
            "datasets": [asdict(d) for d in datasets],
        }
        # nowhere to write (read-only home and data dir) only makes the next call slower
        write_entry(self.data_dir, self.index_entry_name(fingerprint), json.dumps(data), prune=True)

    def _build_index(self):
        repositories: list[RepositoryEntry] = []
        datasets: list[IndexEntry] = []
        loaded = {r.entry_point.value: r for r in self.repositories().values()}
        for entry_point in self.entry_points():
            repository = loaded.get(entry_point.value)
            if repository is None:
                error = self._problems.get(entry_point.value, "cannot be loaded")
                repositories.append(RepositoryEntry(entry_point.name, entry_point.value, "", "", _version_of(entry_point), error=error))
                continue
            entry = RepositoryEntry(
                repository.id,
                entry_point.value,
                (repository.DESCRIPTION or "").strip(),
                (repository.AUTHOR or "").strip(),
                _version_of(entry_point) or repository.version,
            )
            repositories.append(entry)
            try:
                for definition in repository.definitions():
                    try:
                        datasets.append(index_entry(definition, repository))
                    except Exception as exc:
                        logger.warning("cannot index %r: %s", definition, exc)
            except Exception as exc:  # a repository that generates its datasets may fail as a whole
                logger.warning("cannot list the datasets of repository %s: %s", repository.id, exc)
                entry.error = f"cannot list its datasets: {exc}"
        datasets.sort(key=lambda e: e.id)
        return repositories, datasets

    # -- lookup
    def find_entry(self, dataset_id: str) -> IndexEntry:
        """The index entry of an id or alias; raises with suggestions when unknown."""
        entries = self.index()
        wanted, at, repository = dataset_id.partition("@")
        if at:
            # `id@repository`, the data id form: when two repositories define one id
            entries = [entry for entry in entries if entry.repository == repository]
        matches = [entry for entry in entries if entry.id == wanted] or [entry for entry in entries if wanted in entry.aliases]
        if len(matches) > 1:
            names = ", ".join(f"{wanted}@{entry.repository}" for entry in matches)
            logger.warning("%s is defined by several repositories (%s): using the first; name one as id@repository", wanted, names)
        if matches:
            return matches[0]
        dataset_id = wanted
        import difflib

        ids = [entry.id for entry in entries]
        close = difflib.get_close_matches(dataset_id, ids, n=3, cutoff=0.6)
        close += [i for i in ids if dataset_id and dataset_id.lower() in i.lower() and i not in close][: 3 - len(close)]
        raise DatasetNotFoundError(dataset_id, close)

    def find(self, dataset_id: str) -> "DatasetDefinition":
        """The definition of a dataset id (imports only its module)."""
        entry = self.find_entry(dataset_id)
        if entry.generated:
            return self._find_generated(entry)
        try:
            module = importlib.import_module(entry.module)
        except Exception as exc:
            raise DatamaestroError(
                f"cannot import {entry.module} (defining {entry.id}): {exc}",
                hint="the plugin may be broken or need a dependency; run with --traceback for details",
            ) from exc
        target = module
        for part in entry.qualname.split("."):
            target = getattr(target, part, None)
        definition = getattr(target, "__dataset__", None)
        if definition is None:
            raise DefinitionError(f"{entry.module}.{entry.qualname} no longer defines {entry.id}", hint="the index is stale: run again")
        return definition

    def _find_generated(self, entry: IndexEntry) -> "DatasetDefinition":
        """A dataset made by its repository's code, asked to the repository."""
        repository = self.repositories().get(entry.repository)
        found = repository.search(entry.id) if repository is not None else None
        if found is None:
            raise DefinitionError(f"repository {entry.repository} no longer provides {entry.id}", hint="the index is stale: run again")
        return found.as_definition() if _is_generated(found) else found


ENV_PREFERENCES = "DATAMAESTRO_REPOSITORIES"


def preferred_distributions() -> dict[str, str]:
    """``$DATAMAESTRO_REPOSITORIES`` (``namespace=distribution,...``): who provides a namespace two plugins declare.

    :raises SettingsError: a malformed value
    """
    from .errors import SettingsError

    preferences = {}
    for part in filter(None, (p.strip() for p in os.environ.get(ENV_PREFERENCES, "").split(","))):
        namespace, equal, distribution = part.partition("=")
        if not equal or not namespace.strip() or not distribution.strip():
            raise SettingsError(
                f"{ENV_PREFERENCES}={os.environ[ENV_PREFERENCES]!r}: {part!r} is not namespace=distribution",
                hint="e.g. DATAMAESTRO_REPOSITORIES=image=datamaestro-image",
            )
        preferences[namespace.strip()] = re.sub(r"[-_.]+", "-", distribution.strip()).lower()
    return preferences


def _check_preferences(preferred: dict[str, str], entry_points, loaded: list[Repository] | None = None) -> None:
    """Refuses a ``$DATAMAESTRO_REPOSITORIES`` choice that names no installed repository.

    :param loaded: the repositories, once imported: then a chosen distribution
        must also provide the namespace it is chosen for
    :raises SettingsError: naming what is installed
    """
    from .errors import SettingsError

    installed = {_distribution_name(entry_point) for entry_point in entry_points}
    for namespace, distribution in sorted(preferred.items()):
        if distribution not in installed:
            raise SettingsError(
                f"{ENV_PREFERENCES} chooses {distribution!r} for the namespace {namespace!r}, but no installed repository comes from {distribution!r}",
                hint=f"installed repositories come from: {', '.join(sorted(installed)) or 'none'}; install {distribution} or fix {ENV_PREFERENCES}",
            )
        if loaded is not None:
            providers = sorted({_distribution_name(r.entry_point) for r in loaded if r.id == namespace})
            if distribution not in providers:
                provided = sorted({r.id for r in loaded if _distribution_name(r.entry_point) == distribution})
                raise SettingsError(
                    f"{ENV_PREFERENCES} chooses {distribution!r} for the namespace {namespace!r}, which it does not provide (it provides {', '.join(provided) or 'nothing'})",
                    hint=f"the namespace {namespace!r} comes from: {', '.join(providers) or 'no installed repository'}",
                )


def _instantiate(cls, context: Any, name: str) -> Repository:
    """Creates a repository; the original API's constructors take the context only."""
    import inspect

    try:
        parameters = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        parameters = {}
    if len(parameters) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in parameters.values()):
        return cls(context, name)
    repository = cls(context)
    if not repository.id:
        repository.id = repository.name = name
    return repository


def _distribution_name(entry_point) -> str:
    """The distribution's normalized name (PEP 503: ``datamaestro_image`` -> ``datamaestro-image``)."""
    distribution = entry_point.dist
    name = (distribution.metadata["Name"] or "") if distribution is not None else ""
    return re.sub(r"[-_.]+", "-", name).lower()


def _version_of(entry_point) -> str:
    return entry_point.dist.version if entry_point.dist is not None else ""


def _describe(repository: Repository) -> str:
    """``datamaestro-image 2025.9.21 (datamaestro_image:Repository)``."""
    entry_point = repository.entry_point
    name = _distribution_name(entry_point) or "?"
    return f"{name} {_version_of(entry_point)} ({entry_point.value})".replace("  ", " ")


def _is_generated(definition) -> bool:
    """True for a dataset a repository generates (it presents itself with ``as_definition()``)."""
    from .definition import DatasetDefinition

    return not isinstance(definition, DatasetDefinition) and callable(getattr(definition, "as_definition", None))


def index_entry(definition, repository: Repository) -> IndexEntry:
    """The index entry of a definition (declared, or generated by its repository)."""
    if _is_generated(definition):
        entry = index_entry(definition.as_definition(), repository)
        entry.generated = True
        return entry
    return IndexEntry(
        id=definition.id,
        repository=repository.id,
        module=definition.module,
        qualname=getattr(definition, "module_attribute", None) or definition.qualname,
        name=definition.name,
        description=definition.description,
        url=definition.url or "",
        tags=definition.tags,
        tasks=definition.tasks,
        aliases=[a for a in definition.aliases if a != definition.id],
        type=definition.type_name,
        agreements=[agreement_id for agreement_id, _ in getattr(definition, "agreements", [])],
    )
