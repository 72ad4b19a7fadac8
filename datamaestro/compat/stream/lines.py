"""Line-by-line transforms of the original API: :class:`Replace` and :class:`Filter`.

Both stream: lines are processed as soon as they are complete, so a large
file never sits in memory. Lines are decoded as UTF-8; a line the
transform turns into an empty string is dropped.

Example (a definition of ``datamaestro-text``)::

    ConcatDownloader("assessments.qrels", url, transforms=TransformList(Gunzip(), Filter(r"^(1\\d\\d|200)\\s")))
"""

from __future__ import annotations

import io
import re
from typing import BinaryIO, Callable

from ...download import transforms as streaming
from .base import Transform


class _LineState(streaming.TransformState):
    def __init__(self, function: Callable[[str], str]):
        self.function = function
        self.pending = b""

    def _lines(self, data: bytes, final: bool) -> bytes:
        data = self.pending + data
        lines = data.split(b"\n")
        self.pending = b"" if final else lines.pop()
        output = []
        for index, line in enumerate(lines):
            newline = "\n" if (index < len(lines) - 1 or not final) else ""
            if final and not line and not newline:
                continue
            output.append(self.function(line.decode("utf-8") + newline).encode("utf-8"))
        return b"".join(output)

    def feed_pieces(self, data: bytes):
        # one piece per chunk: a line transform never expands its input much
        output = self._lines(data, False)
        if output:
            yield output

    def finish(self) -> bytes:
        return self._lines(b"", True)


class _LineStreaming(streaming.Transform):
    def __init__(self, name: str, function: Callable[[str], str]):
        self.name = name
        self.function = function

    def start(self) -> streaming.TransformState:
        return _LineState(self.function)


class LineTransform(Transform):
    """Base of transforms that map each line (with its newline) to a string."""

    def transform_line(self, line: str) -> str:
        """The new line ('' drops it)."""
        raise NotImplementedError

    def __call__(self, fileobj: BinaryIO) -> BinaryIO:
        # the original API: a file object reading the transformed lines
        state = _LineState(self.transform_line)

        def chunks():
            while chunk := fileobj.read(1 << 20):
                yield state.feed(chunk)
            yield state.finish()

        return io.BytesIO(b"".join(chunks()))

    def streaming(self):
        """One streaming step."""
        from .base import describe

        return [_LineStreaming(describe(self), self.transform_line)]


class Replace(LineTransform):
    """Replaces a regular expression in each line (``re.sub``).

    :param pattern: the expression
    :param replacement: the replacement (``\\1`` for groups)
    """

    def __init__(self, pattern: str, replacement: str):
        self.re = re.compile(pattern)
        self.repl = replacement

    def transform_line(self, line: str) -> str:
        """The line with the replacements done."""
        return self.re.sub(self.repl, line)


class Filter(LineTransform):
    """Keeps only the lines where a regular expression matches (``re.search``).

    :param pattern: the expression
    """

    def __init__(self, pattern: str):
        self.re = re.compile(pattern)

    def transform_line(self, line: str) -> str:
        """The line, or '' when it does not match."""
        return line if self.re.search(line) else ""


# recipes, pickles and messages keep naming the 1.x module
from .. import keep_public_module  # noqa: E402

keep_public_module(globals(), 'datamaestro.stream.lines')
