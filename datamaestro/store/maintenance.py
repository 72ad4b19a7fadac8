"""The store's maintenance operations, by the names they had when they all lived here.

Each operation now has a module of its own: :mod:`.info`, :mod:`.verify`,
:mod:`.gc`, :mod:`.release`, :mod:`.du` and :mod:`.init` (what they share:
:mod:`.walk`). This module only re-exports them, for the callers that
import them from here (the CLI, ``tools``, the pipeline's gc lock).
"""

from __future__ import annotations

from .du import DatasetUsage, DiskUsage, disk_usage
from .gc import GC_LOCK, GcReport, gc
from .info import StoreInfo, store_info
from .init import init_store
from .release import Keeper, ReleaseReport, keepers, release
from .verify import CorruptObject, VerifyReport, verify

__all__ = [
    "GC_LOCK",
    "CorruptObject",
    "DatasetUsage",
    "DiskUsage",
    "GcReport",
    "Keeper",
    "ReleaseReport",
    "StoreInfo",
    "VerifyReport",
    "disk_usage",
    "gc",
    "init_store",
    "keepers",
    "release",
    "store_info",
    "verify",
]
