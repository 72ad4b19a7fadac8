"""Decompression transforms of the original API."""

from .base import Gunzip

__all__ = ["Gunzip"]
