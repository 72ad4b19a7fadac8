"""Stream transforms of the original datamaestro (``transforms=TransformList(Gunzip(), Replace(...))``).

A :class:`Transform` of the original API wraps a readable binary file
object (``transform(fileobj)`` returns another one). Definitions of the
published plugins pass them to ``FileDownloader`` and ``ConcatDownloader``.
Each one also says how it runs on datamaestro's streaming pipeline
(:meth:`Transform.streaming`): gunzip and the line transforms of
:mod:`datamaestro.stream.lines` stream chunk by chunk while the download is
written to the store; a plugin's own transform is run on the whole stream
once it has arrived.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import BinaryIO

from ...download import transforms as streaming


class Transform:
    """A transform of a binary file object (the original API).

    Subclasses implement ``__call__(fileobj) -> fileobj``; those that can
    work chunk by chunk also override :meth:`streaming`.
    """

    @staticmethod
    def createFromPath(path: Path) -> "Transform":
        """Gunzip for a ``.gz`` name, else the identity."""
        if Path(path).suffix == ".gz":
            return Gunzip()
        return Identity()

    def path(self, path):
        """The name of the transformed file (``x.gz`` -> ``x`` for gunzip)."""
        return path

    def __call__(self, fileobj: BinaryIO) -> BinaryIO:
        raise NotImplementedError(f"{type(self).__name__} must implement __call__(fileobj)")

    def streaming(self) -> list[streaming.Transform]:
        """Its equivalent as streaming transforms (default: run ``__call__`` on the whole stream)."""
        return [FileObjectTransform(self)]


class Identity(Transform):
    """Leaves the stream as it is."""

    def __call__(self, fileobj: BinaryIO) -> BinaryIO:
        return fileobj

    def streaming(self) -> list[streaming.Transform]:
        """Nothing to do."""
        return []


class TransformList(Transform):
    """Transforms applied one after the other.

    :param transforms: the transforms, first applied first
    """

    def __init__(self, *transforms: Transform):
        self.list = list(transforms)

    def append(self, transform: Transform) -> None:
        """Adds a transform at the end."""
        self.list.append(transform)

    def path(self, path):
        """The name after every transform."""
        for transform in self.list:
            path = transform.path(path)
        return path

    def __call__(self, fileobj: BinaryIO) -> BinaryIO:
        for transform in self.list:
            fileobj = transform(fileobj)
        return fileobj

    def streaming(self) -> list[streaming.Transform]:
        """The streaming transforms of each, in order."""
        return [step for transform in self.list for step in transform.streaming()]


def describe(transform: Transform) -> str:
    """A stable text naming a transform and its parameters (for recipe keys)."""
    from ..legacy import legacy_parameters

    cls = type(transform)
    parameters = legacy_parameters(transform) if hasattr(transform, "__dict__") else {}
    import json

    return f"{cls.__module__}.{cls.__qualname__}{json.dumps(parameters, sort_keys=True)}"


class _WholeStreamState(streaming.TransformState):
    """Collects the stream in a temporary file; runs the transform when it ends."""

    def __init__(self, transform: Transform):
        self.transform = transform
        self.buffer = tempfile.TemporaryFile()

    def feed_pieces(self, data: bytes):
        self.buffer.write(data)
        return iter(())

    def finish(self) -> bytes:
        self.buffer.seek(0)
        try:
            with self.transform(self.buffer) as output:
                return output.read()
        except AttributeError:
            # a transform returning a file object without context-manager support
            self.buffer.seek(0)
            return self.transform(self.buffer).read()
        finally:
            self.buffer.close()


class FileObjectTransform(streaming.Transform):
    """Runs a transform of the original API on the whole stream, once it has arrived.

    :param transform: the original transform
    """

    def __init__(self, transform: Transform):
        self.transform = transform
        self.name = describe(transform)

    def start(self) -> streaming.TransformState:
        """A fresh buffer."""
        return _WholeStreamState(self.transform)



class Gunzip(Transform):
    """Decompresses gzip data (streams as datamaestro's ``gunzip`` transform; 1.x path: ``datamaestro.stream.compress``)."""

    def __call__(self, fileobj: BinaryIO) -> BinaryIO:
        import gzip

        return gzip.GzipFile(fileobj=fileobj)

    def path(self, path):
        """``x.gz`` -> ``x``."""
        path = Path(path)
        return path.with_suffix("") if path.suffix == ".gz" else path

    def streaming(self):
        """The streaming gunzip."""
        return [streaming.GUNZIP]


# recipes, pickles and messages keep naming the 1.x module
from .. import keep_public_module  # noqa: E402

keep_public_module(globals(), 'datamaestro.stream')
Gunzip.__module__ = "datamaestro.stream.compress"
