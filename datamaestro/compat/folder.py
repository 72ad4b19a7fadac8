"""1.16's dataset folder: resources bound to a dataset object that names its own folder.

datamaestro 1.16 kept a dataset's data in a folder of its own
(``dataset.datapath``): each resource wrote at its ``transient_path``
(``<datapath>/.downloads/<name>``), the framework moved it to its ``path``
and recorded its state in ``<datapath>/.state.json``, under
``<datapath>/.state.lock``. Code written for it (an :class:`AbstractDataset`
subclass with its own ``datapath`` and ``_prepare``, resources bound with
``resource.bind(name, dataset)``) still runs that way: the folder is the
dataset's own, outside the store, like the ir_datasets cache of a generated
dataset, and the store sees such a dataset only through its
``download()`` and ``is_prepared()`` (see
:class:`~datamaestro.compat.generated.GeneratedDefinition`). Datasets
declared with ``@dataset`` go through the store instead; their resources'
state is the store's action records.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import DownloadError
from ..resource import ResourceState

if TYPE_CHECKING:
    from ..resource import Resource

logger = logging.getLogger(__name__)

#: the files of a dataset folder that are not data
METADATA_FILES = frozenset({".state.json", ".state.json.tmp", ".state.tmp", ".state.lock", ".downloads"})


class ResourceStateFile:
    """The states of a dataset folder's resources: ``<datapath>/.state.json`` (1.16's format).

    ``{"version": 1, "resources": {"NAME": {"state": "complete"}}}``. A file
    that does not parse, or a state that is not one of
    :class:`ResourceState`, reads as NONE (the resource is produced again).

    :param datapath: the dataset's folder
    """

    VERSION = 1

    def __init__(self, datapath: Path):
        self._path = Path(datapath) / ".state.json"

    def read(self, resource_name: str) -> ResourceState:
        """The state recorded for a resource (NONE when none is)."""
        entry = self._load()["resources"].get(resource_name)
        try:
            return ResourceState(entry["state"]) if isinstance(entry, dict) else ResourceState.NONE
        except (KeyError, ValueError):
            return ResourceState.NONE

    def write(self, resource_name: str, state: ResourceState) -> None:
        """Records a resource's state (written to a temporary file, then renamed)."""
        data = self._load()
        data["resources"][resource_name] = {"state": ResourceState(state).value}
        self._path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._path.with_suffix(".json.tmp")
        with tmp.open("w") as fp:
            json.dump(data, fp, indent=2)
        os.replace(tmp, self._path)

    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self._path.read_text())
        except FileNotFoundError:
            data = None
        except (OSError, ValueError) as exc:
            logger.warning("ignoring %s, which cannot be read: %s", self._path, exc)
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("resources"), dict):
            return {"version": self.VERSION, "resources": {}}
        return data


def topological_sort(resources: dict[str, "Resource"]) -> list["Resource"]:
    """The resources, each after its dependencies.

    :raises ValueError: the dependencies form a cycle ("Cycle detected ...")
    """
    visited: set[int] = set()
    visiting: set[int] = set()
    ordered: list["Resource"] = []

    def visit(resource: "Resource") -> None:
        if id(resource) in visited:
            return
        if id(resource) in visiting:
            raise ValueError(f"Cycle detected in resource dependencies involving {resource.name}")
        visiting.add(id(resource))
        for dependency in resource.dependencies:
            visit(dependency)
        visiting.discard(id(resource))
        visited.add(id(resource))
        ordered.append(resource)

    for resource in resources.values():
        visit(resource)
    return ordered


def compute_dependents(resources: dict[str, "Resource"]) -> None:
    """Sets each resource's ``dependents`` (the resources that use it) from their dependencies."""
    for resource in resources.values():
        resource._dependents = []
    for resource in resources.values():
        for dependency in resource.dependencies:
            dependents = dependency.__dict__.setdefault("_dependents", [])
            if resource not in dependents:
                dependents.append(resource)


def bind_class_resources(cls: type, dataset) -> None:
    """Binds the resources declared as attributes of ``cls`` to ``dataset``, then orders them.

    :raises ValueError: their dependencies form a cycle
    """
    from ..resource import Resource

    for attribute, value in vars(cls).items():
        if isinstance(value, Resource):
            value.bind(attribute, dataset)
    compute_dependents(dataset.resources)
    dataset.ordered_resources = topological_sort(dataset.resources)


def delete_path(path: Path) -> None:
    """Removes a file, a link or a folder (nothing if absent)."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def files_present(resource: "Resource") -> bool:
    """Whether a resource's output is in its dataset folder (a folder at the dataset's own path must hold data)."""
    present = getattr(resource, "files_present", None)
    if present is not None:
        return present()
    return resource.path.exists()


def folder_has_data(path: Path, datapath: Path) -> bool:
    """Whether ``path`` exists and, when it is the dataset folder itself, holds more than the metadata files."""
    if not path.exists():
        return False
    if path != datapath:
        return True
    return any(child.name not in METADATA_FILES for child in path.iterdir())


def _all_dependents_complete(resource: "Resource") -> bool:
    dependents = list(getattr(resource, "dependents", []) or [])
    return bool(dependents) and all(d.state == ResourceState.COMPLETE for d in dependents)


def is_prepared(dataset) -> bool:
    """Whether every resource of the dataset folder is there: what :func:`download` would skip. Reads only."""
    for resource in dataset.ordered_resources:
        if resource.transient and _all_dependents_complete(resource):
            continue
        state = resource.state
        if state == ResourceState.COMPLETE:
            if resource.has_files() and not files_present(resource):
                return False
            continue
        if resource.has_files() and files_present(resource):
            continue  # data of an older download, from before the state file
        return False
    return True


def download(dataset, force: bool = False) -> bool:
    """Produces the resources of a dataset folder in order, under ``<datapath>/.state.lock``.

    Each resource writes at its ``transient_path``, which is moved to its
    ``path`` once it succeeds; its state is then COMPLETE, and a transient
    input whose users are all complete is removed. A resource that fails
    leaves its transient data only if it ``can_recover`` (state PARTIAL).
    False when a resource failed (``dataset._download_error`` says which).
    """
    from filelock import FileLock

    datapath = Path(dataset.datapath)
    datapath.mkdir(parents=True, exist_ok=True)
    with FileLock(str(datapath / ".state.lock")):
        success = _download_locked(dataset, force)
    downloads = datapath / ".downloads"
    if success and downloads.is_dir() and not any(downloads.iterdir()):
        downloads.rmdir()
    return success


def _cleanup_transient_inputs(resource: "Resource") -> None:
    for dependency in resource.dependencies:
        if dependency.transient and _all_dependents_complete(dependency):
            logger.info("removing transient resource %s (all its users are complete)", dependency.name)
            dependency.cleanup()


def _download_locked(dataset, force: bool) -> bool:
    for resource in dataset.ordered_resources:
        if not force and resource.transient and _all_dependents_complete(resource):
            continue
        state = resource.state
        if state == ResourceState.COMPLETE and not force:
            if resource.has_files() and not files_present(resource):
                logger.warning("resource %s is marked complete but is missing at %s: produced again", resource.name, resource.path)
                resource.state = state = ResourceState.NONE
            else:
                _cleanup_transient_inputs(resource)
                continue
        if state == ResourceState.NONE and not force and resource.has_files() and files_present(resource):
            logger.info("resource %s is already at %s: marked complete", resource.name, resource.path)
            resource.state = ResourceState.COMPLETE
            _cleanup_transient_inputs(resource)
            continue
        if state == ResourceState.PARTIAL and not resource.can_recover:
            delete_path(resource.transient_path)
            resource.state = ResourceState.NONE
        for dependency in resource.dependencies:
            if dependency.state != ResourceState.COMPLETE:
                dataset._download_error = DownloadError(
                    f"Dependency {dependency.name} of {resource.name} is not complete", hint="prepare the dataset again; see the messages above"
                )
                return False
        try:
            resource.download(force=force)
            if resource.has_files():
                _move(resource.transient_path, resource.path)
            resource.state = ResourceState.COMPLETE
        except Exception as exc:
            logger.error("could not download resource %s: %s: %s", resource.name, type(exc).__name__, exc)
            error = DownloadError(f"Could not download resource {resource.name}: {type(exc).__name__}: {exc}", hint="run with --traceback for details")
            error.__cause__ = exc
            dataset._download_error = error
            if resource.has_files() and resource.transient_path.exists():
                if resource.can_recover:
                    resource.state = ResourceState.PARTIAL
                else:
                    delete_path(resource.transient_path)
                    resource.state = ResourceState.NONE
            return False
        _cleanup_transient_inputs(resource)
    return True


def _move(source: Path, target: Path) -> None:
    """Moves a finished output from its transient path to its path (nothing when the resource wrote at its path)."""
    if not (source.exists() or source.is_symlink()) or source == target:
        return
    if target.exists() or target.is_symlink():
        if target.is_dir() and source.is_dir() and not target.is_symlink():
            # the dataset folder itself (a folder resource at the dataset's path): move the entries
            for child in source.iterdir():
                _move(child, target / child.name)
            source.rmdir()
            return
        delete_path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, target)

