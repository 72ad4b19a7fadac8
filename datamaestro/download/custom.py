"""Custom derived resources: a file or folder computed by your code from other resources.

Subclass :class:`Derived` (or, for a plain function, use :func:`derived`):
datamaestro gives your code the store paths of the inputs and a place to
write, then stores the result like any download. The recipe key is made of
your class's name, its :meth:`~Derived.params`, its ``version`` and the
digests of the inputs, so the work is done once per store, for every
dataset and project that asks for the same thing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from ..errors import DefinitionError
from ..store import Output
from ..store.layout import remove_tree
from ..resource import Resource
from ..store.actions import Kind

if TYPE_CHECKING:
    from ..resource import Job


class Derived(Resource):
    """A resource computed from other resources by your code.

    Subclasses implement :meth:`prepare`, which reads the inputs and writes
    the output; datamaestro stores the output (moved into the store, no
    copy) and caches the result under the recipe key. Inputs are read-only
    store paths: never modify them.

    :param name: the output's name in the dataset folder
    :param inputs: the resources read, as a list (each known by its ``name``)
        or a dict ``{key: resource}`` (each known by its key)
    :param kind: ``"file"``: :meth:`prepare` writes one file at ``output``;
        ``"tree"``: it creates a folder at ``output``
    :param version: bump it when the code changes what it produces: the
        output is computed again (old outputs stay cached for old versions)
    :param transient: an intermediate, dropped once its dependents are complete
    :param varname: explicit variable name for decorator-style definitions

    A subclass with parameters of its own passes them to the recipe through
    :meth:`params`: anything that changes the output must be there.

    Example: a tokenized version of a downloaded text file::

        from pathlib import Path
        from datamaestro.data import File
        from datamaestro.definitions import Dataset, dataset
        from datamaestro.download.custom import Derived
        from datamaestro.download.single import FileDownloader

        class Tokenize(Derived):
            \"\"\"One token per line, lower-cased when asked.\"\"\"

            def __init__(self, name, source, *, lower=False, **kwargs):
                super().__init__(name, {"text": source}, kind="file", **kwargs)
                self.lower = lower

            def params(self):
                return {"lower": self.lower}

            def prepare(self, inputs: dict[str, Path], output: Path) -> None:
                with inputs["text"].open() as text, output.open("w") as tokens:
                    for line in text:
                        for token in line.split():
                            tokens.write((token.lower() if self.lower else token) + "\\n")

        @dataset(url="https://example.org/corpus")
        class Corpus(Dataset):
            TEXT = FileDownloader("corpus.txt", "https://example.org/corpus.txt.gz", transient=True)
            TOKENS = Tokenize("tokens.txt", TEXT, lower=True, version="2")

            def config(self) -> File:
                return File.C(path=self.TOKENS.path)
    """

    def __init__(
        self,
        name: str | None,
        inputs: Sequence[Resource] | Mapping[str, Resource],
        *,
        kind: str = "file",
        version: str = "1",
        transient: bool = False,
        varname: str | None = None,
    ):
        super().__init__(name, transient=transient, varname=varname)
        if kind not in ("file", "tree"):
            raise DefinitionError(f"{name}: kind must be 'file' or 'tree', not {kind!r}")
        if not isinstance(version, str):
            raise DefinitionError(f"{name}: version must be a string, not {version!r}")
        if isinstance(inputs, Mapping):
            self._inputs: dict[str, Resource] | list[Resource] = dict(inputs)
            resources = list(self._inputs.values())
        elif isinstance(inputs, Resource):
            self._inputs = [inputs]
            resources = self._inputs
        else:
            self._inputs = list(inputs)
            resources = self._inputs
        for resource in resources:
            if not isinstance(resource, Resource):
                raise DefinitionError(f"{name}: input {resource!r} is not a resource")
        self.kind = kind
        self.version = version

    # -- what subclasses provide
    def params(self) -> dict[str, Any]:
        """The subclass's own parameters (JSON values), part of the recipe key. Default: none."""
        return {}

    def prepare(self, inputs: dict[str, Any], output: Path) -> None:
        """Computes the output. Subclasses implement it.

        :param inputs: input key (or name) -> store path of the input (a file
            or a folder, read-only); the JSON value for a value resource
        :param output: where to write: a new file (``kind="file"``) or a new
            folder the method creates (``kind="tree"``); it does not exist yet
        """
        raise NotImplementedError(f"{type(self).__name__} must implement prepare(inputs, output)")

    # -- the resource protocol
    def inputs(self) -> dict[str, Resource]:
        """The inputs by key (a list's resources are known by their ``name``)."""
        if isinstance(self._inputs, dict):
            return dict(self._inputs)
        return {resource.name: resource for resource in self._inputs}

    def dependencies(self) -> list[Resource]:
        """The input resources."""
        return list(self._inputs.values()) if isinstance(self._inputs, dict) else list(self._inputs)

    def recipe(self) -> dict:
        """Class, version and :meth:`params` (the pipeline adds the input digests)."""
        params = self.params()
        try:
            json.dumps(params, sort_keys=True, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise DefinitionError(
                f"{self.name}: params() of {type(self).__qualname__} must return JSON values ({exc})",
                hint="give names, numbers or strings that identify the objects instead of the objects",
            ) from None
        recipe = {**super().recipe(), "kind": self.kind, "version": self.version, "params": params}
        if isinstance(self._inputs, dict):
            # the keys say which input plays which role
            recipe["roles"] = {key: resource.name for key, resource in sorted(self._inputs.items())}
        return recipe

    def produce(self, job: "Job") -> Output:
        """Runs :meth:`prepare` on a tmp path of the store, then stores what it wrote."""
        paths = {}
        for key, resource in self.inputs().items():
            paths[key] = job.input(resource).value if resource.kind == Kind.VALUE else job.input_path(resource)
        output = job.tmp_path(".derived")
        try:
            self.prepare(paths, output)
            if self.kind == Kind.FILE:
                if not output.is_file() or output.is_symlink():
                    raise DefinitionError(f"{job.description}: {type(self).__qualname__}.prepare() wrote no file at its output path")
                return Output(Kind.FILE, job.store.ingest_file(output, move=True))
            if not output.is_dir() or output.is_symlink():
                raise DefinitionError(f"{job.description}: {type(self).__qualname__}.prepare() created no folder at its output path")
            return Output(Kind.TREE, job.store.ingest_tree(output, move=True))
        finally:
            # what is left: empty folders after a move, or the work of a failed prepare()
            if os.path.lexists(output):
                remove_tree(output)


class _FunctionDerived(Derived):
    """The resource :func:`derived` builds: a :class:`Derived` running a plain function."""

    def __init__(self, name, inputs, function: Callable, *, kind: str, version: str, transient: bool, varname: str | None):
        super().__init__(name, inputs, kind=kind, version=version, transient=transient, varname=varname)
        self.function = _named_function(function, f"{name}: the function of a derived resource")

    def recipe(self) -> dict:
        """Adds the function's qualified name."""
        return {**super().recipe(), "function": f"{self.function.__module__}.{self.function.__qualname__}"}

    def prepare(self, inputs: dict[str, Any], output: Path) -> None:
        """Calls the function."""
        self.function(inputs, output)


def derived(
    name: str | None,
    inputs: Sequence[Resource] | Mapping[str, Resource],
    function: Callable[[dict[str, Any], Path], None],
    *,
    kind: str = "file",
    version: str = "1",
    transient: bool = False,
    varname: str | None = None,
) -> Derived:
    """A :class:`Derived` resource running a plain function, for derivations without parameters.

    :param name: the output's name in the dataset folder
    :param inputs: the resources read (list or ``{key: resource}``)
    :param function: ``function(inputs, output)`` with the arguments of
        :meth:`Derived.prepare`; a named function (its module and qualified
        name are part of the recipe key)
    :param kind: ``"file"`` or ``"tree"``
    :param version: bump it when the function changes what it produces

    Example::

        def count_lines(inputs, output):
            with inputs["corpus.txt"].open() as text:
                output.write_text(str(sum(1 for _ in text)))

        @dataset(url="https://example.org/corpus")
        class Corpus(Dataset):
            TEXT = FileDownloader("corpus.txt", "https://example.org/corpus.txt")
            LINES = derived("lines.txt", [TEXT], count_lines)
    """
    return _FunctionDerived(name, inputs, function, kind=kind, version=version, transient=transient, varname=varname)


class custom_download(Derived):
    """A folder your function fills (the original datamaestro's resource of that name).

    ``downloader(context, root, force=False)`` writes the folder ``root``
    (it exists, empty); datamaestro then stores it as a tree. The function's
    qualified name and ``version`` make the recipe key: bump ``version``
    when what it fetches changes.

    :param varname: the folder's name in the dataset folder (and the variable name)
    :param downloader: a named function ``(context, root, *, force)``

    Example::

        def fetch(context, root, force=False):
            with context.downloadURL("https://example.org/a.txt") as file:
                shutil.copy(file.path, root / "a.txt")

        class Corpus(Dataset):
            DATA = custom_download("data", downloader=fetch)
    """

    def __init__(self, varname: str, downloader: Callable, *, transient: bool = False, version: str = "1"):
        super().__init__(varname, [], kind="tree", version=version, transient=transient, varname=varname)
        self.downloader = _named_function(downloader, f"{varname}: the downloader of a custom_download")
        self._context = None

    def recipe(self) -> dict:
        """Adds the downloader's qualified name."""
        return {**super().recipe(), "function": f"{self.downloader.__module__}.{self.downloader.__qualname__}"}

    def produce(self, job: "Job") -> Output:
        """Runs the downloader with the job's context (``datapath``, ``downloadURL``...)."""
        self._context = job.context
        try:
            return super().produce(job)
        finally:
            self._context = None

    def prepare(self, inputs: dict[str, Any], output: Path) -> None:
        """Creates the folder and lets the downloader fill it."""
        output.mkdir()
        self.downloader(self._context, output, force=False)


def _named_function(function: Callable, what: str) -> Callable:
    """``function`` when it is a named function (its module and name go into a recipe key).

    :raises DefinitionError: a lambda, or something not callable
    """
    qualname = getattr(function, "__qualname__", None)
    if not callable(function) or not qualname or "<lambda>" in qualname:
        raise DefinitionError(
            f"{what} must be a named function (not {function!r})",
            hint="its module and name go into the recipe key; define it with `def`",
        )
    return function
