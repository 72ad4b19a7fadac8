"""The original datamaestro's (1.x) attributes of ``Context``, kept for the published plugins and 1.16 code.

:class:`datamaestro.context.Context` finds these names here on first use
(its ``__getattr__`` and its metaclass's, from the table
``context._FACE_NAMES``): the core calls none of them, and importing the
core does not load this module.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from .. import session

if TYPE_CHECKING:
    from ..settings import Settings


class _ClassProperty:
    """A read-only attribute computed on the class (``Context.INSTANCE``, ``Context.MAINDIR``)."""

    def __init__(self, getter):
        self.getter = getter
        self.__doc__ = getter.__doc__

    def __get__(self, obj, owner=None):
        return self.getter(owner if owner is not None else type(obj))


class DownloadedFile:
    """A file :meth:`ContextFace.downloadURL` fetched: ``.path``; removed when the ``with`` block ends."""

    def __init__(self, path: Path):
        self.path = path
        #: the original API's flag; the file lives in the store's tmp folder and never stays
        self.keep = False


class ContextFace:
    """The 1.x attributes of a ``Context``: read through the context (``context.datapath``, ``Context.instance()``), never called by the core."""

    #: whether ``downloadURL`` keeps its files, and whether the CLI shows tracebacks (the original's flags)
    keep_downloads = False
    traceback = False

    @_ClassProperty
    def INSTANCE(cls) -> Any:
        """The session in scope (the original's class attribute)."""
        return session.current()

    @_ClassProperty
    def MAINDIR(cls) -> Path:
        """The data dir of the session in scope (the original's class attribute)."""
        return session.current().data_dir

    @classmethod
    @contextmanager
    def frompath(cls, path: Path | str) -> Iterator[Any]:
        """A context on another data dir, in scope for a ``with`` block (the original API; ``cls`` is the ``Context`` class it is read from)."""
        with cls(overrides={"data_dir": Path(path)}) as context:
            yield context

    @classmethod
    def instance(cls) -> Any:
        """The session in scope (the original API's name; see :mod:`datamaestro.session`)."""
        return session.current()

    @classmethod
    def set_instance(cls, context: Any) -> None:
        """Replaces the default session, used outside any ``with Context()`` (None: a new one on next use)."""
        session.set_default(context)

    @property
    def user_settings(self) -> "Settings":
        """The settings (the original kept user preferences apart)."""
        return self.settings

    @property
    def datapath(self) -> Path:
        """``<data dir>/data``, where the readable folders of datasets are."""
        return self.data_dir / "data"

    @property
    def cachepath(self) -> Path:
        """``<data dir>/cache`` (the dataset index)."""
        return self.data_dir / "cache"

    @property
    def running_test(self) -> bool:
        """Whether pytest runs this process (as the original said)."""
        import os

        return "PYTEST_CURRENT_TEST" in os.environ

    @property
    def repositorymap(self) -> dict:
        """The repositories by their base module (``datamaestro_image``)."""
        return {repository.basemodule(): repository for repository in self.repositories() if repository.basemodule() is not None}

    def repositories(self) -> Iterator:
        """The installed repositories."""
        return iter(self.registry.repositories().values())

    def repository(self, repository_id: str | None):
        """The repository of a namespace (None for None).

        :raises UsageError: no such repository
        """
        if repository_id is None:
            return None
        found = self.registry.repositories().get(repository_id)
        if found is None:
            from ..errors import UsageError

            known = ", ".join(sorted(self.registry.repositories()))
            raise UsageError(f"No datasets repository named {repository_id}", hint=f"installed: {known}")
        return found

    def datasets(self) -> Iterator:
        """Every dataset of every repository."""
        for repository in self.repositories():
            yield from repository

    @contextmanager
    def downloadURL(self, url: str, size: int | None = None) -> Iterator[DownloadedFile]:
        """Downloads ``url`` into the store's tmp folder for a ``with`` block (the original API).

        Goes through the fetcher: mirrors, retries, resume, offline mode.
        """
        from ..download.checks import SizeCheck
        from ..download.single import FileSink

        path = self.store.tmp_path(".download")
        try:
            with path.open("wb") as fp:
                self.fetcher().fetch(url, FileSink(fp), checkers=[SizeCheck(size)] if size else [], description=url)
            yield DownloadedFile(path)
        finally:
            path.unlink(missing_ok=True)

    def ask(self, question: str, options: dict[str, str]) -> str:
        """Asks a question on the terminal until one of ``options``' keys is answered; returns its value."""
        print(question)  # noqa: T201
        answer = None
        while answer not in options:
            answer = input().strip().lower()
        return options[answer]
