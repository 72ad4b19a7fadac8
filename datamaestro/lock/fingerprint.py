"""The fingerprint of a dataset definition: what a lock entry is valid for.

Kept apart from :mod:`datamaestro.project.resolve` so that the session (which
checks a lock entry against the definition on every prepare) needs nothing
of the resolver. It reads a definition through its public attributes only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Protocol

from ..store.digests import canonical_json, digest_bytes

if TYPE_CHECKING:
    from .model import LockedDataset


class DatasetDefinition(Protocol):
    """What the fingerprint reads of a dataset definition (:class:`datamaestro.definition.DatasetDefinition` has it).

    A protocol rather than an import: the lock sits below the definitions.
    """

    id: str
    module: str
    qualname: str

    def ordered_resources(self) -> Iterable[Any]:
        """The definition's resources, inputs first."""

#: bump when the fingerprint's description changes (every lock becomes out of date)
FINGERPRINT_FORMAT = 1
#: what to do about an entry whose resources do not fit (see :func:`entry_problem`)
DAMAGED_LOCK_HINT = (
    "the lock file was cut or edited by hand: run `datamaestro lock` to lock the dataset again "
    "(or restore the file from version control)"
)


def fingerprint(definition: "DatasetDefinition") -> str:
    """A digest of what a definition does to its data.

    It covers the dataset's id and defining class or function, and for every
    resource its name, kind, whether it is transient, its inputs and its
    recipe (URL, transforms, checks, a derivation's class, version and
    parameters): anything that changes the bytes changes the fingerprint.
    Docstrings, metadata and the code of ``config()`` do not.
    """
    resources = [
        {
            "name": resource.name,
            "kind": resource.kind,
            "transient": resource.transient,
            "inputs": [dependency.name for dependency in resource.dependencies()],
            "recipe": resource.recipe(),
        }
        for resource in definition.ordered_resources()
    ]
    description = {
        "format": FINGERPRINT_FORMAT,
        "id": definition.id,
        "target": f"{definition.module}.{definition.qualname}",
        "resources": resources,
    }
    return digest_bytes(canonical_json(description))


def entry_problem(entry: "LockedDataset", definition: "DatasetDefinition | None" = None) -> str | None:
    """Why a lock entry's resources cannot be what it pins, or not the definition's (None: they fit).

    The fingerprint says which definition an entry was written for, not that
    the entry is whole: a ``[[dataset.resource]]`` table lost (a file cut
    after a complete table, a table deleted), added or renamed leaves it
    unchanged. So the entries are compared

    - with the definition's resources, when it is given: every resource
      with files that is not transient must have an entry, every entry must
      name a resource of the definition, transient as it is (a transient
      input may have none: its dependents' pins cover it);
    - with the manifest the entry pins (no definition needed): the
      non-transient entries must make it, as ``lock`` wrote them.

    :returns: one clause naming the entry (``resource x.idx has no
        [[dataset.resource]] entry``), or None
    """
    from ..store.views import manifest_digest

    if definition is not None:
        resources = {resource.name: resource for resource in definition.ordered_resources()}
        locked = {resource.name: resource for resource in entry.resources}
        extra = sorted(set(locked) - set(resources))
        if extra:
            return f"[[dataset.resource]] entry {extra[0]!r} is not a resource of the definition"
        for name, resource in sorted(resources.items()):
            has_files = resource.has_files() if hasattr(resource, "has_files") else resource.kind != "value"
            pinned = locked.get(name)
            if pinned is None:
                if has_files and not resource.transient:
                    return f"resource {name!r} of the definition has no [[dataset.resource]] entry"
            elif not has_files:
                return f"[[dataset.resource]] entry {name!r} names a resource without files"
            elif pinned.transient != bool(resource.transient):
                said = ("transient", "is not") if pinned.transient else ("not transient", "is")
                return f"[[dataset.resource]] entry {name!r} is {said[0]}, the definition's resource {said[1]}"
    made = manifest_digest(entry.entries())
    if made != entry.manifest:
        return f"its [[dataset.resource]] entries make the manifest {made}, not the {entry.manifest} it pins (an entry was removed, added or edited)"
    return None


def entry_key(lock: Any, definition_id: str, entry_id: str | None) -> str | None:
    """The entry of a lock that pins a dataset: a variant's own (``entry_id``), else the definition's; None when neither is there."""
    if entry_id is not None and entry_id in lock.datasets:
        return entry_id
    return definition_id if definition_id in lock.datasets else None


def checked_entry(lock: Any, definition: "DatasetDefinition", entry_id: str | None, *, fingerprints: dict, fitting: dict) -> "LockedDataset | None":
    """The lock's entry for a dataset (see :func:`entry_key`), checked against the definition as it is now; None when none pins it.

    :param fingerprints: the caller's cache of fingerprints, ``{id(definition): fingerprint}``
    :param fitting: the caller's cache of entries already checked, ``{id(definition): entry}``
    :raises LockFileError: the entry was written for another version of the
        definition, or lost, added or renamed a table
    """
    key = entry_key(lock, definition.id, entry_id)
    if key is None:
        return None
    entry = lock.datasets[key]
    known = fingerprints.get(id(definition))
    if known is None:
        known = fingerprints[id(definition)] = fingerprint(definition)
    if entry.fingerprint != known:
        from ..errors import LockFileError

        raise LockFileError(
            f"{lock.path}: {definition.id} is locked for another version of its definition",
            hint=f"run `datamaestro lock` to lock the definition as it is now (`datamaestro lock --upgrade {definition.id}` also downloads its data again)",
        )
    if fitting.get(id(definition)) is not entry:
        # a table lost, added or renamed leaves the fingerprint as it was
        problem = entry_problem(entry, definition)
        if problem is not None:
            from ..errors import LockFileError

            raise LockFileError(f"{lock.path}: {key}: {problem}", hint=DAMAGED_LOCK_HINT)
        fitting[id(definition)] = entry
    return entry
