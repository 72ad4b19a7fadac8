"""The Context: settings, repositories, store and fetcher of one session.

The session in scope is the innermost ``with Context(...):`` (see
:mod:`datamaestro.session`), else a default context made from the
environment on first use. The API passes its context explicitly; model
objects (configs, definitions) read the session in scope.

The lock in scope is the project's ``datamaestro.lock`` (next to the nearest
``pyproject.toml``) or the one given to the context; datasets it pins are
prepared exactly as pinned, and their configs point at the immutable view of
the pinned manifest.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from . import session
from .lazy import lazy_getattr
from .settings import Settings, load_settings

if TYPE_CHECKING:
    from .definition import DatasetDefinition, Location, Request
    from .fetch import Fetcher
    from .lock.model import Lock, LockedDataset
    from .pipeline import Pipeline, PipelineResult
    from .registry import Registry
    from .store import Store

logger = logging.getLogger(__name__)


#: the hint of a value that names no dataset
_NAMING_HINT = 'e.g. prepare_dataset("com.lecun.mnist")'

#: ``Context.request_of(..., locked=READ_LOCK)``: the lock in scope gives the entry
READ_LOCK: Any = object()

#: the original datamaestro's attributes of ``Context``, kept in :mod:`datamaestro.compat.context` and read there on first use
_FACE_NAMES = frozenset(
    {
        "keep_downloads", "traceback", "INSTANCE", "MAINDIR", "frompath", "instance", "set_instance", "user_settings",
        "datapath", "cachepath", "running_test", "repositorymap", "repositories", "repository", "datasets", "downloadURL", "ask",
    }
)


def _face_attribute(name: str, owner: type, obj) -> Any:
    """A 1.x attribute of ``Context`` (see :data:`_FACE_NAMES`), bound to ``obj`` (None: to the class)."""
    if name not in _FACE_NAMES:
        raise AttributeError(f"{owner.__name__!r} object has no attribute {name!r}")
    from .lazy import resolve

    # a 1.x face: loaded through the lazy loader's table of strings on first use, so that the core never imports it
    attribute = vars(resolve("datamaestro.compat.context:ContextFace"))[name]
    getter = getattr(attribute, "__get__", None)
    return getter(obj, owner) if getter is not None else attribute


class _WithFace(type):
    """The metaclass of ``Context``: its 1.x class attributes (``Context.INSTANCE``, ``Context.instance()``) come from the face."""

    def __getattr__(cls, name: str) -> Any:
        return _face_attribute(name, cls, None)


class Context(metaclass=_WithFace):
    """Where datamaestro reads its settings and keeps its data.

    :param settings: resolved settings (default: read from every source)
    :param project_dir: where to look for the project's ``pyproject.toml``
    :param overrides: ``Settings`` field values that beat every other source
        (what the command line sets), e.g. ``{"data_dir": Path("/data")}``
    :param progress: progress bars on (True), off (False) or when stderr is a terminal (None)
    :param lock: the lock file in scope; None: the project's
        ``datamaestro.lock`` when there is one; False: none

    Example::

        with Context(overrides={"data_dir": Path("/tmp/dm")}):
            ds = prepare_dataset("com.lecun.mnist")
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        project_dir: Path | None = None,
        overrides: dict[str, Any] | None = None,
        progress: bool | None = None,
        lock: Path | str | bool | None = None,
    ):
        if isinstance(settings, (str, Path)):
            # the original API: Context(data_dir)
            overrides, settings = {**(overrides or {}), "data_dir": Path(settings)}, None
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
        self._hosts = None
        self._remotes: list | None = None
        self._tokens: list = []
        self._lock_setting: Path | str | bool | None = lock
        #: (path, mtime, size) -> parsed lock, so that a rewritten file is read again
        self._lock_cache: tuple[tuple, "Lock"] | None = None
        self._fingerprints: dict[int, str] = {}
        #: id(definition) -> the lock entry last found to fit it (held, so that its id is never reused)
        self._fitting: dict[int, "LockedDataset"] = {}
        self._rooted: set[tuple] = set()

    def __getattr__(self, name: str) -> Any:
        # only for names not found otherwise: the original datamaestro's attributes (compat/context.py)
        if name.startswith("_"):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return _face_attribute(name, type(self), self)

    # -- the session in scope
    def __enter__(self) -> "Context":
        self._tokens.append(session.enter(self))
        return self

    def __exit__(self, *exc_info) -> None:
        session.leave(self._tokens.pop())
        if not self._tokens:
            self.close()

    @contextmanager
    def scope(self) -> Iterator["Context"]:
        """This context as the session in scope for a ``with`` block, without closing it afterwards.

        What the API wraps around the code of plugins, which may read the
        session back (``Context.instance()`` in a 1.x resource).
        """
        token = session.enter(self)
        try:
            yield self
        finally:
            session.leave(token)

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

            self._store = Store(self.store_dir, lease_ttl=self.settings.lease_ttl)
        return self._store

    @property
    def registry(self) -> "Registry":
        """Installed repositories and the dataset index."""
        if self._registry is None:
            from .registry import Registry

            self._registry = Registry(self.data_dir, self)
        return self._registry

    def fetcher(self) -> "Fetcher":
        """The transport, configured from the settings (one HTTP session)."""
        if self._fetcher is None:
            settings = self.settings
            self._fetcher = self._new_fetcher(
                mirrors=settings.mirrors,
                retries=settings.retries,
                progress=self.progress,
                connections=settings.connections,
                parallel_min_size=settings.parallel_min_size,
            )
        return self._fetcher

    def _new_fetcher(self, **options) -> "Fetcher":
        """A fetcher with the settings' timeouts and offline mode, and ``options``."""
        from .fetch import Fetcher

        settings = self.settings
        if self._hosts is None:
            from .fetch import HostHealth

            # a host found down is left out by every fetcher of the session
            self._hosts = HostHealth()
        return Fetcher(
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            timeout=settings.timeout,
            offline=settings.offline,
            hosts=self._hosts,
            **options,
        )

    def new_remote_fetcher(self) -> "Fetcher":
        """A new transport for taking objects from a remote (a peer store, a remote cache) over HTTP.

        No mirrors (a peer is already a copy), no progress bar (objects are
        many and small) and one retry: a peer that fails is left for the next
        one or the original URL.
        """
        return self._new_fetcher(retries=min(self.settings.retries, 1), progress=False)

    def remotes(self) -> list:
        """The remote caches of the settings (``[remotes.NAME]``), opened on first use.

        Offline, only folders are used: a remote over the network is left out
        (``--offline`` never touches the network).
        """
        if self._remotes is None:
            from .remotes import is_network, open_remote

            opened = []
            for name, spec in self.settings.remotes.items():
                if self.settings.offline and is_network(spec["url"]):
                    logger.info("remote %s (%s) left out: offline", name, spec["url"])
                    continue
                opened.append(open_remote(spec["url"], self.new_remote_fetcher, endpoint=spec.get("endpoint"), name=name, option=f"remote {name}:", timeouts=self._timeouts()))
                if spec.get("trusted_keys"):
                    # its records are used only when signed by one of these keys (remotes/signing.py)
                    from .remotes.signing import RecordTrust

                    opened[-1].record_trust = RecordTrust(opened[-1].label, spec["trusted_keys"])
            self._remotes = opened
        return self._remotes

    def pipeline(self, *, use_remotes: bool = True) -> "Pipeline":
        """A :class:`~datamaestro.pipeline.Pipeline` given this session's services: store, settings, transport, remote caches.

        :param use_remotes: ask the remote caches (False: what this store knows, nothing else)
        """
        from .pipeline import Pipeline

        return Pipeline(self.store, settings=self.settings, fetcher=self.fetcher, remotes=self.remotes() if use_remotes else [], requests=self.request_of, plugin_context=self)

    def remote(self, name_or_url: str):
        """The remote a setting names, or the one at a URL or folder (``store push`` takes either)."""
        from .remotes import open_remote

        spec = self.settings.remotes.get(name_or_url)
        if spec is not None:
            return open_remote(spec["url"], self.new_remote_fetcher, endpoint=spec.get("endpoint"), name=name_or_url, option=f"remote {name_or_url}:", timeouts=self._timeouts())
        if "://" not in name_or_url and not Path(name_or_url).expanduser().exists():
            from .errors import UsageError

            known = ", ".join(sorted(self.settings.remotes)) or "none"
            raise UsageError(f"no remote named {name_or_url!r} (remotes in the settings: {known})", hint="name a [remotes.NAME] of the settings, or give a URL (s3://bucket/prefix) or a folder")
        return open_remote(name_or_url, self.new_remote_fetcher, option="store push", timeouts=self._timeouts())

    def _timeouts(self) -> tuple[float, float]:
        """(connect, read) seconds of the settings, for the remotes."""
        return self.settings.connect_timeout, self.settings.read_timeout

    def readable_path(self, repository_id: str, dataset_id: str) -> Path:
        """A dataset's readable folder: ``<data dir>/data/<repository>/<id as path>``."""
        from .definition import readable_path

        return readable_path(self.data_dir, repository_id, dataset_id)

    def readable_folder(self, definition: "DatasetDefinition") -> Path:
        """A definition's readable folder; a definition in no repository goes under ``NO_REPOSITORY``."""
        return definition.readable_folder(self.data_dir, self.registry)

    # -- the lock in scope
    def _lock_candidate(self) -> tuple[Path | None, bool]:
        """(the lock file in scope or None, whether it was named explicitly); no file system call."""
        setting = self._lock_setting
        if setting is False:
            return None, False
        if setting is not None and setting is not True:
            return Path(setting), True
        if self.pyproject is None:
            return None, False
        from .lock.model import LOCK_NAME

        return self.pyproject.parent / LOCK_NAME, False

    @property
    def lock_path(self) -> Path | None:
        """The lock file in scope (see the ``lock`` parameter), or None."""
        path, explicit = self._lock_candidate()
        if path is None or explicit or path.is_file():
            return path
        return None

    def lockfile(self) -> "Lock | None":
        """The lock in scope, parsed (read again when the file changes), or None.

        One ``stat`` of the file per call: a warm prepare calls it once.

        :raises LockFileError: the file is malformed
        """
        path, explicit = self._lock_candidate()
        if path is None:
            return None
        try:
            st = path.stat()
            stamp = (str(path), st.st_mtime_ns, st.st_size)
        except OSError:
            if not explicit:
                return None  # the project has no lock file
            stamp = (str(path), None, None)  # read_lock says what is wrong with it
        if self._lock_cache is None or self._lock_cache[0] != stamp:
            from .lock.fileformat import read_lock

            lock = read_lock(path)
            lock.path = path
            self._lock_cache = (stamp, lock)
        return self._lock_cache[1]

    @contextmanager
    def using_lock(self, lock: Path | str | bool | None) -> Iterator["Context"]:
        """Puts another lock in scope (a path, or False for none; None: unchanged) for a ``with`` block."""
        previous = self._lock_setting
        if lock is not None:
            self._lock_setting = lock
        try:
            yield self
        finally:
            self._lock_setting = previous

    def without_lock(self):
        """No lock in scope for a ``with`` block (what ``lock`` resolves with)."""
        return self.using_lock(False)

    def locked_dataset(self, definition: "DatasetDefinition", lock: "Lock | None | bool" = True, *, entry_id: str | None = None) -> "LockedDataset | None":
        """The entry of the lock in scope for a dataset (None when none pins it).

        The lock file becomes a gc root of the store (with its manifests)
        on first use, so that the views configs point at stay alive.

        :param lock: the lock in scope, when the caller has read it already
            (True: read it)
        :param entry_id: the lock entry of a family's variant
            (``id[axis=value]``, see :meth:`canonical_id`); the family's own
            entry when the variant has none
        :raises LockFileError: the lock is malformed, or was written for
            another version of the definition
        """
        from .lock.fingerprint import checked_entry

        if lock is True:
            lock = self.lockfile()
        if lock is None or lock is False:
            return None
        entry = checked_entry(lock, definition, entry_id, fingerprints=self._fingerprints, fitting=self._fitting)
        if entry is not None:
            self._root(lock)
        return entry

    def _root(self, lock: "Lock") -> None:
        """Makes a lock file (with its manifests) a gc root of the store, once per content."""
        stamp = (str(lock.path), tuple(lock.manifests()))
        if stamp not in self._rooted:
            self.store.register_lock_root(lock.path, lock.manifests())
            self._rooted.add(stamp)

    def locate(self, definition: "DatasetDefinition", locked: "LockedDataset | None | bool" = True, *, entry_id: str | None = None) -> "Location":
        """Where a dataset lives: its readable folder, and the pinned view when a lock pins it.

        Another project on the same store may swing the dataset's readable
        folder to other bytes; the view of the pinned manifest never changes,
        so configs point at it.

        :param locked: the dataset's lock entry when the caller has it
            (None: not pinned; True: read the lock in scope)
        """
        if locked is True:
            # the entry as the lock in scope has it, its fingerprint not checked: a stale entry still says where its view is
            from .lock.fingerprint import entry_key

            lock = self.lockfile()
            key = entry_key(lock, definition.id, entry_id) if lock is not None else None
            locked = lock.datasets[key] if key is not None else None
        return self.request_of(definition, entry_id=entry_id, locked=locked).location

    def _location(self, definition: "DatasetDefinition", locked: "LockedDataset | None") -> "Location":
        """A dataset's readable folder, and the view its lock entry pins (configs point there)."""
        from .definition import Location

        return Location(self.readable_folder(definition), self.store.views.path_of(locked.manifest) if locked else None)

    # -- requests: which definition, which variant, which lock entry, where it lives
    def request(self, dataset, *, variant: dict | None = None) -> Request:
        """The :class:`Request` a caller means, built in one pass: definition, variant, lock entry (checked), location.

        ``dataset`` is what the original datamaestro's ``prepare_dataset``
        accepted (see :meth:`resolve`). The id goes down once: resolved by
        :func:`datamaestro.variants.select_dataset`, its entry checked by
        :func:`datamaestro.lock.fingerprint.checked_entry`; nothing after
        this derives any of the request's fields again.

        :raises VariantError: a bad selector or variant (see :meth:`resolve`)
        :raises LockFileError: the lock in scope is malformed, or its entry
            does not fit the definition
        """
        from .definition import Location, Request
        from .lock.fingerprint import checked_entry

        definition, values, entry_id = self._select(dataset, variant)
        readable = definition.readable_folder(self.data_dir, self.registry)
        lock = self.lockfile()
        locked = checked_entry(lock, definition, entry_id, fingerprints=self._fingerprints, fitting=self._fitting) if lock is not None else None
        if locked is not None:
            self._root(lock)
        return Request(definition, values, entry_id, locked, Location(readable, self.store.views.path_of(locked.manifest) if locked else None))

    def request_of(
        self,
        definition: "DatasetDefinition",
        *,
        variant: Mapping[str, Any] | None = None,
        entry_id: str | None = None,
        locked: "LockedDataset | None | Any" = READ_LOCK,
    ) -> Request:
        """The :class:`Request` of a definition as named (no selector resolved: a family without ``variant`` is its own entry).

        :param variant: a family's resolved axis values (its entry is then ``id[axis=value]``)
        :param entry_id: the lock entry, when the caller knows it (a variant's data id)
        :param locked: the lock entry when the caller has it (None: unpinned);
            by default the lock in scope's, checked against the definition
        """
        from .definition import Request

        if entry_id is None:
            entry_id = definition.id + definition.variants.format_selector(variant) if variant is not None and definition.variants is not None else definition.id
        if locked is READ_LOCK:
            locked = self.locked_dataset(definition, entry_id=entry_id)
        return Request(definition, dict(variant or {}), entry_id, locked, self._location(definition, locked))

    def resolve(self, dataset, *, variant: dict | None = None) -> tuple["DatasetDefinition", dict]:
        """The definition a caller means, and the variant's axis values (defaults filled in for a family).

        ``dataset`` is what the original datamaestro's ``prepare_dataset``
        accepted: an id (``"id[axis=value]"`` selects a variant), a definition,
        a ``@dataset`` class or function, a generated dataset, or a data config
        (its dataset is found from its id).

        :raises VariantError: a selector and ``variant`` both given, a variant
            for a dataset without variants, an unknown axis or value
        """
        definition, values, _ = self._select(dataset, variant)
        return definition, values

    def _select(self, dataset, variant: dict | None) -> tuple["DatasetDefinition", dict, str]:
        """(definition, axis values, lock entry id) of what a caller names (see :meth:`resolve`), by :func:`datamaestro.variants.select_dataset`."""
        from .variants import select_dataset

        name, find, of_data_config = dataset, self.dataset, False
        if not isinstance(dataset, str):
            definition = self._definition_of(dataset)
            find = (lambda _: definition) if definition is not None else self._owner_finder(dataset)
            data_id = data_id_of(dataset)
            if data_id is not None:
                # a data config names its dataset (and a family's variant) in its id: family.id[axis=value]@repo
                name, of_data_config = data_id, True
            elif definition is not None:
                name = definition.id
            else:
                from .errors import UsageError

                raise UsageError(f"{dataset!r} is not a dataset id, definition or data config", hint=_NAMING_HINT)
        # the id goes down once, whatever named it
        return select_dataset(name, find, variant=variant, of_data_config=of_data_config)

    def _owner_finder(self, config):
        """The finder of the dataset that owns a data config from its id (see :meth:`dataset_for_data_id`), raising UsageError when none does."""

        def owner(data_id: str) -> "DatasetDefinition":
            definition = self.dataset_for_data_id(data_id)
            if definition is None:
                from .errors import UsageError

                raise UsageError(f"{config!r} is not a dataset id, definition or data config", hint=_NAMING_HINT)
            return definition

        return owner

    def _definition_of(self, dataset) -> "DatasetDefinition | None":
        """The definition behind a definition, a ``@dataset`` target or a generated dataset; None otherwise (a data config: see :meth:`_select`)."""
        from .definition import DatasetDefinition

        if isinstance(dataset, DatasetDefinition):
            return dataset
        definition = getattr(dataset, "__dataset__", None)
        if isinstance(definition, DatasetDefinition):
            return definition
        as_definition = getattr(dataset, "as_definition", None)
        if callable(as_definition):
            return as_definition()
        return None

    # -- datasets
    def dataset(self, dataset_id: str) -> "DatasetDefinition":
        """The definition of a dataset id or alias; a variant selector (``id[axis=value]``) is ignored, as in 1.16."""
        from .variants import split_id_selector

        return self.registry.find(split_id_selector(dataset_id)[0])

    def canonical_id(self, dataset_id: str) -> str:
        """The id a project and its lock know a dataset by: the canonical id, plus a family's canonical selector when one is given.

        ``family[b=2, a=1]`` -> ``org.family[a=1,b=2]``; an alias -> its id.

        :raises VariantError: a selector the family refuses, or one for a dataset without variants
        """
        from .variants import split_id_selector

        definition = self.dataset(dataset_id)
        selector = split_id_selector(dataset_id)[1]
        if not selector:
            return definition.id
        if definition.variants is None:
            from .errors import VariantError

            raise VariantError(f"dataset {definition.id!r} does not declare variants but selector {selector!r} was supplied", hint=f"use {definition.id}")
        variants = definition.variants
        return definition.id + variants.format_selector(variants.resolve(**variants.parse_selector(selector)))

    def dataset_for_data_id(self, data_id: str) -> "DatasetDefinition | None":
        """The dataset that owns a data config id (``com.lecun.mnist.train@image``)."""
        from .errors import DatasetNotFoundError

        base, at, repository = data_id.partition("@")
        # a variant's data id: ``family.id[axis=value]@repo`` or ``family.id[axis=value].train@repo``
        selector_start = base.find("[")
        if selector_start >= 0:
            base = base[:selector_start]
        parts = base.split(".")
        known = {entry.id for entry in self.registry.index()}
        for end in range(len(parts), 0, -1):
            candidate = ".".join(parts[:end])
            if candidate in known:
                try:
                    # with its repository: two repositories may define one id
                    return self.dataset(candidate + at + repository)
                except DatasetNotFoundError:
                    return self.dataset(candidate)
        try:
            return self.dataset(base)
        except DatasetNotFoundError:
            return None

    def prepare_data_id(self, data_id: str) -> None:
        """Makes the data of a data config id present (what ``Base.prepare`` calls)."""
        definition = self.dataset_for_data_id(data_id)
        if definition is not None:
            self.prepare(definition, entry_id=_variant_entry(data_id))

    def is_prepared(self, definition: "DatasetDefinition", *, entry_id: str | None = None) -> bool:
        """Whether a dataset is present and published as the lock in scope pins it (or as last prepared).

        What experimaestro asks before it runs a preparation (in process, or
        as a job): answered from the store's action records and a few
        ``stat`` calls, with no rehash, no network and nothing written.

        :raises LockFileError: the lock in scope is malformed, or was written
            for another version of the definition
        """
        return self.prepared_manifest(definition, entry_id=entry_id) is not None

    def prepared_manifest(self, definition: "DatasetDefinition", *, entry_id: str | None = None) -> str | None:
        """The manifest of a dataset when :meth:`is_prepared`, else None (``entry_id``: a variant's lock entry)."""
        return self.pipeline(use_remotes=False).prepared_manifest(self.request_of(definition, entry_id=entry_id))

    def resource_state(self, resource) -> str:
        """``"none"``, ``"partial"`` or ``"complete"``: a resource's state in the store, as the lock in scope pins it (read-only)."""
        from .pipeline import COMPLETE, NONE, PARTIAL

        if resource.definition is None:
            return NONE
        pipeline = self.pipeline(use_remotes=False)
        pipeline.pins = self.request_of(resource.definition).pins
        state = pipeline.state(resource)
        return state if state in (COMPLETE, PARTIAL) else NONE

    def is_prepared_data_id(self, data_id: str) -> bool:
        """Whether the data of a data config id is prepared (what ``Base.is_prepared`` asks).

        A config no known dataset owns (an ad-hoc one) has nothing to prepare.
        """
        definition = self.dataset_for_data_id(data_id)
        return True if definition is None else self.is_prepared(definition, entry_id=_variant_entry(data_id))

    def prepare(
        self,
        definition: "DatasetDefinition | Request",
        *,
        locked: "LockedDataset | None" = None,
        verify: str = "trust",
        entry_id: str | None = None,
    ) -> "PipelineResult":
        """Runs a dataset's resources through the store; returns the pipeline's result.

        :param definition: the dataset's :class:`Request` (see :meth:`request`), or its definition
        :param locked: the dataset's lock entry (default: the lock in scope's); only with a definition
        :param verify: ``"trust"``: an object present in the store is what
            its name says (objects are immutable); ``"full"``: rehash every
            object of the dataset
        :param entry_id: a family variant's lock entry (``id[axis=value]``); only with a definition
        :raises UsageError: an unknown ``verify`` mode
        """
        if verify not in ("trust", "full"):
            from .errors import UsageError

            raise UsageError(f"verify must be 'trust' or 'full', not {verify!r}")
        from .definition import Request

        if isinstance(definition, Request):
            request = definition
        else:
            request = self.request_of(definition, entry_id=entry_id, locked=READ_LOCK if locked is None else locked)
        result = self.pipeline().run(request)
        if verify == "full":
            from .pipeline import rehash_outputs

            rehash_outputs(self.store, request.definition.id, result.outputs)
        return result


def data_id_of(value) -> str | None:
    """The id of a data config (None for anything else, or a config without one)."""
    from .data import Base

    return value._data_id() if isinstance(value, Base) else None


def _variant_entry(data_id: str) -> str | None:
    """The lock entry a variant's data id belongs to: ``family[a=1].train@repo`` -> ``family[a=1]``; None without a selector."""
    base = data_id.partition("@")[0]
    end = base.find("]")
    return base[: end + 1] if "[" in base and end > 0 else None


#: names the original datamaestro's ``datamaestro.context`` module exported, for the published plugins
#: (resolved lazily: those modules import this one; ``Request`` is defined beside ``Location``, below the pipeline that takes it, and the warm path needs no definition)
__getattr__ = lazy_getattr(
    __name__,
    {
        "Request": "datamaestro.definition:Request",
        "NO_REPOSITORY": "datamaestro.definition:NO_REPOSITORY",
        "DatafolderPath": "datamaestro.datafolders:DatafolderPath",
        "ResolvablePath": "datamaestro.datafolders:ResolvablePath",
        "Repository": "datamaestro.repository:Repository",
        "BaseRepository": "datamaestro.repository:BaseRepository",
        "get_dataset": "datamaestro.api:get_dataset",
        "prepare_dataset": "datamaestro.api:prepare_dataset",
        "find_dataset": "datamaestro.api:find_dataset",
        "_resolve_dataset_id": "datamaestro.compat.generated:resolve_dataset_id",
    },
)
