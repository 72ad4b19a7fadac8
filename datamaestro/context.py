"""The Context: settings, repositories, store and fetcher of one session.

There is one current context (:meth:`Context.instance`), created from the
environment on first use; the CLI and tests install their own with
:meth:`Context.set_instance` (or ``with Context(...):``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .settings import Settings, load_settings

if TYPE_CHECKING:
    from .definitions import DatasetDefinition
    from .fetch import Fetcher
    from .repository import Registry
    from .store import Store

logger = logging.getLogger(__name__)


class Context:
    """Where datamaestro reads its settings and keeps its data.

    :param settings: resolved settings (default: read from every source)
    :param project_dir: where to look for the project's ``pyproject.toml``
    :param overrides: ``Settings`` field values that beat every other source
        (what the command line sets), e.g. ``{"data_dir": Path("/data")}``
    :param progress: progress bars on (True), off (False) or when stderr is a terminal (None)

    Example::

        with Context(overrides={"data_dir": Path("/tmp/dm")}):
            ds = prepare_dataset("com.lecun.mnist")
    """

    _current: "Context | None" = None

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        project_dir: Path | None = None,
        overrides: dict[str, Any] | None = None,
        progress: bool | None = None,
    ):
        if settings is None:
            settings, pyproject = load_settings(overrides, project_dir=project_dir)
        else:
            from .settings import find_pyproject

            pyproject = find_pyproject(project_dir)
        self.settings = settings
        self.pyproject = pyproject
        self.progress = progress
        self._registry: Registry | None = None
        self._store: Store | None = None
        self._fetcher: Fetcher | None = None
        self._previous: list[Context | None] = []

    # -- the current context
    @classmethod
    def instance(cls) -> "Context":
        """The current context (created from the environment on first use)."""
        if cls._current is None:
            cls._current = Context()
        return cls._current

    @classmethod
    def set_instance(cls, context: "Context | None") -> None:
        """Makes ``context`` the current one (None: recreate on next use)."""
        cls._current = context

    def __enter__(self) -> "Context":
        self._previous.append(Context._current)
        Context._current = self
        return self

    def __exit__(self, *exc_info) -> None:
        Context._current = self._previous.pop()
        self.close()

    def close(self) -> None:
        """Releases the network session."""
        if self._fetcher is not None:
            self._fetcher.close()
            self._fetcher = None

    # -- places
    @property
    def data_dir(self) -> Path:
        """The data dir (readable paths live in ``<data dir>/data``)."""
        return self.settings.data_dir

    @property
    def store_dir(self) -> Path:
        """The store folder."""
        return self.settings.store_path

    @property
    def store(self) -> "Store":
        """The store (created on first use)."""
        if self._store is None:
            from .store import Store

            self._store = Store(self.store_dir)
        return self._store

    @property
    def registry(self) -> "Registry":
        """Installed repositories and the dataset index."""
        if self._registry is None:
            from .repository import Registry

            self._registry = Registry(self)
        return self._registry

    def fetcher(self) -> "Fetcher":
        """The transport, configured from the settings (one HTTP session)."""
        if self._fetcher is None:
            from .fetch import Fetcher

            settings = self.settings
            self._fetcher = Fetcher(
                mirrors=settings.mirrors,
                connect_timeout=settings.connect_timeout,
                read_timeout=settings.read_timeout,
                retries=settings.retries,
                offline=settings.offline,
                progress=self.progress,
            )
        return self._fetcher

    # -- datasets
    def dataset(self, dataset_id: str) -> "DatasetDefinition":
        """The definition of a dataset id or alias."""
        return self.registry.find(dataset_id)

    def dataset_for_data_id(self, data_id: str) -> "DatasetDefinition | None":
        """The dataset that owns a data config id (``com.lecun.mnist.train@image``)."""
        from .errors import DatasetNotFoundError

        base = data_id.split("@")[0]
        parts = base.split(".")
        known = {entry.id for entry in self.registry.index()}
        for end in range(len(parts), 0, -1):
            candidate = ".".join(parts[:end])
            if candidate in known:
                return self.dataset(candidate)
        try:
            return self.dataset(base)
        except DatasetNotFoundError:
            return None

    def prepare_data_id(self, data_id: str) -> None:
        """Makes the data of a data config id present (what ``Base.prepare`` calls)."""
        definition = self.dataset_for_data_id(data_id)
        if definition is not None:
            self.prepare(definition)

    def prepare(self, definition: "DatasetDefinition", **options):
        """Runs a dataset's resources through the store; returns the pipeline's result."""
        from .pipeline import Pipeline

        return Pipeline(self).run(definition, **options)


#: names the original datamaestro's ``datamaestro.context`` module exported, for the published plugins
_COMPAT_NAMES = {
    "DatafolderPath": "datamaestro.datafolders",
    "ResolvablePath": "datamaestro.datafolders",
    "Repository": "datamaestro.repository",
    "BaseRepository": "datamaestro.repository",
    "get_dataset": "datamaestro.api",
    "prepare_dataset": "datamaestro.api",
    "find_dataset": "datamaestro.api",
}


def __getattr__(name: str):
    # resolved lazily: those modules import this one
    module = _COMPAT_NAMES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
