"""Local mirrors of Hugging Face repositories: resolvers, built in or contributed by other packages.

The 1.x path of these names is ``datamaestro.helpers`` (a face of this module).

A package registers one entry point in the group ``datamaestro.helpers``
whose value is a callable without arguments returning
``{kind: helper or [helpers]}``::

    [project.entry-points."datamaestro.helpers"]
    mycluster = "datamaestro_mycluster:datamaestro_helpers"

    def datamaestro_helpers():
        return {"hf_resolver": MyClusterHFResolver()}

One kind is defined: ``"hf_resolver"`` (:class:`HFResolver`), which sends a
Hugging Face repository to a local mirror (an HPC cluster's shared cache).
A resolver driven by environment variables is always first:
``DATAMAESTRO_HF_MODELS_CACHE`` and ``DATAMAESTRO_HF_DATASETS_CACHE`` (lists
of folders, separated as ``PATH`` is) are searched for ``<root>/<repo_id>/``.

This module imports nothing of datamaestro: every layer may use it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Protocol, runtime_checkable

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "datamaestro.helpers"


@runtime_checkable
class HFResolver(Protocol):
    """Finds a local copy of a Hugging Face repository; None: ask the next resolver, then the Hub.

    Resolvers must be cheap and free of side effects: they may be asked
    several times.
    """

    def find_model(self, repo_id: str, revision: str | None) -> Path | None:
        """A local folder holding the model repository, or None."""
        ...

    def find_dataset(self, repo_id: str, config: str | None, data_files: str | None) -> Path | None:
        """A local folder holding the dataset repository, or None."""
        ...


class EnvHFResolver:
    """The built-in :class:`HFResolver`: folders named by environment variables, read on every call.

    ``DATAMAESTRO_HF_MODELS_CACHE``: ``<root>/<repo_id>/`` holding a
    ``config.json``; ``DATAMAESTRO_HF_DATASETS_CACHE``: ``<root>/<repo_id>/``.
    """

    MODELS_ENV = "DATAMAESTRO_HF_MODELS_CACHE"
    DATASETS_ENV = "DATAMAESTRO_HF_DATASETS_CACHE"

    @staticmethod
    def _roots(variable: str) -> list[Path]:
        return [Path(part) for part in os.environ.get(variable, "").split(os.pathsep) if part]

    def find_model(self, repo_id: str, revision: str | None) -> Path | None:
        """The first ``<root>/<repo_id>`` with a ``config.json``."""
        for root in self._roots(self.MODELS_ENV):
            path = root / repo_id
            if (path / "config.json").exists():
                logger.info("[hf_resolver:env] using the local copy of the model %r at %s", repo_id, path)
                return path
        return None

    def find_dataset(self, repo_id: str, config: str | None, data_files: str | None) -> Path | None:
        """The first ``<root>/<repo_id>`` folder."""
        for root in self._roots(self.DATASETS_ENV):
            path = root / repo_id
            if path.is_dir():
                logger.info("[hf_resolver:env] using the local copy of the dataset %r at %s", repo_id, path)
                return path
        return None


#: the original's name
_EnvHFResolver = EnvHFResolver


def get_helpers(kind: str) -> list:
    """Every helper of ``kind`` the installed packages contribute (the built-in resolver first for ``hf_resolver``).

    A package that fails to load its helpers is skipped, with its error logged.
    """
    from importlib.metadata import entry_points

    found: list = [EnvHFResolver()] if kind == "hf_resolver" else []
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            helpers = entry_point.load()()
        except Exception:
            logger.exception("cannot load the helpers of %s", entry_point.value)
            continue
        value = helpers.get(kind)
        if value is None:
            continue
        found.extend(value if isinstance(value, list) else [value])
    return found


def resolve_hf(kind: str, repo_id: str, *args) -> Path | None:
    """The first local copy a ``hf_resolver`` finds (``kind``: ``"model"`` or ``"dataset"``); None: use the Hub.

    A resolver that raises is skipped (its error logged).
    """
    for resolver in get_helpers("hf_resolver"):
        try:
            path = getattr(resolver, f"find_{kind}")(repo_id, *args)
        except Exception:
            logger.exception("hf_resolver %s.find_%s failed; skipped", type(resolver).__name__, kind)
            continue
        if path is not None:
            return Path(path)
    return None
