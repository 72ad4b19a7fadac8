"""Folders a user provides by hand (licensed data): ``datamaestro datafolders set ID PATH``.

Some data cannot be downloaded: a licence (TREC's Tipster disks, LDC
corpora) makes each user obtain it. A definition names such a folder by an
id and a path inside it, ``DatafolderPath("gov.nist.trec.tipster",
"Disk1/WSJ")``; the user says once where the folder is, in the
``[datafolders]`` table of the settings (``datamaestro datafolders set``),
and preparing the dataset stores the files it names (see
:class:`datamaestro.download.links.linkfolder`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import DatamaestroError


class ResolvablePath:
    """A path known only once the user's settings are read."""

    def __call__(self, context) -> Path:
        """The path, in a context."""
        raise NotImplementedError

    @staticmethod
    def resolve(context, path: "ResolvablePath | str | Path") -> Path:
        """A :class:`ResolvablePath`, or a plain path (``~`` expanded)."""
        if isinstance(path, ResolvablePath):
            return path(context)
        return Path(path).expanduser()

    def describe(self) -> str:
        """A JSON-able description (for recipe keys and messages)."""
        return str(self)


class DatafolderPath(ResolvablePath):
    """``<the folder the user gave for folderid>/<path>``.

    :param folderid: the data folder's id (often the dataset id)
    :param path: a path inside that folder

    Example::

        DOCUMENTS = linkfolder("documents", [DatafolderPath("gov.nist.trec.tipster", "Disk1/WSJ/1987")])
    """

    def __init__(self, folderid: str, path: str | Path):
        self.folderid = folderid
        self.path = str(path)

    def __str__(self) -> str:
        return f"datafolder:{self.folderid}/{self.path}"

    def __call__(self, context) -> Path:
        """Resolves the folder from the settings.

        :raises DatamaestroError: the user has not set this data folder
        """
        folders = context.settings.datafolders
        if self.folderid not in folders:
            raise DatamaestroError(
                f"data folder {self.folderid!r} is not set (it must hold {self.path})",
                hint=f"obtain the data, then run: datamaestro datafolders set {self.folderid} /path/to/the/folder",
            )
        return Path(folders[self.folderid]) / self.path


def describe_proposal(proposal: Any) -> str:
    """A proposal of a manual resource as text (recipe keys, messages)."""
    return proposal.describe() if isinstance(proposal, ResolvablePath) else str(proposal)


# recipes, pickles and messages keep naming the 1.x module
from . import keep_public_module  # noqa: E402

keep_public_module(globals(), 'datamaestro.datafolders')
