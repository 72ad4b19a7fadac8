"""The thin top-level API: find, describe and prepare datasets."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from . import session
from .context import Context

if TYPE_CHECKING:
    from pathlib import Path

    from .project.resolve import LockReport
    from .project.sync import ExportReport, SyncReport
    from .remotes.push import PushReport
    from .pipeline import PipelineResult
    from .warm import WarmAnswer


def _context(context: Context | None) -> Context:
    """The context to use: the given one, else the session in scope."""
    return session.current() if context is None else context


def _scoped(function):
    """Runs an API function with its context as the session in scope.

    The context is passed explicitly down the main path; the scope is for
    plugin code that reads the session back (a 1.x resource's
    ``self.context``, a config's ``dataset_information()``).
    """

    @functools.wraps(function)
    def run(*args, context: Context | None = None, **kwargs):
        ctx = _context(context)
        with ctx.scope():
            return function(*args, context=ctx, **kwargs)

    return run


@_scoped
def get_dataset(dataset_id, *, variant: dict | None = None, context: Context | None = None):
    """The data config of a dataset, without downloading anything.

    Paths in the config are the dataset's readable paths; they exist once
    the dataset is prepared.

    :param dataset_id: a dataset id or alias, e.g. ``"com.lecun.mnist"``;
        a family's variant is selected with ``"id[axis=value,...]"``; a
        definition (or the ``@dataset`` class or function) is accepted too
    :param variant: a family's axis values, instead of a selector in the id
    :raises DatasetNotFoundError: unknown id (with the closest ids)
    :raises VariantError: a bad selector or variant (also a ``ValueError``)
    """
    return _context(context).request(dataset_id, variant=variant).config()


def find_variant(dataset_id: str, context: Context):
    """The definition of ``id`` or ``id[axis=value,...]`` and the selected variant's values."""
    return context.resolve(dataset_id)


def resolve_dataset(dataset, context: Context, *, variant: dict | None = None):
    """The definition a caller means, and the variant's axis values (see :meth:`Context.resolve`)."""
    return context.resolve(dataset, variant=variant)


@_scoped
def find_dataset(dataset_id, *, context: Context | None = None):
    """The definition of a dataset id or alias (the original datamaestro's name); a selector is ignored."""
    return _context(context).resolve(dataset_id)[0]


@_scoped
def prepare_dataset(
    dataset_id,
    *,
    context: Context | None = None,
    lock: "Path | str | None" = None,
    verify: str = "trust",
    download: bool | None = None,
    variant: dict | None = None,
):
    """Makes a dataset present (downloading what the store lacks) and returns its config.

    When a lock is in scope (the project's ``datamaestro.lock``, or ``lock``)
    and pins the dataset, it is prepared exactly as pinned: downloads and
    outputs are checked against the pins, and the config's paths point at
    the pinned, immutable view (another project on the same store never
    changes them).

    Example::

        ds = prepare_dataset("com.lecun.mnist")
        ds.train.images.data().shape   # (60000, 28, 28)

    :param dataset_id: a dataset id or alias; or, as the original
        datamaestro accepted, a definition, a ``@dataset`` class or
        function, or a data config (then that same config is returned,
        its dataset prepared)
    :param variant: a family's axis values, instead of a selector in the id
    :param lock: a lock file to use instead of the project's
    :param verify: ``"trust"`` (objects present in the store are what their
        names say: no rehash) or ``"full"`` (rehash the dataset's objects)
    :param download: prepare now (True) or not (False); by default now,
        unless an experimaestro experiment is running: then the config is
        returned as is and experimaestro prepares it (``Base.prepare``)
        where and when a task that uses it runs, or in a job of its own
        once you call ``.submit(launcher=...)`` on it
    :raises IntegrityError: the data differs from the lock's pins
    :raises VariantError: a bad selector or variant (also a ``ValueError``)
    :raises DatamaestroError: any failure, with a message saying what to do
    """
    from .context import data_id_of

    ctx = _context(context)
    with ctx.using_lock(lock):
        request = ctx.request(dataset_id, variant=variant)
        if download is None:
            # in an experiment, experimaestro prepares it (Base.prepare) where the task runs
            download = not _in_experiment()
        if download:
            ctx.prepare(request, verify=verify)
        if data_id_of(dataset_id) is not None:
            return dataset_id
        return request.config()


def warm_prepare(dataset_id: str, *, context: Context | None = None) -> "WarmAnswer":
    """The warm answer for a dataset: its config JSON from a still-valid warm record (None when a full prepare is needed), and the stamps taken.

    Imports no definition (see :mod:`datamaestro.warm`): what a warm
    ``datamaestro prepare ID`` costs. A miss is handed to
    :func:`prepare_dataset_json` (``warm=``), which then reads nothing again.
    """
    from . import warm

    ctx = _context(context)
    with ctx.scope():
        return warm.answer(ctx, dataset_id)


@_scoped
def prepare_dataset_json(
    dataset_id: str,
    *,
    context: Context | None = None,
    lock: "Path | str | None" = None,
    verify: str = "trust",
    warm: "WarmAnswer | None" = None,
    encoder: str = "json",
):
    """:func:`prepare_dataset`, returning the config in a printed form (what ``datamaestro prepare`` prints).

    A dataset prepared before is answered from its warm record (see
    :mod:`datamaestro.warm`) when nothing changed since: no definition,
    experimaestro nor numpy is imported. Otherwise the full prepare runs
    from one :class:`~datamaestro.definition.Request` and records what the
    next call needs.

    :param warm: the warm answer :func:`warm_prepare` gave for this id, in this
        context and with this lock (a miss: the record is not read again)
    :param encoder: ``"json"`` (plain values: a dict) or ``"xpm"``
        (experimaestro's serialized form: a list; no warm record)
    :raises UsageError: an unknown encoder
    :raises DatamaestroError: as :func:`prepare_dataset`
    """
    from . import warm as warm_records
    from .commands.xpm import ENCODERS

    if encoder not in ENCODERS:
        from .errors import UsageError

        raise UsageError(f"unknown encoder {encoder!r}", hint="use --encoder json or --encoder xpm")
    recorded = verify == "trust" and encoder == "json"
    ctx = _context(context)
    with ctx.using_lock(lock):
        if recorded and warm is None:
            warm = warm_records.answer(ctx, dataset_id)
        if recorded and warm.config is not None:
            return warm.config
        request = ctx.request(dataset_id)
        result = ctx.prepare(request, verify=verify)
        config = ENCODERS[encoder](request.config())
        if recorded:
            description = request.definition.describe(request.location.path) if not request.variant else None
            # valid for the stamps taken before the prepare: a plugin edited meanwhile leaves a stale record
            record = warm_records.WarmRecord.of(dataset_id, request, result, config, warm.stamps, description)
            if record is not None:
                record.write(ctx)
        return config


def _in_experiment() -> bool:
    """Whether an experimaestro experiment is running in this process."""
    try:
        from experimaestro.scheduler.experiment import experiment
    except ImportError:
        return False
    return getattr(experiment, "CURRENT", None) is not None


@_scoped
def prepare_definition(dataset_id: str, *, context: Context | None = None, lock: "Path | str | None" = None, verify: str = "trust") -> "PipelineResult":
    """Prepares a dataset and returns what the pipeline did (manifest, produced resources)."""
    ctx = _context(context)
    with ctx.using_lock(lock):
        return ctx.prepare(ctx.dataset(dataset_id), verify=verify)


# -- the project's datasets and its lock


@_scoped
def add_datasets(dataset_ids: list[str], *, context: Context | None = None) -> list[str]:
    """Adds datasets to the project's ``[tool.datamaestro] datasets``; returns the canonical ids added.

    :raises DatasetNotFoundError: an unknown id (with the closest ids)
    :raises UsageError: not in a project (no ``pyproject.toml`` upwards)
    """
    from .project.datasets import add_datasets as add

    return add(_context(context), dataset_ids)


@_scoped
def remove_datasets(dataset_ids: list[str], *, context: Context | None = None) -> list[str]:
    """Removes datasets from the project's list; returns the entries removed."""
    from .project.datasets import remove_datasets as remove

    return remove(_context(context), dataset_ids)


@_scoped
def lock_project(*, upgrade: "bool | list[str]" = False, context: Context | None = None) -> "LockReport":
    """Writes the project's ``datamaestro.lock`` (see :func:`datamaestro.project.resolve.lock_project`)."""
    from .project.resolve import lock_project as lock

    return lock(_context(context), upgrade=upgrade)


@_scoped
def check_lock(*, context: Context | None = None) -> list[str]:
    """Why the project's lock is out of date; empty when it is up to date."""
    from .project.resolve import stale_reasons

    return stale_reasons(_context(context))


@_scoped
def sync_project(
    *,
    locked: bool = False,
    frozen: bool = False,
    peers: "list[str] | tuple" = (),
    jobs: int | None = None,
    copy: bool = False,
    verify: str = "trust",
    context: Context | None = None,
) -> "SyncReport":
    """Makes the project's locked datasets present and verified (see :func:`datamaestro.project.sync.sync_project`).

    :param copy: copy the objects of store folders rather than hard-link them
    """
    from .project.sync import sync_project as sync

    return sync(_context(context), locked=locked, frozen=frozen, peers=peers, jobs=jobs, copy=copy, verify=verify)


@_scoped
def export_lock(lock_path: "Path | str", folder: "Path | str", *, jobs: int | None = None, context: Context | None = None) -> "ExportReport":
    """Copies the objects a lock needs into a folder laid out as a store (for ``sync --from``)."""
    from pathlib import Path

    from .project.sync import export_lock as export

    return export(_context(context), Path(lock_path), Path(folder), jobs=jobs)


@_scoped
def push_datasets(
    remote: str,
    dataset_ids: "list[str] | tuple" = (),
    *,
    lock: bool = False,
    jobs: int | None = None,
    sign: "Path | str | None" = None,
    context: Context | None = None,
) -> "PushReport":
    """Pushes the objects and action records of datasets (or of the project's lock) to a remote cache (see :mod:`datamaestro.commands.push`).

    :param sign: a secret key file that signs the action records (``store key generate``; default: the remote's ``signing_key``)
    """
    from pathlib import Path

    from .commands.push import push

    return push(_context(context), remote, list(dataset_ids), use_lock=lock, jobs=jobs, sign=None if sign is None else Path(sign))


def config_to_json(config) -> dict:
    """A data config as plain JSON (see :func:`datamaestro.commands.xpm.config_to_json`)."""
    from .commands.xpm import config_to_json as encode

    return encode(config)


@_scoped
def describe_dataset(dataset_id: str, *, context: Context | None = None) -> dict:
    """Everything ``info`` shows of a dataset: metadata, resources and their state.

    A dataset prepared by ``datamaestro prepare`` is described from its warm
    record (no definition imported) while the record is valid.
    """
    from . import warm

    ctx = _context(context)
    described = warm.warm_description(ctx, dataset_id)
    if described is None:
        from .variants import split_id_selector

        # a family without a selector is described as a family (a required axis is not asked for)
        definition = ctx.resolve(dataset_id)[0] if split_id_selector(dataset_id)[1] else ctx.dataset(dataset_id)
        # the states of this store only: info never contacts a remote cache (it may be slow, or refuse)
        described = definition.describe(ctx.locate(definition).path, states=ctx.pipeline(use_remotes=False))
    fetcher = ctx.fetcher()
    for resource in described["resources"]:
        # what the [mirrors] setting makes of each URL, tried before it
        resource["mirrors"] = {url: fetcher.mirrors_of(url) for url in resource["urls"]}
    described["remotes"] = describe_remotes(ctx)
    return described


def describe_remotes(context: Context | None = None) -> list[dict]:
    """The remote caches of the settings: name, URL, and how their action records are trusted (``trusted_keys``)."""
    from .remotes.signing import describe_trust

    ctx = _context(context)
    return [{"name": name, "url": spec["url"], "records": describe_trust(spec)} for name, spec in ctx.settings.remotes.items()]


@_scoped
def search_datasets(terms: list[str], *, context: Context | None = None):
    """Index entries matching every search term (see :mod:`datamaestro.search`)."""
    from .search import search

    return search(_context(context).registry.index(), terms)


@_scoped
def search_hint(terms: list[str], *, context: Context | None = None) -> str | None:
    """What to try after a search that matched nothing (close tags, tasks, repositories), or None."""
    from .search import no_match_hint

    return no_match_hint(_context(context).registry.index(), terms)


@_scoped
def list_repositories(*, context: Context | None = None):
    """The installed repositories."""
    return _context(context).registry.repository_entries()


# -- data folders, orphans, scaffolding, audits (implemented in datamaestro.commands)


def config_to_xpm(config) -> list:
    """experimaestro's serialized form of a config (``prepare --encoder xpm``)."""
    from .commands.xpm import config_to_xpm as encode

    return encode(config)


@_scoped
def list_datafolders(*, context: Context | None = None) -> list[dict]:
    """Data folders set, and those the installed datasets ask for."""
    from .commands.datafolders import list_datafolders as folders

    return folders(_context(context))


@_scoped
def set_datafolder(folder_id: str, path, *, context: Context | None = None):
    """Records where a data folder is (user settings file); returns the file."""
    from .commands.datafolders import set_datafolder as record

    return record(folder_id, path, _context(context))


@_scoped
def remove_dataset(dataset_id: str, *, dry_run: bool = False, context: Context | None = None):
    """Removes a dataset's readable folder and frees what nothing else keeps (see :func:`datamaestro.commands.remove.remove_dataset`)."""
    from .commands.remove import remove_dataset as remove

    return remove(dataset_id, _context(context), dry_run=dry_run)


@_scoped
def why_kept(target: str, *, context: Context | None = None):
    """The roots keeping a digest or a dataset's data alive (see :func:`datamaestro.commands.remove.why_kept`)."""
    from .commands.remove import why_kept as why

    return why(target, _context(context))


@_scoped
def accept_agreement(agreement_id: str, *, context: Context | None = None):
    """Records that the user accepts a user agreement (user settings file); returns that file.

    :raises UsageError: no installed dataset asks for this agreement
    """
    from .commands.agreements import accept_agreement as accept

    return accept(agreement_id, _context(context))


def trust_project(directory: Path | None = None) -> tuple[Path, Path, list[str]]:
    """Trusts the project of ``directory`` (default: the current folder) as its file is now: ``datamaestro trust``.

    Records the path and blake3 digest of its ``pyproject.toml`` in the user
    settings file, so that the settings of its ``[tool.datamaestro]`` that
    say where bytes come from or go (``remotes``, ``mirrors``, ``store``,
    ``data``, ``agreements``) are used; a change of the file needs a new trust.

    :returns: the project file, the user settings file, the trusted settings the project sets
    :raises UsageError: no ``pyproject.toml`` in the folder or above
    """
    from pathlib import Path

    from .errors import UsageError
    from .settings import TRUST_KEYS, find_pyproject, project_table, trust_project as record

    pyproject = find_pyproject(directory)
    if pyproject is None:
        raise UsageError(f"no pyproject.toml in {directory or Path.cwd()} or above: no project to trust")
    table = project_table(pyproject)
    settings_file, _ = record(pyproject)
    return pyproject, settings_file, [key for key in TRUST_KEYS if key in table]


@_scoped
def find_orphans(*, context: Context | None = None, sizes: bool = False):
    """Folders of ``<data dir>/data`` no installed dataset claims."""
    from .commands.orphans import find_orphans as orphans

    return orphans(_context(context), sizes=sizes)


@_scoped
def create_definition(repository: str, dataset_id: str, *, context: Context | None = None):
    """Writes a class-style definition to fill in; returns its path."""
    from .commands.scaffold import create_definition as create

    return create(repository, dataset_id, _context(context))


@_scoped
def check_repositories(namespaces: list[str], *, context: Context | None = None):
    """Checks repositories: modules import, ids unique, configs build."""
    from .commands.audit import audit_repositories as check

    return check(namespaces, _context(context))
