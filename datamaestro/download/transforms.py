"""Streaming transforms: byte processors applied while a download is written.

A :class:`Transform` describes a step (``gunzip``, ``bunzip2``, ``unxz``);
:meth:`Transform.start` gives a fresh :class:`TransformState` for one stream,
which is fed raw chunks and returns the processed bytes as they come::

    state = GUNZIP.start()
    with open("data.txt", "wb") as out:
        for chunk in chunks:            # e.g. the body of data.txt.gz
            out.write(state.feed(chunk))
        out.write(state.finish())       # raises IntegrityError if truncated

A transform's :attr:`~Transform.name` goes into recipe keys
(:func:`recipe_of`), so renaming one invalidates the action cache.
"""

from __future__ import annotations

import bz2
import lzma
import zlib
from typing import Callable, Iterable, Iterator
from urllib.parse import urlsplit

from ..errors import DefinitionError, IntegrityError

#: the largest piece of output a transform hands on at once
MAX_PIECE = 4 << 20


class TransformState:
    """The running state of a transform over one stream of bytes."""

    def feed_pieces(self, data: bytes) -> Iterator[bytes]:
        """Processes the next chunk; yields the output in pieces of bounded size.

        Bounded pieces keep memory constant whatever the expansion (a chunk
        of compressed zeros can decompress to gigabytes).
        """
        raise NotImplementedError

    def feed(self, data: bytes) -> bytes:
        """Processes the next chunk; returns all the output available so far."""
        return b"".join(self.feed_pieces(data))

    def finish(self) -> bytes:
        """Ends the stream; returns the remaining output.

        :raises IntegrityError: when the stream is truncated or corrupt
        """
        raise NotImplementedError


class Transform:
    """A streaming byte processor, identified by its :attr:`name`.

    Subclasses implement :meth:`start`. A transform object holds no state
    of its own, so one instance (e.g. :data:`GUNZIP`) serves every download.
    """

    #: the name used in definitions (``transforms=["gunzip"]``) and recipe keys
    name: str = ""

    def start(self) -> TransformState:
        """A fresh state for one stream."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<transform {self.name}>"


class _DecompressState(TransformState):
    """Decompresses a stream made of one or more concatenated members."""

    def __init__(self, transform: "Decompress"):
        self.transform = transform
        self.decompressor = None
        self.members = 0
        # After a complete member, bz2 and xz (like Python's bz2/lzma modules)
        # ignore trailing data that does not decode; gzip only tolerates zeros.
        self.ignoring_tail = False

    def _corrupt(self, detail: str) -> IntegrityError:
        label = self.transform.label
        return IntegrityError(
            f"{self.transform.name}: corrupt {label} data ({detail})",
            hint=f"the download is not valid {label}: check the URL, or the transforms of the definition",
        )

    def feed_pieces(self, data: bytes) -> Iterator[bytes]:
        """Decompresses a chunk in pieces of at most :data:`MAX_PIECE` bytes, member after member."""
        while not self.ignoring_tail:
            if self.decompressor is None:
                # Zero padding between or after members is legal in gzip files
                data = data.lstrip(b"\0")
                if not data:
                    return
                self.decompressor = self.transform.factory()
            decompressor = self.decompressor
            try:
                piece = decompressor.decompress(data, MAX_PIECE)
            except (zlib.error, OSError, EOFError, lzma.LZMAError) as exc:
                if self.members and self.transform.lenient_tail:
                    self.ignoring_tail = True
                    self.decompressor = None
                    return
                raise self._corrupt(str(exc)) from None
            if piece:
                yield piece
            if decompressor.eof:
                self.members += 1
                data = decompressor.unused_data
                self.decompressor = None
                if not data:
                    return
            elif hasattr(decompressor, "needs_input"):
                # bz2 / lzma keep the unread input themselves
                if decompressor.needs_input:
                    return
                data = b""
            else:
                # zlib hands back the unread input; a full piece may hide more output
                data = decompressor.unconsumed_tail
                if not data and len(piece) < MAX_PIECE:
                    return

    def finish(self) -> bytes:
        """Checks that the last member is complete."""
        label = self.transform.label
        if self.decompressor is not None and not self.decompressor.eof:
            raise IntegrityError(
                f"{self.transform.name}: truncated {label} stream (it ends in the middle of a member)",
                hint="the download is incomplete or corrupt: download it again, or check the URL",
            )
        if self.members == 0:
            raise IntegrityError(
                f"{self.transform.name}: empty input, not a {label} stream",
                hint="the server sent no data: check the URL",
            )
        return b""


class Decompress(Transform):
    """Decompression of a (possibly multi-member) compressed stream.

    :param name: the transform's name (``gunzip``)
    :param label: the format, for messages (``gzip``)
    :param factory: creates a decompressor object with ``decompress``,
        ``eof`` and ``unused_data`` (as ``zlib``, ``bz2`` and ``lzma`` give)
    :param lenient_tail: ignore undecodable data after a complete member
    """

    def __init__(self, name: str, label: str, factory: Callable, *, lenient_tail: bool = False):
        self.name = name
        self.label = label
        self.factory = factory
        self.lenient_tail = lenient_tail

    def start(self) -> TransformState:
        """A fresh decompression state."""
        return _DecompressState(self)


#: gunzip, multi-member files included (wbits=31: gzip header and trailer)
GUNZIP = Decompress("gunzip", "gzip", lambda: zlib.decompressobj(wbits=31))
#: bunzip2, concatenated streams included
BUNZIP2 = Decompress("bunzip2", "bzip2", bz2.BZ2Decompressor, lenient_tail=True)
#: unxz, concatenated streams included (legacy .lzma data is accepted too)
UNXZ = Decompress("unxz", "xz", lzma.LZMADecompressor, lenient_tail=True)

TRANSFORMS: dict[str, Transform] = {t.name: t for t in (GUNZIP, BUNZIP2, UNXZ)}

# Compressed archives are unpacked as a whole by the archive resources
_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tbz", ".tar.xz", ".txz")
_SUFFIXES = {".gz": GUNZIP, ".bz2": BUNZIP2, ".xz": UNXZ}


def infer_transforms(url: str) -> list[Transform]:
    """The transforms a URL or file name calls for, from its suffix.

    Only the path counts (the query string and fragment are ignored);
    compressed tar archives give ``[]`` since they are handled as archives.

    Example::

        infer_transforms("https://example.org/train.csv.gz?raw=1")  # [GUNZIP]
        infer_transforms("https://example.org/corpus.tar.gz")       # []
    """
    path = urlsplit(url).path.lower()
    if path.endswith(_ARCHIVE_SUFFIXES):
        return []
    for suffix, transform in _SUFFIXES.items():
        if path.endswith(suffix):
            return [transform]
    return []


def by_name(name: str) -> Transform:
    """The transform called ``name``.

    :raises DefinitionError: for an unknown name
    """
    try:
        return TRANSFORMS[name]
    except (KeyError, TypeError):
        known = ", ".join(sorted(TRANSFORMS))
        raise DefinitionError(f"unknown transform {name!r}", hint=f"known transforms: {known}") from None


def recipe_of(transforms: Iterable[Transform]) -> list[str]:
    """The names of transforms, in order, as recorded in recipe keys."""
    return [t.name for t in transforms]

