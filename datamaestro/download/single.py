"""Single-file downloads: :class:`FileDownloader` and :class:`ConcatDownloader`."""

from __future__ import annotations

import logging
import lzma
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence, TypeVar
from urllib.parse import urlsplit

from ..errors import DefinitionError, UnreadableArchiveError
from ..lazy import lazy_getattr
from ..store import Output
from ..resource import FileResource
from ..store.actions import Kind

if TYPE_CHECKING:
    from ..fetch import FetchResult
    from ..resource import Job


logger = logging.getLogger(__name__)


def _transforms(transforms, url: str) -> list:
    from .transforms import by_name, infer_transforms

    if transforms is None:
        return infer_transforms(url)
    if not isinstance(transforms, (list, tuple)):
        transforms = [transforms]
    steps = []
    for transform in transforms:
        if isinstance(transform, str):
            steps.append(by_name(transform))
        elif callable(getattr(transform, "streaming", None)):
            # a transform of the original API (datamaestro.stream) says how it streams
            steps.extend(transform.streaming())
        else:
            steps.append(transform)
    return steps


def _checkers(checker, size: int | None) -> list:
    from .checks import SizeCheck

    checkers = []
    if checker is not None:
        checkers.extend(checker if isinstance(checker, (list, tuple)) else [checker])
    if size is not None:
        checkers.append(SizeCheck(size))
    return checkers


class TransformingSink:
    """A fetch sink that pushes bytes through transforms into an object writer.

    :param budget: counts what comes out (an
        :class:`~datamaestro.store.expansion.ExpansionBudget`): a
        decompression bomb is refused before it fills the disk
    :param count_input: the raw bytes are the download (the budget's ratio
        grows with them); False when the caller declared the download's size
    """

    def __init__(self, writer, transforms: Sequence, budget=None, *, count_input: bool = True):
        self.writer = writer
        self.transforms = list(transforms)
        self.states = [t.start() for t in self.transforms]
        self.budget = budget
        self.count_input = count_input

    def write(self, data: bytes) -> None:
        """Feeds raw bytes; writes what comes out of the last transform, piece by piece."""
        if self.budget is not None and self.count_input:
            self.budget.add_input(len(data))
        self._push(0, data)

    def _push(self, index: int, data: bytes) -> None:
        if index == len(self.states):
            if data:
                if self.budget is not None:
                    self.budget.add(len(data))
                self.writer.write(data)
            return
        for piece in self.states[index].feed_pieces(data):
            self._push(index + 1, piece)

    def reset(self) -> None:
        """Starts over: an empty object and fresh transform states."""
        self.writer.reset()
        if self.budget is not None and self.count_input:
            self.budget.reset()
        self.states = [t.start() for t in self.transforms]

    def finish(self) -> None:
        """Flushes every transform (raises on a truncated compressed stream)."""
        for index, state in enumerate(self.states):
            self._push(index + 1, state.finish())


def expansion_budget(job: "Job", what: str, download_size: int = 0):
    """The bound on what a download expands to, from the session's settings (``max_expanded_size``, ``max_expansion_ratio``)."""
    from ..store.expansion import ExpansionBudget

    return ExpansionBudget.for_settings(job.settings, what, download_size, folder=job.store.layout.tmp)


@contextmanager
def downloaded_file(job: "Job", url: str, checkers: Sequence = ()):
    """Downloads ``url`` into a tmp file of the store, removed when the block ends.

    For resources that need the whole file before they can read it (archives)::

        with downloaded_file(job, self.url, self.checkers) as (path, result):
            ...  # read path; result is the FetchResult (source digest, size, url)
    """
    from ..store.layout import create_new, creating_in_tmp

    with creating_in_tmp():
        path = job.tmp_path(".download")
        fp = create_new(path)
    try:
        with fp:
            result = job.download(url, FileSink(fp), checkers=checkers)
        yield path, result
    finally:
        path.unlink(missing_ok=True)


_Read = TypeVar("_Read")


def using_downloaded_file(job: "Job", url: str, checkers: Sequence, read: "Callable[[Path, FetchResult], _Read]") -> _Read:
    """Downloads ``url`` into a tmp file of the store and returns ``read(path, result)``; the file is removed after.

    A download resumed from bytes an earlier run kept is one whole only the
    reader can check when nothing pins its hash: the kept bytes may be
    another answer of the server under the same validators (a proxy's
    error page, a file replaced in place). When ``read`` finds such a file
    unreadable (:class:`~datamaestro.errors.UnreadableArchiveError`), it is
    downloaded once more from byte 0 and read again; a download that was
    not resumed is not tried twice.
    """
    with downloaded_file(job, url, checkers) as (path, result):
        try:
            return read(path, result)
        except UnreadableArchiveError as exc:
            if not result.resumed:
                raise
            logger.warning("%s: the resumed download cannot be read (%s): downloading it again from the start", url, exc.message)
    # the first download succeeded, so its kept bytes are gone: this one starts at byte 0
    with downloaded_file(job, url, checkers) as (path, result):
        return read(path, result)


class FileDownloader(FileResource):
    """Downloads one file, decompressing it on the fly.

    The bytes are streamed once: hashed as downloaded (the source digest,
    checked by ``checker`` and ``size``), decompressed, hashed again and
    written into the store.

    :param filename: the file's name in the dataset folder (its variable name
        in decorator-style definitions is the name without extension)
    :param url: where to download it from (a mirror setting may redirect it)
    :param size: expected size in bytes of the download (checked)
    :param transforms: transforms to apply (names such as ``"gunzip"`` or
        transform objects); default: inferred from the URL (``.gz``,
        ``.bz2``, ``.xz``); ``[]`` keeps the bytes as they are
    :param checker: a checker or a list of them, e.g. ``Md5Check("...")``

    Example::

        TRAIN = FileDownloader("train.csv", "https://example.org/train.csv.gz")
    """

    def __init__(self, filename: str, url: str, size: int | None = None, transforms=None, checker=None, *, varname: str | None = None, transient: bool = False):
        super().__init__(filename, varname=varname, transient=transient)
        if not isinstance(url, str) or not urlsplit(url).scheme:
            raise DefinitionError(f"{filename}: {url!r} is not a URL")
        self.url = url
        self.size = size
        self.transforms = _transforms(transforms, url)
        self.checkers = _checkers(checker, size)

    def recipe(self) -> dict:
        """URL, transforms and checks: what determines the bytes."""
        from .transforms import recipe_of

        return {
            **super().recipe(),
            "url": self.url,
            "transforms": recipe_of(self.transforms),
            "checks": [c.recipe() for c in self.checkers],
        }

    def urls(self) -> list[str]:
        """The one URL downloaded."""
        return [self.url]

    @property
    def concurrent(self) -> bool:
        """True: the pipeline may run it beside other downloads (it touches nothing but its job).

        A subclass with a ``produce`` of its own (a 1.x resource) is run alone.
        """
        return type(self).produce is FileDownloader.produce

    def produce(self, job: "Job") -> Output:
        """Streams the URL through the transforms into a new object (its expansion bounded by the settings)."""
        budget = expansion_budget(job, self.url) if self.transforms else None
        with job.store.writer() as writer:
            sink = TransformingSink(writer, self.transforms, budget)
            result = job.download(self.url, sink, checkers=self.checkers)
            sink.finish()
            digest = writer.commit()
        return Output(Kind.FILE, digest, source_digest=result.source_digest, url=result.url, size=result.size)


filedownloader = FileDownloader.apply


class ConcatDownloader(FileResource):
    """Concatenates every regular file of a tar archive into one file.

    Members are taken in archive order; each is decompressed according to
    its own name (``part1.gz`` is gunzipped) unless ``transforms`` is given.

    :param filename: the file's name in the dataset folder
    :param url: the archive's URL
    :param transforms: transforms applied to every member (default: by member name)
    """

    def __init__(self, filename: str, url: str, transforms=None, *, varname: str | None = None, transient: bool = False):
        super().__init__(filename, varname=varname, transient=transient)
        self.url = url
        self.transforms = None if transforms is None else _transforms(transforms, url)

    def recipe(self) -> dict:
        """URL and member transforms."""
        from .transforms import recipe_of

        return {**super().recipe(), "url": self.url, "transforms": None if self.transforms is None else recipe_of(self.transforms)}

    def urls(self) -> list[str]:
        """The archive's URL."""
        return [self.url]

    def produce(self, job: "Job") -> Output:
        """Downloads the archive to tmp, then streams its members into one object."""
        import tarfile  # here: a warm prepare, which builds configs only, does not need it

        from .transforms import infer_transforms

        def concatenate(archive_path: Path, result: "FetchResult") -> Output:
            budget = expansion_budget(job, self.url, archive_path.stat().st_size)
            with job.store.writer() as writer:
                try:
                    with tarfile.open(archive_path) as archive:
                        for member in archive:
                            if not member.isreg():
                                continue
                            transforms = self.transforms if self.transforms is not None else infer_transforms(member.name)
                            sink = TransformingSink(writer, transforms, budget, count_input=False)
                            stream = archive.extractfile(member)
                            while chunk := stream.read(1 << 20):
                                sink.write(chunk)
                            sink.finish()
                except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError) as exc:
                    raise UnreadableArchiveError(
                        f"{self.url}: not a valid tar archive ({exc})",
                        hint="the download may be corrupt or the URL may serve something else",
                    ) from None
                digest = writer.commit()
            return Output(Kind.FILE, digest, source_digest=result.source_digest, url=result.url, size=result.size)

        return using_downloaded_file(job, self.url, (), concatenate)


class FileSink:
    """A fetch sink writing into an open file."""

    def __init__(self, fp):
        self.fp = fp

    def write(self, data: bytes) -> None:
        """Appends bytes."""
        self.fp.write(data)

    def reset(self) -> None:
        """Truncates the file."""
        self.fp.seek(0)
        self.fp.truncate()


concatdownloader = ConcatDownloader.apply


#: deprecated names of the original datamaestro, by the name each stands for (a warning on first use)
__getattr__ = lazy_getattr(
    __name__,
    {"SingleDownload": f"{__name__}:FileDownloader", "concatdownload": f"{__name__}:concatdownloader"},
    deprecated={"SingleDownload": "SingleDownload is deprecated, use FileDownloader", "concatdownload": "concatdownload is deprecated, use ConcatDownloader"},
)
