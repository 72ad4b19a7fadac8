"""The action cache: recipe key -> output digest.

A recipe is a canonical description of what a step does (a download: the
URL and its transforms; a derivation: its class, parameters and input
digests). Its key is the blake3 of that description. Once a step has run on
a store, any dataset of any project that needs the same recipe finds the
output here and never repeats the work.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path

from ..errors import StoreError
from .digests import canonical_json, digest_bytes, is_digest
from .objects import Layout, create_new, disk_error, read_only_store_error

logger = logging.getLogger(__name__)


def recipe_key(description: dict) -> str:
    """The key of a recipe: blake3 of its canonical JSON description."""
    return digest_bytes(canonical_json(description))


class Kind(StrEnum):
    """What a resource produces. A ``str`` too, so that ``kind == "file"`` and JSON keep working."""

    FILE = "file"  #: one object
    TREE = "tree"  #: a folder: a tree of objects
    VALUE = "value"  #: a JSON value, no file

    @property
    def stored(self) -> bool:
        """True for the kinds that live in the store (and in views)."""
        return self is not Kind.VALUE


@dataclass
class Output:
    """What a resource produced.

    :param kind: ``file`` (an object), ``tree`` (a folder) or ``value`` (no file)
    :param digest: the object or tree digest (None for a value)
    :param source_digest: blake3 of the bytes as downloaded, before transforms
    :param url: the URL the bytes came from, after redirects
    :param size: bytes downloaded
    :param value: the JSON value of a ``value`` resource
    """

    kind: Kind
    digest: str | None = None
    source_digest: str | None = None
    url: str | None = None
    size: int | None = None
    value: object = None

    def __post_init__(self):
        # a str from JSON or a plugin: refused here (ValueError) when unknown
        self.kind = Kind(self.kind)

    def to_json(self) -> dict:
        """A JSON-able dict (None fields dropped)."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_json(cls, data: dict) -> "Output":
        """The inverse of :meth:`to_json`."""
        return cls(**{k: data.get(k) for k in ("kind", "digest", "source_digest", "url", "size", "value")})


@dataclass
class ActionRecord:
    """One entry of the action cache."""

    key: str
    recipe: dict
    output: Output
    created: float = field(default_factory=time.time)


class ActionCache:
    """The ``actions/`` folder."""

    def __init__(self, layout: Layout):
        self.layout = layout

    def path_of(self, key: str) -> Path:
        """Where the record of ``key`` is."""
        return self.layout.fanout(self.layout.actions, key, ".json")

    def get(self, key: str) -> ActionRecord | None:
        """The record of a recipe key, or None (also when the record is unreadable)."""
        try:
            with open(self.path_of(key), "rb") as fp:
                data = json.load(fp)
            output = Output.from_json(data["output"])
            if output.kind.stored and not is_digest(output.digest or ""):
                return None
            return ActionRecord(key=key, recipe=data["recipe"], output=output, created=data.get("created", 0))
        except (OSError, ValueError, KeyError, TypeError, StoreError):
            return None

    def put(self, record: ActionRecord) -> None:
        """Writes a record atomically (tmp file, then rename).

        In a group store, another member's record of the same key cannot be
        replaced (sticky folders): it stays, and this one is dropped.
        """
        data = canonical_json(
            {"key": record.key, "recipe": record.recipe, "output": record.output.to_json(), "created": record.created}
        )
        target = self.path_of(record.key)
        tmp = self.layout.tmp_path(".action")
        try:
            self.layout.mkdir(target.parent)
            with create_new(tmp) as fp:
                fp.write(data)
                fp.flush()
                os.fsync(fp.fileno())
            # read-only for the group: a member must not rewrite what another member's recipe gives
            os.chmod(tmp, 0o444 if self.layout.shared else 0o644)
            os.replace(tmp, target)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)  # a read-only file system refuses even that (EROFS)
            if read_only_store_error(exc) and target.exists():
                # another member's record, in a sticky folder: it stays
                existing = self.get(record.key)
                if existing is None or existing.output.digest != record.output.digest:
                    logger.warning(
                        "the action record %s belongs to another member and says something else: it stays "
                        "(the store's owner may remove it)", target,
                    )
                return
            raise disk_error(exc, "recording an action") from None

    def iter_records(self):
        """Every readable record of the cache."""
        if not self.layout.actions.is_dir():
            return
        for fan in os.scandir(self.layout.actions):
            if not fan.is_dir():
                continue
            for entry in os.scandir(fan.path):
                if entry.name.endswith(".json"):
                    record = self.get("blake3:" + fan.name + entry.name[:-5])
                    if record is not None:
                        yield record
