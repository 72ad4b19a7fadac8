"""``datamaestro datafolders``: the folders a user provides by hand, where they are and who uses them.

The folders are those the resources propose: a resource that reads one
(the 1.x ``linkpath``, :mod:`datamaestro.compat.links`) answers
``datafolder_ids()``; the command asks, and imports nothing of the 1.x layer.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UsageError

if TYPE_CHECKING:
    from ..context import Context


def list_datafolders(context: "Context") -> list[dict]:
    """The data folders set in the settings and those the installed datasets ask for.

    Each: ``{"id", "path" (or None when not set), "datasets": [ids using it]}``.
    Imports every plugin module (to read the definitions).
    """
    used: dict[str, set[str]] = {}
    for repository in context.registry.repositories().values():
        try:
            definitions = list(repository.definitions())
        except Exception:
            continue
        for definition in definitions:
            for resource in getattr(definition, "resources", {}).values():
                datafolder_ids = getattr(resource, "datafolder_ids", None)
                for folder_id in datafolder_ids() if callable(datafolder_ids) else ():
                    used.setdefault(folder_id, set()).add(definition.id)
    folders = context.settings.datafolders
    return [
        {"id": folder_id, "path": str(folders[folder_id]) if folder_id in folders else None, "datasets": sorted(used.get(folder_id, ()))}
        for folder_id in sorted(set(folders) | set(used))
    ]


def set_datafolder(folder_id: str, path: Path, context: "Context") -> Path:
    """Records where a data folder is, in the user settings file; returns that file.

    :raises UsageError: the folder does not exist
    """
    from ..settings import set_user_setting

    path = Path(path).expanduser().resolve()
    if not path.is_dir():
        raise UsageError(f"{path} is not a folder", hint="give the folder that holds the data you obtained")
    settings_file = set_user_setting("datafolders", folder_id, str(path))
    context.settings.datafolders[folder_id] = path
    return settings_file
