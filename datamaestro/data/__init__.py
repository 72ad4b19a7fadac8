"""Data types: the typed objects a prepared dataset hands back.

Every data type is an experimaestro :class:`~experimaestro.Config`. Module
paths, class names and ``Param`` names are part of the public contract: an
experimaestro identifier is computed from the type id (module + class) and
the ``Param`` values, so renaming any of them would change the identifier of
every task that uses the data. Paths are ``Meta``: where the store put the
bytes must not change what a task *is*.

Example::

    from datamaestro.data import File

    readme = File.C(id="org.example.corpus@readme", path=Path("README.txt"))
    with readme.open("r") as fp:
        print(fp.read())
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from experimaestro import Meta, Param, Prepare
from experimaestro.core.objects.config import ConfigMixin

logger = logging.getLogger(__name__)


class Base(Prepare):
    """Base class of every data type.

    It is an experimaestro :class:`~experimaestro.Prepare`: when a task
    references a data config in its parameters, experimaestro calls
    :meth:`prepare` (that is, makes the data present in the store) before the
    task runs. Preparing is idempotent, so it costs nothing on a warm store.

    :param id: the data id, ``<dataset id>@<data name>`` (for instance
        ``com.lecun.mnist@image``) or, for nested data,
        ``com.lecun.mnist.train@image``
    """

    id: Param[str]
    """The unique (sub-)dataset id"""

    def __new__(cls, *args, **kwargs):
        # Code written for experimaestro 1 builds configs by calling the
        # class (``AdhocRun(id=...)``); experimaestro 2 builds them with
        # ``AdhocRun.C(...)`` and refuses arguments. Published plugins still
        # do the former, so a call with arguments builds the config.
        # (experimaestro creates value objects with ``cls.__new__(cls)``.)
        if args or kwargs:
            _warn_direct_call(cls)
            return cls.C(*args, **kwargs)
        return super().__new__(cls)

    def _data_id(self) -> str | None:
        """Returns the id, or None for a config built without one.

        A dynamically generated config (an ad-hoc subset, for instance) has
        no registered id and therefore nothing to download.
        """
        try:
            data_id = self.id
        except (KeyError, AttributeError):
            return None
        return data_id or None

    def download(self) -> None:
        """Makes the data present on disk (downloads it when needed)."""
        data_id = self._data_id()
        if data_id is None:
            return

        from datamaestro import session

        session.current().prepare_data_id(data_id)

    def is_prepared(self) -> bool:
        """Whether the data is present already (what experimaestro asks before preparing).

        Answered from the store of the session in scope, cheaply (no rehash,
        no network), as the lock in scope pins the dataset. A config no known
        dataset owns (no id, an ad-hoc one) has nothing to prepare. Because
        it is implemented, a heavy preparation can run as a job of its own::

            data = prepare_dataset("com.lecun.mnist").submit(launcher=launcher)
        """
        data_id = self._data_id()
        if data_id is None:
            return True

        from datamaestro import session

        return session.current().is_prepared_data_id(data_id)

    def prepare(self, *args, **kwargs) -> "Base":
        """Makes the data present on disk and returns this config.

        experimaestro calls it before any task that references this config;
        it is also safe to call directly.
        """
        self.download()
        return self

    def dataset_information(self) -> dict[str, Any]:
        """Returns ``{"id", "name", "description"}`` of the owning dataset.

        Name and description are empty strings when no known dataset owns
        this data (for instance an ad-hoc config).
        """
        data_id = self._data_id()
        dataset = None
        if data_id is not None:
            from datamaestro import session

            dataset = session.current().dataset_for_data_id(data_id)
        return {
            "id": data_id or "",
            "name": getattr(dataset, "name", None) or "",
            "description": getattr(dataset, "description", None) or "",
        }


def _submit_preparation(self, *args, **kwargs):
    """``config.submit(launcher=...)``: prepares the data in a job, which the nested data configs follow too.

    experimaestro finds every ``Prepare`` reachable from a task's parameters,
    nested ones included: a dataset's ``train`` or ``train.images`` config
    would each be prepared in the driver (preparing the whole dataset), and
    the job would find nothing left to do. Once the dataset's config is
    submitted, its nested data configs depend on that job instead.
    """
    result = ConfigMixin.submit(self, *args, **kwargs)
    from experimaestro.scheduler.prepare import PrepareResource

    job = PrepareResource.for_config(self).job
    if job is not None:
        for nested in _nested_data(self):
            PrepareResource.for_config(nested).job = job
    return result


def _nested_data(config) -> list["Base"]:
    """The data configs reachable from a config's values (itself excluded)."""
    from experimaestro import Config

    found: list[Base] = []
    seen = {id(config)}

    def visit(value) -> None:
        if isinstance(value, Config):
            if id(value) in seen:
                return
            seen.add(id(value))
            if isinstance(value, Base):
                found.append(value)
            for child in value.__xpm__.values.values():
                visit(child)
        elif isinstance(value, (list, tuple, set)):
            for item in value:
                visit(item)
        elif isinstance(value, dict):
            for item in value.values():
                visit(item)

    for child in config.__xpm__.values.values():
        visit(child)
    return found


# the generated config classes of every data type inherit it (ConfigMixin.submit comes later in their MRO)
Base.C.submit = _submit_preparation


_warned_direct_calls: set[type] = set()


def _warn_direct_call(cls: type) -> None:
    """Logs once per class that ``X(...)`` should be ``X.C(...)``."""
    if cls not in _warned_direct_calls:
        _warned_direct_calls.add(cls)
        logger.debug("%s.%s(...) builds a config: write %s.C(...)", cls.__module__, cls.__qualname__, cls.__qualname__)


class Generic(Base):
    """A placeholder data type that accepts any keyword value.

    Values that are not declared parameters become plain attributes: they are
    not part of the experimaestro identifier and do not survive
    serialization, hence the warning. Use a proper data type instead whenever
    one exists.

    Example::

        data = Generic.C(id="org.example.thing@data", url="https://...")
        data.url
    """

    def __init__(self, **kwargs):
        super().__init__()
        _set_untyped(self, kwargs)


def _set_untyped(data: Generic, values: dict[str, Any]) -> None:
    """Stores values as plain attributes, out of experimaestro's sight."""
    logger.warning("Generic should be avoided (its values are untyped)")
    for key, value in values.items():
        object.__setattr__(data, key, value)


def _generic_config_init(self, **kwargs):
    """Builds a :class:`Generic` config, keeping undeclared values as attributes.

    The generated config class places experimaestro's own ``__init__`` (which
    rejects unknown keywords) before :meth:`Generic.__init__`, so the
    config side needs its own constructor to accept arbitrary values.
    """
    arguments = self.__xpmtype__.arguments
    declared = {key: value for key, value in kwargs.items() if key in arguments}
    extra = {key: value for key, value in kwargs.items() if key not in arguments}
    ConfigMixin.__init__(self, **declared)
    _set_untyped(self, extra)


Generic.C.__init__ = _generic_config_init


class File(Base):
    """A data file.

    :param path: where the file is (a ``Meta``: it does not change the
        identifier)
    """

    path: Meta[Path]
    """The path of the file"""

    def open(self, mode: str = "r"):
        """Opens the file, as :meth:`pathlib.Path.open` does.

        :raises DatamaestroError: the data is not on disk (naming the dataset and what to run)
        """
        return self.present_path().open(mode)

    def present_path(self) -> Path:
        """The path of the file, checked to lead to data.

        :raises DatamaestroError: the path, or the store object it links to,
            is missing (not prepared or synced, collected, quarantined, the
            store deleted): naming the dataset and what to run
        """
        return _present(self, Path(self.path))


class Folder(Base):
    """A data folder.

    :param path: where the folder is (a ``Meta``: it does not change the
        identifier)
    """

    path: Meta[Path]
    """The path of the folder"""

    def present_path(self) -> Path:
        """The path of the folder, checked to lead to data (see :meth:`File.present_path`)."""
        return _present(self, Path(self.path))


def _present(data: Base, path: Path) -> Path:
    """``path`` when it leads to data; else the error saying whose data is missing and what to run."""
    if path.exists():
        return path
    from ..errors import MissingDataError

    data_id = data._data_id()
    dataset_id = (data_id or "").partition("@")[0]
    if data_id:
        try:
            from datamaestro import session

            definition = session.current().dataset_for_data_id(data_id)
            dataset_id = definition.id if definition is not None else dataset_id
        except Exception as exc:  # the message must be given even when the registry cannot be read
            logger.debug("cannot tell which dataset owns %s: %s", data_id, exc)
    raise MissingDataError(dataset_id, path)
