"""``datamaestro lock``: from the project's dataset list to pins.

Each listed dataset (and each dataset it references) is locked once: its
entry is kept as long as its definition's :func:`fingerprint` is the same,
so ``lock`` is cheap and stable; a new or changed dataset is prepared
(through the store: nothing already there is downloaded again) and its
outputs become its pins. ``upgrade`` re-resolves: every URL is downloaded
again, whatever the store holds, so that the lock follows what the servers
serve now.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from ..codecache import read_entry, write_entry
from ..errors import LockFileError, UsageError
from ..store.digests import canonical_json, digest_bytes
from ..lock.fileformat import read_lock, write_lock
from ..lock.fingerprint import FINGERPRINT_FORMAT, entry_problem, fingerprint  # noqa: F401 (part of this module's API)
from ..lock.model import FORMAT_VERSION, Lock, LockedDataset, LockedResource
from .datasets import lock_file, requested_ids

if TYPE_CHECKING:
    from ..context import Context
    from ..definition import DatasetDefinition

def referenced(definition: "DatasetDefinition") -> list["DatasetDefinition"]:
    """The datasets a definition references (``reference`` and ``links`` resources)."""
    from ..download.references import reference

    return [resource.target_definition for resource in definition.ordered_resources() if isinstance(resource, reference)]


def closure(context: "Context", dataset_ids: Iterable[str]) -> dict[str, "DatasetDefinition"]:
    """The definitions of some datasets and of every dataset they reference, by canonical id."""
    found: dict[str, DatasetDefinition] = {}
    # a family's variant (``id[axis=value]``) is an entry of its own
    pending = [(context.canonical_id(dataset_id), context.dataset(dataset_id)) for dataset_id in dataset_ids]
    while pending:
        entry_id, definition = pending.pop(0)
        if entry_id not in found:
            found[entry_id] = definition
            pending.extend((other.id, other) for other in referenced(definition))
    return found


def resolve_dataset(context: "Context", definition: "DatasetDefinition", *, refresh: bool = False, entry_id: str | None = None) -> LockedDataset:
    """Prepares a dataset without pins and returns its lock entry.

    :param refresh: download every URL again (``lock --upgrade``)
    """
    pipeline = context.pipeline()
    with context.without_lock():
        result = pipeline.run(context.request_of(definition, locked=None), refresh=refresh)
    resources = []
    for resource in definition.ordered_resources():
        _, output = pipeline.lookup(resource)
        # a transient input never produced on this store (its dependents came
        # complete) has no known output: the dependents' pins cover it
        if output is None or output.kind not in ("file", "tree") or not output.digest:
            continue
        resources.append(
            LockedResource(
                name=resource.name,
                kind=output.kind,
                digest=output.digest,
                url=output.url,
                size=output.size,
                source_digest=output.source_digest,
                transient=resource.transient,
            )
        )
    from ..context import NO_REPOSITORY

    repository = definition.repository_in(context.registry)
    return LockedDataset(
        id=entry_id or definition.id,
        repository=repository.id if repository is not None else NO_REPOSITORY,
        plugin_version=repository.version if repository is not None else "",
        fingerprint=fingerprint(definition),
        manifest=result.manifest,
        resources=tuple(sorted(resources, key=lambda r: r.name)),
    )


def out_of_date(context: "Context", lock: Lock | None, requested: list[str]) -> list[str]:
    """Why a lock does not match the project's datasets and their definitions (empty: up to date)."""
    if lock is None:
        return ["there is no lock file yet"]
    reasons = []
    added = sorted(set(requested) - set(lock.requested))
    removed = sorted(set(lock.requested) - set(requested))
    if added:
        reasons.append(f"dataset(s) added to the project: {', '.join(added)}")
    if removed:
        reasons.append(f"dataset(s) removed from the project: {', '.join(removed)}")
    definitions = closure(context, requested)
    for dataset_id, definition in sorted(definitions.items()):
        entry = lock.datasets.get(dataset_id)
        if entry is None:
            if dataset_id not in added:
                reasons.append(f"{dataset_id} is not locked")
        elif entry.fingerprint != fingerprint(definition):
            reasons.append(f"the definition of {dataset_id} changed")
        elif (problem := entry_problem(entry, definition)) is not None:
            reasons.append(f"{dataset_id}: {problem}")
    unused = sorted(set(lock.datasets) - set(definitions) - set(removed))
    if unused:
        reasons.append(f"locked but no longer used: {', '.join(unused)}")
    return reasons


@dataclass
class LockReport:
    """What ``lock`` did.

    :param path: the lock file
    :param written: False when the file already held the same bytes
    :param kept: datasets whose entry was kept as it was
    :param resolved: datasets (re-)resolved (prepared, and downloaded again when upgraded)
    :param lock: the lock written
    """

    path: Path
    written: bool
    kept: list[str] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)
    lock: Lock | None = None


def lock_project(context: "Context", *, upgrade: bool | Iterable[str] = False) -> LockReport:
    """Writes the project's ``datamaestro.lock`` (``datamaestro lock``).

    :param upgrade: True to re-resolve every dataset, or the ids (or
        aliases) of those to re-resolve; the others keep their pins while
        their definition is the same
    :raises UsageError: not in a project, or an upgraded id that the project does not use
    :raises LockFileError: the existing lock is malformed (unless every dataset is upgraded)
    """
    from ..version import __version__

    path = lock_file(context)
    requested = requested_ids(context)
    previous = None
    if path.exists():
        try:
            previous = read_lock(path)
        except LockFileError:
            if upgrade is not True:
                raise
    definitions = closure(context, requested)
    if upgrade is True:
        upgraded = set(definitions)
    else:
        upgraded = {context.canonical_id(dataset_id) for dataset_id in upgrade or ()}
        unused = sorted(upgraded - set(definitions))
        if unused:
            raise UsageError(
                f"cannot upgrade {', '.join(unused)}: not one of the project's datasets",
                hint="add it first with `datamaestro add ID`",
            )
    report = LockReport(path=path, written=False)
    datasets = {}
    for dataset_id, definition in sorted(definitions.items()):
        entry = previous.datasets.get(dataset_id) if previous is not None else None
        # an entry cut or edited (a resource's table lost, added, renamed) is resolved again, as a changed definition
        if entry is not None and dataset_id not in upgraded and entry.fingerprint == fingerprint(definition) and entry_problem(entry, definition) is None:
            datasets[dataset_id] = entry
            report.kept.append(dataset_id)
        else:
            datasets[dataset_id] = resolve_dataset(context, definition, refresh=dataset_id in upgraded, entry_id=dataset_id)
            report.resolved.append(dataset_id)
    lock = Lock(requested=tuple(sorted(requested)), datasets=datasets, datamaestro=__version__, version=FORMAT_VERSION, path=path)
    report.written = write_lock(lock, path)
    report.lock = lock
    context.store.register_lock_root(path, lock.manifests())
    _remember_current(context, path)
    return report


def damaged_entries(context: "Context", lock: Lock) -> list[str]:
    """The entries of a lock cut or edited for a definition that did not change (empty: none).

    Each is ``<id>: <what is wrong>`` (see :func:`entry_problem`): the
    lock's own damage, which ``sync`` refuses rather than locking again,
    unlike a definition that changed.
    """
    damaged = []
    for dataset_id, definition in sorted(closure(context, requested_ids(context)).items()):
        entry = lock.datasets.get(dataset_id)
        if entry is not None and entry.fingerprint == fingerprint(definition):
            problem = entry_problem(entry, definition)
            if problem is not None:
                damaged.append(f"{dataset_id}: {problem}")
    return damaged


def stale_reasons(context: "Context", lock: Lock | None = None) -> list[str]:
    """Why the project's lock is stale, i.e. out of date (empty: it is current), without preparing anything: ``lock --check``.

    Finding out imports every locked dataset's definition; a "current"
    verdict is remembered (in the user's code cache) under a key made of the lock
    file's bytes, the project's dataset list and the installed plugins' own
    fingerprint (their files' sizes and dates, read without importing them),
    so that asking again for an unchanged project costs a few ``stat`` calls.

    :param lock: the lock file's content, when already read
    """
    path = lock_file(context)
    if lock is None and path.exists():
        lock = read_lock(path)
    key = _current_key(context, path)
    if key is not None and lock is not None and read_entry(context.data_dir, _current_note(path)) == key:
        return []
    reasons = out_of_date(context, lock, requested_ids(context))
    if not reasons and key is not None:
        write_entry(context.data_dir, _current_note(path), key)
    return reasons


def _current_key(context: "Context", path: Path) -> str | None:
    """What a "current" verdict depends on (None without a lock file)."""
    from ..version import __version__
    from ..settings import project_table

    try:
        lock_bytes = path.read_bytes()
    except OSError:
        return None
    listed = project_table(context.pyproject).get("datasets", [])
    description = [__version__, context.registry.fingerprint(), digest_bytes(lock_bytes), listed]
    return digest_bytes(canonical_json(description))


def _current_note(path: Path) -> str:
    """The name in the code cache (see :mod:`datamaestro.codecache`) of a lock file's last "current" verdict."""
    return "lock-checks/" + digest_bytes(str(path.absolute()).encode())[7:39] + ".key"


def _remember_current(context: "Context", path: Path) -> None:
    """Notes that the project's lock is up to date (best effort: a cache)."""
    key = _current_key(context, path)
    if key is not None:
        write_entry(context.data_dir, _current_note(path), key)
