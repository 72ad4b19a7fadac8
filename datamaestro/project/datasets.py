"""The project's dataset list: ``[tool.datamaestro] datasets`` in its ``pyproject.toml``.

:func:`add_datasets` and :func:`remove_datasets` edit the list with tomlkit,
so that the rest of the file (comments, order, formatting) stays as it was.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import SettingsError, UsageError
from ..lock.model import LOCK_NAME

if TYPE_CHECKING:
    from ..context import Context

NO_PROJECT_HINT = (
    "run the command in your project's folder, or create a pyproject.toml there "
    "(a [tool.datamaestro] table with datasets = [] is enough)"
)


def project_file(context: "Context") -> Path:
    """The project's ``pyproject.toml`` (the nearest one upwards).

    :raises UsageError: there is none
    """
    if context.pyproject is None:
        raise UsageError(f"no pyproject.toml in {Path.cwd()} or above: not in a project", hint=NO_PROJECT_HINT)
    return context.pyproject


def lock_file(context: "Context") -> Path:
    """Where the project's lock file is (or goes): next to its ``pyproject.toml``."""
    return project_file(context).parent / LOCK_NAME


def requested_ids(context: "Context") -> list[str]:
    """The project's dataset list, as canonical ids (aliases resolved), in file order, without repeats.

    :raises DatasetNotFoundError: the list names an unknown dataset
    """
    from ..settings import project_table

    listed = project_table(project_file(context)).get("datasets", [])
    ids = [context.canonical_id(entry) for entry in listed]
    return list(dict.fromkeys(ids))


def _canonical(context: "Context", text: str) -> str:
    """The canonical id of an id or alias; the text itself when no dataset has it (it can still be removed)."""
    from ..errors import DatasetNotFoundError

    try:
        return context.canonical_id(text)
    except DatasetNotFoundError:
        return text


def _load(pyproject: Path):
    import tomlkit
    from tomlkit.exceptions import TOMLKitError

    try:
        return tomlkit.parse(pyproject.read_text(encoding="utf-8"))
    except TOMLKitError as exc:
        raise SettingsError(f"{pyproject}: invalid TOML: {exc}", hint="fix the file's syntax") from None


def _dataset_array(document, pyproject: Path, create: bool):
    """The ``datasets`` array of the document's ``[tool.datamaestro]`` (created when asked, else None)."""
    import tomlkit

    container = document
    for key, make in (("tool", lambda: tomlkit.table(is_super_table=True)), ("datamaestro", tomlkit.table), ("datasets", tomlkit.array)):
        child = container.get(key)
        if child is None:
            if not create:
                return None
            child = make()
            container[key] = child
        container = child
    if not isinstance(container, list):
        raise SettingsError(f"{pyproject}: [tool.datamaestro] datasets must be a list of dataset ids")
    return container


def _save(pyproject: Path, document) -> None:
    import tomlkit

    tmp = pyproject.with_name(f".{pyproject.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(tomlkit.dumps(document), encoding="utf-8")
        os.chmod(tmp, os.stat(pyproject).st_mode & 0o7777)
        os.replace(tmp, pyproject)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise SettingsError(f"cannot write {pyproject}: {exc.strerror}", hint="check the file's permissions") from None


def add_datasets(context: "Context", dataset_ids: list[str]) -> list[str]:
    """Adds datasets to the project's list; returns the canonical ids added (those already listed are skipped).

    :raises DatasetNotFoundError: an unknown id (with the closest ids)
    :raises UsageError: not in a project
    """
    pyproject = project_file(context)
    canonical = [context.canonical_id(dataset_id) for dataset_id in dataset_ids]
    document = _load(pyproject)
    array = _dataset_array(document, pyproject, create=True)
    listed = {_canonical(context, str(entry)) for entry in array}
    added = []
    for dataset_id in dict.fromkeys(canonical):
        if dataset_id not in listed:
            array.append(dataset_id)
            added.append(dataset_id)
    if added:
        if len(array) > 2:
            array.multiline(True)
        _save(pyproject, document)
    return added


def remove_datasets(context: "Context", dataset_ids: list[str]) -> list[str]:
    """Removes datasets (ids or aliases) from the project's list; returns the entries removed.

    :raises UsageError: an id the list does not hold, or not in a project
    """
    pyproject = project_file(context)
    document = _load(pyproject)
    array = _dataset_array(document, pyproject, create=False)
    entries = [str(entry) for entry in array] if array is not None else []

    def canonical(text: str) -> str:
        return _canonical(context, text)

    wanted = {canonical(dataset_id) for dataset_id in dataset_ids}
    positions = [i for i, entry in enumerate(entries) if entry in dataset_ids or canonical(entry) in wanted]
    found = {canonical(entries[i]) for i in positions} | {entries[i] for i in positions}
    unknown = [d for d in dataset_ids if d not in found and canonical(d) not in found]
    if unknown:
        listing = ", ".join(entries) if entries else "nothing"
        raise UsageError(f"{', '.join(unknown)} not in the project's datasets ({pyproject} lists {listing})")
    removed = [entries[i] for i in positions]
    for index in reversed(positions):
        del array[index]
    _save(pyproject, document)
    return removed
