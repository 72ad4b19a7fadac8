"""Reading and writing ``datamaestro.lock`` (TOML).

The file is written with tomlkit in one fixed order (datasets sorted by id,
resources by name, fields in a fixed order, no dates), so that writing the
same lock twice gives the same bytes and a diff reads well::

    version = 1
    datamaestro = "2.0.0"
    requested = ["com.lecun.mnist"]

    [[dataset]]
    id = "com.lecun.mnist"
    repository = "image"
    plugin_version = "1.0.0"
    fingerprint = "blake3:..."
    manifest = "blake3:..."

    [[dataset.resource]]
    name = "train_images.idx"
    kind = "file"
    url = "http://yann.lecun.com/exdb/mnist/train-images-idx3-ubyte.gz"
    size = 9912422
    source_digest = "blake3:..."
    digest = "blake3:..."

Reading is strict: bad TOML, an unknown format version, a missing or
unknown field, a malformed digest each raise one
:class:`~datamaestro.errors.LockFileError` naming the file and, where it can
be found, the line.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

from ..errors import LockFileError
from ..store.digests import is_digest
from ..store.paths import dataset_id_problem, name_problem, relative_path_problem
from .model import FORMAT_VERSION, Lock, LockedDataset, LockedResource

HEADER = (
    "This file is written by `datamaestro lock`: do not edit it by hand.",
    "It pins the exact data of the project's datasets; commit it with the project.",
)
REPAIR_HINT = "restore the file from version control, or write it again with `datamaestro lock --upgrade`"

DATASET_FIELDS = ("id", "repository", "plugin_version", "fingerprint", "manifest", "resource")
RESOURCE_FIELDS = ("name", "kind", "transient", "url", "size", "source_digest", "digest")
TOP_FIELDS = ("version", "datamaestro", "requested", "dataset")


# -- writing


def dumps(lock: Lock) -> str:
    """The text of a lock file (stable: the same lock always gives the same bytes)."""
    import tomlkit

    doc = tomlkit.document()
    for line in HEADER:
        doc.add(tomlkit.comment(line))
    doc.add(tomlkit.nl())
    doc["version"] = lock.version
    doc["datamaestro"] = lock.datamaestro
    requested = tomlkit.array()
    requested.extend(sorted(lock.requested))
    requested.multiline(len(lock.requested) > 1)
    doc["requested"] = requested
    datasets = tomlkit.aot()
    for dataset_id in sorted(lock.datasets):
        dataset = lock.datasets[dataset_id]
        table = tomlkit.table()
        table["id"] = dataset.id
        table["repository"] = dataset.repository
        table["plugin_version"] = dataset.plugin_version
        table["fingerprint"] = dataset.fingerprint
        table["manifest"] = dataset.manifest
        resources = tomlkit.aot()
        for resource in sorted(dataset.resources, key=lambda r: r.name):
            entry = tomlkit.table()
            entry["name"] = resource.name
            entry["kind"] = resource.kind
            if resource.transient:
                entry["transient"] = True
            for key in ("url", "size", "source_digest"):
                value = getattr(resource, key)
                if value is not None:
                    entry[key] = value
            entry["digest"] = resource.digest
            resources.append(entry)
        if resources:
            table["resource"] = resources
        datasets.append(table)
    if datasets:
        doc["dataset"] = datasets
    return tomlkit.dumps(doc)


def write_lock(lock: Lock, path: Path) -> bool:
    """Writes a lock file atomically; returns False (and leaves the file alone) when it already holds these bytes."""
    text = dumps(lock)
    path = Path(path)
    try:
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            return False
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise LockFileError(f"cannot write {path}: {exc.strerror}", hint="check the folder's permissions") from None
    return True


# -- reading


def read_lock(path: Path) -> Lock:
    """Reads and checks a lock file.

    :raises LockFileError: unreadable or malformed (one message, with the line when known)
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LockFileError(f"{path}: no such lock file", hint="run `datamaestro lock` in the project") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LockFileError(f"{path}: cannot read: {exc}", hint=REPAIR_HINT) from None
    return loads(text, path)


def loads(text: str, path: Path | str = "datamaestro.lock") -> Lock:
    """Parses the text of a lock file (see :func:`read_lock`)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        match = re.search(r"\s*\(at line (\d+), column (\d+)\)$", message)
        where = f", line {match.group(1)}, column {match.group(2)}" if match else ""
        reason = message[: match.start()] if match else message
        raise LockFileError(f"{path}{where}: not valid TOML: {reason}", hint=REPAIR_HINT) from None
    return _Reader(text, path).lock(data)


#: the hint of a lock whose names would place files outside the data dir
UNTRUSTED_HINT = "the lock file was edited by hand or comes from an untrusted source: restore it from the project, or run `datamaestro lock --upgrade`"


class _Reader:
    """Checks a parsed lock file; errors name the line where :class:`_Lines` can find it."""

    def __init__(self, text: str, path: Path | str):
        self.path = path
        self.lines = _Lines(text)

    def fail(self, where: tuple, message: str, hint: str = REPAIR_HINT):
        line = self.lines.find(where)
        raise LockFileError(f"{self.path}{f', line {line}' if line else ''}: {message}", hint=hint)

    def check_keys(self, table: dict, known: tuple[str, ...], where: tuple, what: str) -> None:
        for key in table:
            if key not in known:
                self.fail((*where, key), f"{what}: unknown field {key!r} (known: {', '.join(known)})")

    def field(self, table: dict, key: str, kind: type | tuple, where: tuple, what: str, *, required: bool = True) -> Any:
        if key not in table:
            if required:
                self.fail(where, f"{what}: missing field {key!r}")
            return None
        value = table[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            self.fail((*where, key), f"{what}: {key} must be a {names.replace('str', 'string')}, got {value!r}")
        return value

    def digest(self, table: dict, key: str, where: tuple, what: str, *, required: bool = True) -> str | None:
        value = self.field(table, key, str, where, what, required=required)
        if value is not None and not is_digest(value):
            self.fail((*where, key), f"{what}: {key} {value!r} is not a digest (blake3:<64 hex digits>)")
        return value

    def lock(self, data: dict) -> Lock:
        top: tuple = ()
        self.check_keys(data, TOP_FIELDS, top, "lock file")
        version = self.field(data, "version", int, top, "lock file")
        if version != FORMAT_VERSION:
            writer = data.get("datamaestro")
            by = f"datamaestro {writer}" if isinstance(writer, str) and writer else "another datamaestro"
            if version > FORMAT_VERSION:
                # rewriting it here would lose what the newer version recorded: upgrading is the way
                self.fail(
                    ("version",),
                    f"lock format version {version} was written by a newer datamaestro ({by}); this one reads version {FORMAT_VERSION}",
                    hint=f"upgrade datamaestro (`pip install -U datamaestro`{f', to {writer} or later' if isinstance(writer, str) and writer else ''})",
                )
            self.fail(
                ("version",),
                f"lock format version {version} is not the one this datamaestro reads ({FORMAT_VERSION})",
                hint=(f"it was written by {by}: use that version, or " if isinstance(writer, str) else "")
                + "run `datamaestro lock --upgrade` to write it again",
            )
        writer = self.field(data, "datamaestro", str, top, "lock file")
        requested = self.field(data, "requested", list, top, "lock file")
        if not all(isinstance(item, str) for item in requested):
            self.fail(("requested",), "lock file: requested must be a list of dataset ids")
        raw_datasets = self.field(data, "dataset", list, top, "lock file", required=False) or []
        datasets: dict[str, LockedDataset] = {}
        for index, raw in enumerate(raw_datasets):
            dataset = self.dataset(raw, index)
            if dataset.id in datasets:
                self.fail(("dataset", index, "id"), f"dataset {dataset.id} is locked twice")
            datasets[dataset.id] = dataset
        missing = sorted(set(requested) - set(datasets))
        if missing:
            self.fail(("requested",), f"requested dataset(s) {', '.join(missing)} have no [[dataset]] entry")
        return Lock(requested=tuple(requested), datasets=datasets, datamaestro=writer, version=version)

    def entry(self, raw: Any, where: tuple, prefix: str, kind: str, name_key: str, known: tuple[str, ...]) -> str:
        """Checks that an array entry is a table of known fields; returns how messages name it."""
        label = f"{prefix}{kind} entry {where[-1] + 1}"
        if not isinstance(raw, dict):
            self.fail(where, f"{label} is not a table")
        what = f"{prefix}{kind} {raw[name_key]}" if isinstance(raw.get(name_key), str) else label
        self.check_keys(raw, known, where, what)
        return what

    def dataset(self, raw: Any, index: int) -> LockedDataset:
        where = ("dataset", index)
        what = self.entry(raw, where, "", "dataset", "id", DATASET_FIELDS)
        dataset_id = self.field(raw, "id", str, where, what)
        repository = self.field(raw, "repository", str, where, what)
        # both become folders of the data dir: a lock from someone else must not place them elsewhere
        problem = dataset_id_problem(dataset_id)
        if problem is not None:
            self.fail((*where, "id"), f"{what}: the id cannot name folders of the data dir: {problem}", hint=UNTRUSTED_HINT)
        problem = name_problem(repository)
        if problem is not None:
            self.fail((*where, "repository"), f"{what}: the repository cannot name a folder of the data dir: {problem}", hint=UNTRUSTED_HINT)
        plugin_version = self.field(raw, "plugin_version", str, where, what)
        fingerprint = self.digest(raw, "fingerprint", where, what)
        manifest = self.digest(raw, "manifest", where, what)
        raw_resources = self.field(raw, "resource", list, where, what, required=False) or []
        resources = []
        for position, resource in enumerate(raw_resources):
            resources.append(self.resource(resource, (*where, "resource", position), what))
        names = [r.name for r in resources]
        for name in names:
            if names.count(name) > 1:
                self.fail(where, f"{what}: resource {name} is locked twice")
        return LockedDataset(dataset_id, repository, plugin_version, fingerprint, manifest, tuple(resources))

    def resource(self, raw: Any, where: tuple, dataset_what: str) -> LockedResource:
        what = self.entry(raw, where, f"{dataset_what}, ", "resource", "name", RESOURCE_FIELDS)
        name = self.field(raw, "name", str, where, what)
        problem = relative_path_problem(name)
        if problem is not None:
            self.fail((*where, "name"), f"{what}: the resource name must stay inside the dataset folder: {problem}", hint=UNTRUSTED_HINT)
        kind = self.field(raw, "kind", str, where, what)
        if kind not in ("file", "tree"):
            self.fail((*where, "kind"), f"{what}: kind must be \"file\" or \"tree\", got {kind!r}")
        size = self.field(raw, "size", int, where, what, required=False)
        if size is not None and size < 0:
            self.fail((*where, "size"), f"{what}: size must be >= 0, got {size}")
        return LockedResource(
            name=name,
            kind=kind,
            digest=self.digest(raw, "digest", where, what),
            url=self.field(raw, "url", str, where, what, required=False),
            size=size,
            source_digest=self.digest(raw, "source_digest", where, what, required=False),
            transient=bool(self.field(raw, "transient", bool, where, what, required=False)),
        )


_HEADER = re.compile(r"^\s*\[\[\s*dataset\s*(\.\s*resource\s*)?\]\]\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_-]+|\"[^\"]*\")\s*=")


class _Lines:
    """Finds the line of a table or field of a lock file laid out as :func:`dumps` writes it.

    A place is ``()`` (the top), ``("dataset", i)``, ``("dataset", i,
    "resource", j)``, optionally followed by a field name. Best effort: a
    hand-written layout (inline tables) may hide a line, never give a wrong one.
    """

    def __init__(self, text: str):
        self.places: dict[tuple, int] = {}
        current: tuple = ()
        datasets = -1
        resources = -1
        for number, line in enumerate(text.splitlines(), start=1):
            header = _HEADER.match(line)
            if header:
                if header.group(1):
                    resources += 1
                    current = ("dataset", datasets, "resource", resources)
                else:
                    datasets += 1
                    resources = -1
                    current = ("dataset", datasets)
                self.places.setdefault(current, number)
                continue
            if line.lstrip().startswith("["):
                current = ("other",)
                continue
            key = _KEY.match(line)
            if key:
                self.places.setdefault((*current, key.group(1).strip('"')), number)

    def find(self, where: tuple) -> int | None:
        """The line of a place, else of the nearest enclosing table found."""
        while where:
            if where in self.places:
                return self.places[where]
            where = where[:-1]
        return None
