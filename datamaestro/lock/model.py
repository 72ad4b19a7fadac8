"""What a ``datamaestro.lock`` holds, as plain dataclasses (no file format, no I/O).

A :class:`Lock` pins, for every dataset a project uses (and every dataset
those reference), the exact bytes of each resource: where they were
downloaded from, their size, the digest of the bytes as downloaded and of
the output after transforms, and the digest of the dataset's manifest (the
immutable view the project reads). See ``docs/reproducible-data.md`` for
the file, field by field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..store import Output

#: the version of the lock file format this datamaestro reads and writes
FORMAT_VERSION = 1
#: the lock file's name, next to the project's ``pyproject.toml``
LOCK_NAME = "datamaestro.lock"


@dataclass(frozen=True)
class LockedResource:
    """One resource of a locked dataset.

    :param name: the resource's name in the dataset's folder
    :param kind: ``file`` (one object) or ``tree`` (a folder)
    :param digest: the output digest (after transforms / derivation)
    :param url: the URL the bytes came from, after redirects (never a
        mirror); None for derived resources
    :param size: bytes downloaded (None when not downloaded)
    :param source_digest: blake3 of the bytes as downloaded (None when not downloaded)
    :param transient: an intermediate, not part of the dataset's folder
    """

    name: str
    kind: str
    digest: str
    url: str | None = None
    size: int | None = None
    source_digest: str | None = None
    transient: bool = False

    def output(self) -> Output:
        """The pipeline's view of this pin."""
        return Output(self.kind, self.digest, source_digest=self.source_digest, url=self.url, size=self.size)


@dataclass(frozen=True)
class LockedDataset:
    """One locked dataset.

    :param id: the dataset id
    :param repository: the id of the repository (plugin) defining it
    :param plugin_version: the version of the plugin's distribution when locked
    :param fingerprint: digest of what the definition does (see
        :func:`datamaestro.project.resolve.fingerprint`): when it changes, the lock is out of date
    :param manifest: the digest of the dataset's manifest (its immutable view)
    :param resources: the pinned resources, sorted by name
    """

    id: str
    repository: str
    plugin_version: str
    fingerprint: str
    manifest: str
    resources: tuple[LockedResource, ...] = ()

    def pins(self) -> dict[str, Output]:
        """Expected outputs by resource name (what :meth:`Pipeline.run` checks)."""
        return {resource.name: resource.output() for resource in self.resources}

    def entries(self) -> dict[str, tuple[str, str]]:
        """The manifest's entries: ``name -> (kind, digest)`` of the non-transient resources."""
        return {r.name: (r.kind, r.digest) for r in self.resources if not r.transient}

    def outputs(self) -> list[Output]:
        """The outputs the dataset's folder shows (what must be in the store)."""
        return [r.output() for r in self.resources if not r.transient]


@dataclass
class Lock:
    """A whole lock file.

    :param requested: the project's dataset list (canonical ids, sorted)
    :param datasets: every locked dataset by id: the requested ones and those they reference
    :param datamaestro: the datamaestro version that wrote the lock
    :param version: the format version
    :param path: the file it was read from (None when built in memory)
    """

    requested: tuple[str, ...] = ()
    datasets: dict[str, LockedDataset] = field(default_factory=dict)
    datamaestro: str = ""
    version: int = FORMAT_VERSION
    path: Path | None = None

    def manifests(self) -> list[str]:
        """Every manifest the lock pins (what keeps its data alive in a store)."""
        return sorted({dataset.manifest for dataset in self.datasets.values()})
