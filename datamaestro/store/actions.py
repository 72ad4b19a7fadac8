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

from ..errors import StoreError, UntrustedInputError
from .digests import canonical_json, digest_bytes, is_digest
from .layout import Layout, create_new, disk_error, read_only_store_error

logger = logging.getLogger(__name__)

#: the largest action record read (a record is a recipe and one output: kilobytes; a value resource's JSON at most this)
MAX_RECORD_BYTES = 4 << 20
#: the deepest nesting of lists and objects a record may hold (recipes nest a few levels)
MAX_RECORD_DEPTH = 64
#: the fields the store writes in a record (``signatures``: added by a signed push, see remotes/signing.py), and in its output
RECORD_FIELDS = frozenset({"key", "recipe", "output", "created", "signatures"})
OUTPUT_FIELDS = frozenset({"kind", "digest", "source_digest", "url", "size", "value"})
#: the longest URL an output may carry
MAX_URL = 8192


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


def _depth_within(value, limit: int) -> bool:
    """True when lists and objects nest at most ``limit`` deep (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, dict)):
            if depth > limit:
                return False
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return True


def parse_record(data: bytes, key: str, *, source: str = "") -> ActionRecord:
    """An action record read from outside (a remote, a peer store), validated before any use.

    The record must be what :meth:`ActionCache.put` writes: a JSON object of
    bounded size and nesting, for this very key, whose output has a known
    kind, a digest that is a digest (none for a value), a URL that is a
    string and a size that is a count.

    :param key: the recipe key the record was asked for
    :param source: who served it, for the message
    :raises UntrustedInputError: anything else (nothing of it is used)
    """
    where = f"action record {key} from {source}" if source else f"action record {key}"

    def refuse(why: str) -> UntrustedInputError:
        return UntrustedInputError(f"refused {where}: {why}", source=source)

    if not isinstance(data, (bytes, bytearray)):
        raise refuse("not a document")
    if len(data) > MAX_RECORD_BYTES:
        raise refuse(f"{len(data)} bytes, more than a record holds ({MAX_RECORD_BYTES})")
    try:
        document = json.loads(data)
    except RecursionError:
        raise refuse(f"nested deeper than {MAX_RECORD_DEPTH} levels") from None
    except ValueError:
        raise refuse("not JSON") from None
    if not isinstance(document, dict):
        raise refuse("not a JSON object")
    if not _depth_within(document, MAX_RECORD_DEPTH):
        raise refuse(f"nested deeper than {MAX_RECORD_DEPTH} levels")
    unknown = set(document) - RECORD_FIELDS
    if unknown:
        raise refuse(f"unknown field {sorted(unknown)[0]!r}")
    if document.get("key", key) != key:
        raise refuse(f"it is the record of another recipe ({str(document['key'])[:80]!r})")
    recipe, raw, created = document.get("recipe"), document.get("output"), document.get("created", 0)
    if not isinstance(recipe, dict):
        raise refuse("no recipe object")
    if not isinstance(created, (int, float)) or isinstance(created, bool):
        raise refuse("created is not a number")
    signatures = document.get("signatures", [])
    if not isinstance(signatures, list) or not all(isinstance(s, str) for s in signatures):
        raise refuse("signatures is not a list of strings")
    if not isinstance(raw, dict):
        raise refuse("no output object")
    unknown = set(raw) - OUTPUT_FIELDS
    if unknown:
        raise refuse(f"unknown output field {sorted(unknown)[0]!r}")
    kind = raw.get("kind")
    if kind not in tuple(Kind):
        raise refuse(f"output kind {str(kind)[:40]!r} is not file, tree or value")
    kind = Kind(kind)
    digest = raw.get("digest")
    if kind.stored and not is_digest(digest):
        raise refuse(f"output digest {str(digest)[:80]!r} is not a digest")
    if not kind.stored and digest is not None:
        raise refuse("a value output with a digest")
    if kind.stored and raw.get("value") is not None:
        raise refuse(f"a {kind} output with a value")
    source_digest = raw.get("source_digest")
    if source_digest is not None and not is_digest(source_digest):
        raise refuse(f"source digest {str(source_digest)[:80]!r} is not a digest")
    url = raw.get("url")
    if url is not None and (not isinstance(url, str) or len(url) > MAX_URL or "\0" in url):
        raise refuse("url is not a URL")
    size = raw.get("size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise refuse(f"size {str(size)[:40]!r} is not a count of bytes")
    output = Output(kind, digest, source_digest, url, size, raw.get("value"))
    return ActionRecord(key=key, recipe=recipe, output=output, created=created)


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
                # a record of a shared store may be another member's: read as any document from outside
                data = fp.read(MAX_RECORD_BYTES + 1)
            return parse_record(data, key, source=str(self.layout.root))
        except (OSError, StoreError, UntrustedInputError):
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
