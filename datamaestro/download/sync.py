"""1.x face: ``datamaestro.download.sync``, the original datamaestro's Google Storage sync, retired.

``gsync`` stays importable (with a deprecation warning); using it says what
replaces it. Its constructor did not work in datamaestro 1.16 either.
"""

from __future__ import annotations

from ..compat.legacy import Download
from ..lazy import lazy_getattr
from .multiple import _Retired


class _gsync(_Retired, Download):
    """The original's ``gsutil rsync`` resource."""

    replacement = "a custom_download whose function runs `gsutil -m rsync gs://... <root>`"


_gsync.__name__ = _gsync.__qualname__ = "gsync"


__getattr__ = lazy_getattr(
    __name__, {"gsync": f"{__name__}:_gsync"}, deprecated={"gsync": f"datamaestro.download.sync.gsync is deprecated: use {_gsync.replacement}"}
)
