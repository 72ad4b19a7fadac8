"""Decompression transforms of the original API."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import BinaryIO

from ..download.transforms import GUNZIP
from . import Transform


class Gunzip(Transform):
    """Decompresses gzip data (streams as datamaestro's ``gunzip`` transform)."""

    def __call__(self, fileobj: BinaryIO) -> BinaryIO:
        return gzip.GzipFile(fileobj=fileobj)

    def path(self, path):
        """``x.gz`` -> ``x``."""
        path = Path(path)
        return path.with_suffix("") if path.suffix == ".gz" else path

    def streaming(self):
        """The streaming gunzip."""
        return [GUNZIP]
