"""``datamaestro create-dataset``: a class-style definition to fill in, written where its id says."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ..errors import DatamaestroError, UsageError

if TYPE_CHECKING:
    from ..context import Context


_ID = re.compile(r"^[a-z0-9_][a-z0-9_-]*(\.[a-z0-9_][a-z0-9_-]*)+$")

TEMPLATE = '''"""{title}"""

from datamaestro.data import File
from datamaestro.definitions import Dataset, dataset
from datamaestro.download.single import FileDownloader


@dataset(id="", url="{url}")
class {name}(Dataset):
    """{title}

    Describe the dataset here: what it holds, who made it, its licence.
    """

    DATA = FileDownloader("data.txt", "{url}data.txt")

    def config(self) -> File:
        return File.C(path=self.DATA.path)
'''


def dataset_id_of(text: str) -> str:
    """A dataset id from an id or a URL (``https://example.org/corpus`` -> ``org.example.corpus``).

    :raises UsageError: not an id nor a URL
    """
    parts = urlsplit(text)
    if parts.scheme and parts.hostname:
        text = ".".join([*reversed(parts.hostname.split(".")), *[p for p in parts.path.split("/") if p]])
    text = text.lower()
    if not _ID.match(text):
        raise UsageError(f"{text!r} is not a dataset id", hint="use lower-case words separated by dots, e.g. org.example.corpus")
    return text


def create_definition(repository_id: str, dataset_id: str, context: "Context") -> Path:
    """Writes a class-style definition to fill in; returns its file.

    The file is ``<plugin>/config/<id as path>.py`` and the dataset's id is
    the module path (``id=""``), so the new id is exactly ``dataset_id``.

    :raises UsageError: unknown repository, or the file exists
    """
    repository = context.registry.repositories().get(repository_id)
    if repository is None:
        known = ", ".join(sorted(context.registry.repositories()))
        raise UsageError(f"no repository {repository_id!r}", hint=f"installed repositories: {known or 'none'}")
    dataset_id = dataset_id_of(dataset_id)
    folder = repository.basedir
    if folder is None:
        raise DatamaestroError(f"cannot find the folder of repository {repository_id}", hint="is the plugin installed in editable mode?")
    parts = dataset_id.split(".")
    path = folder.joinpath("config", *parts[:-1], parts[-1].replace("-", "_") + ".py")
    if path.exists():
        raise UsageError(f"{path} already exists", hint="edit it, or choose another id")
    for depth in range(1, len(parts)):
        # a parent id that is a module: a folder of that name beside it is a package Python cannot import
        module = folder.joinpath("config", *parts[: depth - 1], parts[depth - 1].replace("-", "_") + ".py")
        if module.is_file():
            parent, rest = ".".join(parts[:depth]), ".".join(parts[depth:])
            raise UsageError(
                f"{parent} is a module ({module}): {dataset_id} cannot have a module of its own under it",
                hint=f"add the definition to {module} with @dataset(id={rest!r}) (its id is then {dataset_id}), or choose an id beside it",
            )
    if path.with_suffix("").joinpath("__init__.py").is_file():
        raise UsageError(
            f"{dataset_id} is a package ({path.with_suffix('')}): a module {path.name} beside it would never be imported",
            hint=f"write the definition in {path.with_suffix('') / '__init__.py'} with @dataset(id=\"\"), or choose another id",
        )
    name = "".join(word.capitalize() for word in re.split(r"[-_]", parts[-1])) or "Data"
    if name[0].isdigit():
        name = f"Data{name}"
    path.parent.mkdir(parents=True, exist_ok=True)
    url = f"https://{'.'.join(reversed(parts[:2]))}/"
    path.write_text(TEMPLATE.format(title=f"{dataset_id} (to describe)", name=name, url=url))
    return path
