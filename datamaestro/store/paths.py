"""Names that documents from outside give to paths: checked before any is joined to a folder.

A lock entry's repository, dataset id and resource names, and the entries
of a manifest, become folders and links under the data dir and the store.
Each must stay below the folder it is joined to, whatever the document says.
"""

from __future__ import annotations

#: the longest path a document may name (bytes, as Linux's PATH_MAX)
MAX_PATH = 4096
#: the longest component of a path (bytes, as Linux's NAME_MAX)
MAX_NAME = 255


def relative_path_problem(path: object) -> str | None:
    """Why ``path`` is not a relative, normalised path that stays below its folder; None when it is.

    Refused: anything but a string, an empty or absolute path, a NUL or a
    backslash, an empty, ``.`` or ``..`` component (``a//b``, ``./a``,
    ``a/..``), a trailing ``/``, a component longer than :data:`MAX_NAME`.
    """
    if not isinstance(path, str):
        return f"{type(path).__name__} where a path was expected"
    if not path:
        return "empty path"
    if len(path.encode(errors="surrogateescape")) > MAX_PATH:
        return f"path longer than {MAX_PATH} bytes"
    if "\0" in path:
        return f"{path!r} holds a NUL character"
    if "\\" in path:
        return f"{path!r} holds a backslash"
    if path.startswith("/"):
        return f"{path!r} is absolute"
    for part in path.split("/"):
        if part == "..":
            return f"{path!r} leaves its folder"
        if part in ("", "."):
            return f"{path!r} is not normalised (empty or '.' component)"
        if len(part.encode(errors="surrogateescape")) > MAX_NAME:
            return f"{path!r} has a component longer than {MAX_NAME} bytes"
    return None


def name_problem(name: object) -> str | None:
    """Why ``name`` is not one safe path component (a repository's folder); None when it is."""
    problem = relative_path_problem(name)
    if problem is None and "/" in name:
        return f"{name!r} holds a '/'"
    return problem


def dataset_id_problem(dataset_id: object) -> str | None:
    """Why a dataset id cannot be laid out as folders (its dot-separated parts, each one safe component); None when it can."""
    if not isinstance(dataset_id, str) or not dataset_id:
        return f"{dataset_id!r} is not a dataset id"
    for part in dataset_id.split("."):
        if not part:
            return f"{dataset_id!r} has an empty part"
        problem = name_problem(part)
        if problem is not None:
            return problem
    return None
