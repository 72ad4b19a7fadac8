"""The commands around datasets: data folders, orphans, scaffolding, checks, experimaestro's form.

Called through :mod:`datamaestro.api` by the CLI; each function takes the
:class:`~datamaestro.context.Context` to work in.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from .errors import DatamaestroError, StoreError, UsageError

if TYPE_CHECKING:
    from .check import CheckReport
    from .context import Context
    from .store.maintenance import ReleaseReport

logger = logging.getLogger(__name__)


def config_to_xpm(config) -> list:
    """experimaestro's serialized form of a config: its objects, with types and identifiers."""
    return json.loads(config.__json__())


# -- data folders


def list_datafolders(context: "Context") -> list[dict]:
    """The data folders set in the settings and those the installed datasets ask for.

    Each: ``{"id", "path" (or None when not set), "datasets": [ids using it]}``.
    Imports every plugin module (to read the definitions).
    """
    from .compat.datafolders import DatafolderPath
    from .compat.links import linkpath

    used: dict[str, set[str]] = {}
    for repository in context.registry.repositories().values():
        try:
            definitions = list(repository.definitions())
        except Exception:
            continue
        for definition in definitions:
            for resource in getattr(definition, "resources", {}).values():
                if isinstance(resource, linkpath):
                    for proposal in resource.proposals:
                        if isinstance(proposal, DatafolderPath):
                            used.setdefault(proposal.folderid, set()).add(definition.id)
    folders = context.settings.datafolders
    return [
        {"id": folder_id, "path": str(folders[folder_id]) if folder_id in folders else None, "datasets": sorted(used.get(folder_id, ()))}
        for folder_id in sorted(set(folders) | set(used))
    ]


def set_datafolder(folder_id: str, path: Path, context: "Context") -> Path:
    """Records where a data folder is, in the user settings file; returns that file.

    :raises UsageError: the folder does not exist
    """
    from .settings import set_user_setting

    path = Path(path).expanduser().resolve()
    if not path.is_dir():
        raise UsageError(f"{path} is not a folder", hint="give the folder that holds the data you obtained")
    settings_file = set_user_setting("datafolders", folder_id, str(path))
    context.settings.datafolders[folder_id] = path
    return settings_file


# -- removing a dataset, and what keeps data alive


@dataclass
class RemoveReport:
    """What ``datamaestro rm`` did (with ``dry_run``: would do).

    :param dataset_id: the dataset
    :param folder: its readable folder
    :param removed: entries of the folder removed (its links)
    :param release: what the store freed (None when the folder showed nothing of the store)
    """

    dataset_id: str
    folder: Path
    dry_run: bool
    removed: list[str] = field(default_factory=list)
    release: "ReleaseReport | None" = None


def remove_dataset(dataset_id: str, context: "Context", *, dry_run: bool = False) -> RemoveReport:
    """Removes a dataset's readable folder from the data dir, then frees what nothing else keeps in the store.

    Only the folder's own links go (``.view`` and its resources' entries):
    the folders of nested datasets (``org.example.digits`` inside
    ``org.example``) and files one put there stay. What a lock file or
    another data dir still uses stays in the store.

    :raises UsageError: the dataset has no readable folder in this data dir
    """
    from .store.maintenance import release
    from .store.views import VIEW_LINK, current_view

    definition = context.dataset(dataset_id)
    repository = definition.repository
    folder = context.readable_path(repository.id if repository else "", definition.id)
    manifest = current_view(folder)
    entries = [] if not folder.is_dir() else [e for e in sorted(folder.iterdir()) if e.is_symlink() and (e.name == VIEW_LINK or os.readlink(e).startswith(VIEW_LINK + "/"))]
    if manifest is None and not entries:
        raise UsageError(
            f"{definition.id} is not prepared in this data dir (no {folder})",
            hint="`datamaestro store du` lists the datasets of the store; --data chooses another data dir",
        )
    report = RemoveReport(definition.id, folder, dry_run, [e.name for e in entries])
    if not dry_run:
        from .pipeline import check_data_dir

        # a read-only data dir (a read-only mount, another user's) is said before anything is removed
        check_data_dir(context.data_dir, folder, doing=f"{definition.id} cannot be removed from {folder}")
        # the `.view` link last: a reader sees the dataset complete or gone
        for entry in sorted(entries, key=lambda e: e.name == VIEW_LINK):
            entry.unlink(missing_ok=True)
        stop = context.data_dir / "data"
        for empty in (folder, *folder.parents):
            if empty == stop or not empty.is_relative_to(stop):
                break
            try:
                empty.rmdir()
            except OSError:
                break  # not empty: a nested dataset, or one's own files
    if manifest is not None:
        try:
            report.release = release(context.store, manifest, folder=folder, data_dir=context.data_dir, dry_run=dry_run)
        except StoreError as exc:
            if dry_run or not context.store.read_only():
                raise
            # a store one may only read (a read-only mount, another user's): the folder is gone all the same
            logger.warning("%s; %s was removed from this data dir, nothing was freed in the store", exc.message, definition.id)
    return report



def why_kept(target: str, context: "Context") -> tuple[str, list]:
    """The roots that keep a store entry alive: ``(digest, keepers)``.

    :param target: a digest (``blake3:<hex>`` or the hex alone) of an object,
        tree or manifest, or a dataset id (its readable folder's manifest, or
        the lock's pin)
    :raises UsageError: neither a digest nor a dataset shown in this data dir
    """
    from .store.digests import is_digest
    from .store.maintenance import keepers
    from .store.views import current_view

    digest = target if target.startswith("blake3:") else f"blake3:{target}"
    if not is_digest(digest):
        definition = context.dataset(target)
        repository = definition.repository
        digest = current_view(context.readable_path(repository.id if repository else "", definition.id))
        if digest is None:
            lock = context.lockfile()
            entry = lock.datasets.get(definition.id) if lock is not None else None
            if entry is None:
                raise UsageError(f"{definition.id} is not prepared in this data dir, and no lock in scope pins it", hint=f"run `datamaestro prepare {definition.id}`")
            digest = entry.manifest
    return digest, keepers(context.store, digest)


# -- user agreements


def accept_agreement(agreement_id: str, context: "Context") -> Path:
    """Records that the user accepts an agreement, in the user settings file; returns that file.

    :raises UsageError: no installed dataset asks for this agreement (a typo
        would otherwise be recorded silently and the dataset still refused)
    """
    from .settings import set_user_setting

    known: dict[str, list[str]] = {}
    for entry in context.registry.index():
        for known_id in entry.agreements:
            known.setdefault(known_id, []).append(entry.id)
    if agreement_id not in known:
        import difflib

        close = difflib.get_close_matches(agreement_id, sorted(known), n=3, cutoff=0.6)
        hint = (
            f"did you mean {' or '.join(close)}?"
            if close
            else "`datamaestro prepare ID` names the agreement a dataset asks for"
            + (f" (known: {', '.join(sorted(known)[:5])}{' ...' if len(known) > 5 else ''})" if known else "; no installed dataset asks for one")
        )
        raise UsageError(f"unknown agreement id {agreement_id!r}", hint=hint)
    settings_file = set_user_setting("agreements", agreement_id, True)
    context.settings.agreements[agreement_id] = True
    return settings_file


# -- orphans


def find_orphans(context: "Context", sizes: bool = False) -> list[tuple[Path, int]]:
    """Folders under ``<data dir>/data`` that no installed dataset claims (with their size in bytes when asked).

    A dataset claims its folder and what is inside; folders on the way to a
    dataset folder are not orphans themselves but their other children may be.
    """
    data = context.data_dir / "data"
    claimed: set[Path] = set()
    for entry in context.registry.index():
        claimed.add(data / entry.repository / Path(*entry.id.split(".")))
    ancestors = {parent for path in claimed for parent in path.parents}
    found: list[tuple[Path, int]] = []

    def visit(folder: Path, inside_dataset: bool) -> None:
        for child in sorted(folder.iterdir()):
            if not child.is_dir() or child.is_symlink() or child.name.startswith("."):
                continue
            if child in claimed or child in ancestors:
                visit(child, child in claimed)
            elif not inside_dataset:
                # inside a dataset's folder, other folders are its own entries
                found.append((child, _size(child) if sizes else 0))

    if data.is_dir():
        visit(data, False)
    return found


def _size(folder: Path) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


# -- scaffolding

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


# -- checks


def check_repositories(namespaces: list[str], context: "Context") -> list["CheckReport"]:
    """Checks the named repositories (all when none is named).

    :raises UsageError: an unknown namespace
    """
    from .check import check_repository

    repositories = context.registry.repositories()
    unknown = [name for name in namespaces if name not in repositories]
    if unknown:
        raise UsageError(f"no repository {', '.join(unknown)}", hint=f"installed repositories: {', '.join(sorted(repositories))}")
    return [check_repository(repositories[name], context) for name in (namespaces or sorted(repositories))]
