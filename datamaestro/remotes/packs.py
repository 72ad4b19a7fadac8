"""Packs: the small objects of a tree travel to and from a remote cache many at a time.

One object per request makes a 100,000-file tree 100,000 PUTs and as many
GETs; on S3, where a request costs 20–50 ms and a price, that is what makes
a lab give up a cache. So a push puts a tree's small objects (at most
:data:`PACKED_MAX` bytes) into packs of a few MiB, and a pull takes them with
ranged GETs, neighbours coalesced. Large objects stay single
(``objects/ab/cdef...``), as every object did before; both layouts are read.

Layout, beside ``objects/`` and ``actions/``:

- ``packs/ab/cdef....pack``: the bytes of some objects, one after the other,
  nothing else; named by the blake3 of its bytes (so a push that is run
  again makes the same packs under the same names);
- ``packs/trees/ab/cdef....idx``: the index of one tree's packed objects,
  named by the tree's digest: for each object its digest, pack, offset and
  length (:func:`encode_index`).

Guarantees:

- a pack is visible only through an index, and an index is written only
  after every pack it names is whole on the remote (each upload is one
  atomic PUT): a push killed at any point leaves packs no index names
  (unused bytes, never half an object seen), and the push run again
  completes it;
- the index comes from outside: it is validated whole before use
  (:func:`decode_index`: its size, counts, every offset and length within
  its pack's size, members in order and not overlapping); a bad one is
  refused with one line naming the remote, and the tree's objects are asked
  of the next source;
- each object taken out of a pack is hashed and enters the store only when
  it matches its digest, one by one: a corrupt member is refused (the next
  source serves it), the other members of its pack are kept.

Nothing here knows HTTP or S3: a remote gives :func:`stage_packed` its
``read_blob`` / ``read_range`` (and a writable one ``write_blob``).
"""

from __future__ import annotations

import os
import struct
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable

from ..errors import IntegrityError, UntrustedInputError
from ..store.digests import format_digest, hex_of
from .base import Remote, RemoteUnavailable

if TYPE_CHECKING:
    from ..store import Store

#: objects of at most this many bytes travel in packs; larger ones stay single
PACKED_MAX = 1 << 20
#: a pack is closed once it holds this many bytes ...
PACK_TARGET = 4 << 20
#: ... or this many objects
PACK_MEMBERS = 2048
#: the largest pack a reader accepts (bounds a whole-pack GET from a server that ignores ranges)
PACK_MAX = 64 << 20
#: the most objects one index may list (a tree of 4 million small files)
MAX_INDEX_MEMBERS = 4_000_000
#: the most packs one index may name
MAX_INDEX_PACKS = 1_000_000
#: neighbours closer than this many bytes in a pack are taken with one ranged GET
GAP = 256 << 10
#: the most bytes one ranged GET asks for
RUN_MAX = 8 << 20

MAGIC = b"DMPACKI1"
#: magic, the tree's digest (32 bytes), number of packs, number of members
HEADER = struct.Struct("<8s32sII")
#: a pack's blake3 (32 bytes) and size
PACK_ENTRY = struct.Struct("<32sQ")
#: a member's digest (32 bytes), pack number, offset, length
MEMBER_ENTRY = struct.Struct("<32sIQI")
#: the largest index a reader accepts (bytes)
MAX_INDEX_BYTES = HEADER.size + MAX_INDEX_PACKS * PACK_ENTRY.size + MAX_INDEX_MEMBERS * MEMBER_ENTRY.size


def pack_key(pack: str) -> str:
    """``packs/ab/cdef....pack``: where a pack (named by the blake3 hex of its bytes) lives on a remote."""
    return f"packs/{pack[:2]}/{pack[2:]}.pack"


def index_key(tree: str) -> str:
    """``packs/trees/ab/cdef....idx``: where the index of a tree's packed objects lives on a remote."""
    hexdigest = hex_of(tree)
    return f"packs/trees/{hexdigest[:2]}/{hexdigest[2:]}.idx"


@dataclass(frozen=True, slots=True)
class Location:
    """Where a packed object is: its pack (blake3 hex), the pack's size, the object's offset and length in it."""

    pack: str
    pack_size: int
    offset: int
    length: int


def encode_index(tree: str, packs: list[tuple[str, int]], members: list[tuple[str, int, int, int]]) -> bytes:
    """The bytes of an index: ``packs`` as (blake3 hex, size), ``members`` as (digest, pack number, offset, length), in pack then offset order."""
    out = bytearray(HEADER.pack(MAGIC, bytes.fromhex(hex_of(tree)), len(packs), len(members)))
    for pack, size in packs:
        out += PACK_ENTRY.pack(bytes.fromhex(pack), size)
    for digest, number, offset, length in members:
        out += MEMBER_ENTRY.pack(bytes.fromhex(hex_of(digest)), number, offset, length)
    return bytes(out)


def decode_index(data: bytes, tree: str, source: str) -> dict[str, Location]:
    """The locations an index gives, by digest, once every field of it is checked.

    :param tree: the tree the index was asked for (an index of another tree is refused)
    :param source: the remote that served it, for the message
    :raises UntrustedInputError: one line saying what is wrong
    """

    def refused(why: str) -> UntrustedInputError:
        return UntrustedInputError(f"refused the pack index of tree {tree} from {source}: {why}", source=source)

    if len(data) > MAX_INDEX_BYTES:
        raise refused(f"more than {MAX_INDEX_BYTES} bytes")
    if len(data) < HEADER.size:
        raise refused(f"{len(data)} bytes, shorter than its header")
    magic, named, pack_count, member_count = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise refused("not a pack index (unknown magic)")
    if named.hex() != hex_of(tree):
        raise refused(f"it is the index of another tree ({format_digest(named.hex())})")
    if pack_count > MAX_INDEX_PACKS or member_count > MAX_INDEX_MEMBERS:
        raise refused(f"{pack_count} packs and {member_count} objects, more than an index may list")
    expected = HEADER.size + pack_count * PACK_ENTRY.size + member_count * MEMBER_ENTRY.size
    if len(data) != expected:
        raise refused(f"{len(data)} bytes where its counts make {expected}")
    packs = []
    offset = HEADER.size
    for _ in range(pack_count):
        name, size = PACK_ENTRY.unpack_from(data, offset)
        offset += PACK_ENTRY.size
        if size > PACK_MAX:
            raise refused(f"pack {name.hex()} of {size} bytes, more than the {PACK_MAX} a pack may have")
        packs.append((name.hex(), size))
    locations: dict[str, Location] = {}
    ends = [0] * pack_count
    last = -1
    for number in range(member_count):
        raw, pack, start, length = MEMBER_ENTRY.unpack_from(data, offset)
        offset += MEMBER_ENTRY.size
        if pack >= pack_count:
            raise refused(f"object {number} is in pack {pack}, and the index names {pack_count}")
        if pack < last:
            raise refused(f"object {number} is out of order (pack {pack} after pack {last})")
        last = pack
        name, size = packs[pack]
        if length > PACKED_MAX:
            raise refused(f"object {number} has {length} bytes, more than a packed object may have ({PACKED_MAX})")
        if start < ends[pack]:
            raise refused(f"object {number} starts at byte {start} of pack {name}, inside the object before it")
        if start + length > size:
            raise refused(f"object {number} ends at byte {start + length}, past the {size} bytes of pack {name}")
        ends[pack] = start + length
        locations[format_digest(raw.hex())] = Location(name, size, start, length)
    return locations


# -- reading ------------------------------------------------------------------


class PackReader:
    """What one remote's pack indexes say, loaded as trees are asked for (one GET per tree).

    :param remote: the remote; it gives ``read_blob(key, limit)`` and ``read_range(key, start, end)``
    """

    def __init__(self, remote: Remote):
        self.remote = remote
        self._lock = threading.Lock()
        self._pending: list[str] = []
        self._seen: set[str] = set()
        self._locations: dict[str, Location] = {}
        self._refusals: list[str] = []

    def note_tree(self, tree: str) -> None:
        """The objects of ``tree`` will be asked for: its index is read at the first of them."""
        with self._lock:
            if tree not in self._seen:
                self._seen.add(tree)
                self._pending.append(tree)

    def take_refusals(self) -> list[str]:
        """The lines of the indexes refused since the last call (each said once)."""
        with self._lock:
            found, self._refusals = self._refusals, []
        return found

    def _load(self) -> None:
        """Reads the indexes of the trees noted since the last call (a missing one: the tree's objects are single, or absent)."""
        with self._lock:
            pending, self._pending = self._pending, []
            for tree in pending:
                data = self.remote.read_blob(index_key(tree), MAX_INDEX_BYTES + 1)
                if data is None:
                    continue
                try:
                    self._locations.update(decode_index(data, tree, self.remote.label))
                except UntrustedInputError as error:
                    self._refusals.append(error.message)

    def locate(self, digests: list[str]) -> tuple[dict[str, Location], list[str]]:
        """The packed objects among ``digests`` (by digest) and the others, in order."""
        self._load()  # under the lock: a thread never reads the locations while another loads them
        packed: dict[str, Location] = {}
        rest = []
        for digest in digests:
            location = self._locations.get(digest)
            if location is None:
                rest.append(digest)
            else:
                packed[digest] = location
        return packed, rest


def reader_of(remote: Remote) -> PackReader | None:
    """The pack reader of ``remote`` (made on first use), or None for a remote that holds no packs."""
    if not getattr(remote, "reads_packs", False):
        return None
    reader = remote.__dict__.get("_pack_reader")
    if reader is None:
        reader = remote.__dict__.setdefault("_pack_reader", PackReader(remote))
    return reader


def note_tree(remotes: Iterable[Remote], tree: str) -> None:
    """Tells the remotes that hold packs that the objects of ``tree`` will be asked for."""
    for remote in remotes:
        reader = reader_of(remote)
        if reader is not None:
            reader.note_tree(tree)


def take_refusals(remote: Remote) -> list[str]:
    """The lines of the pack indexes ``remote`` served and that were refused, since the last call."""
    reader = reader_of(remote)
    return reader.take_refusals() if reader is not None else []


def in_pack_order(remotes: Iterable[Remote], digests: list[str]) -> list[str]:
    """``digests`` with the members of the first remote's packs grouped by pack and offset, the others after them.

    Objects are asked for in tasks of a few hundred: neighbours of one pack in
    one task make one ranged read, where objects taken in any other order
    (the sorted listing of a tree) would make one read per few members.
    """
    for remote in remotes:
        reader = reader_of(remote)
        if reader is None:
            continue
        located, rest = reader.locate(digests)
        if located:
            return sorted(located, key=lambda digest: (located[digest].pack, located[digest].offset)) + rest
        return digests
    return digests


def runs(located: dict[str, Location]) -> list[tuple[str, int, int, list[tuple[str, Location]]]]:
    """The ranged reads that take ``located``: (pack, start, end, members), neighbours closer than :data:`GAP` in one read of at most :data:`RUN_MAX` bytes."""
    by_pack: dict[str, list[tuple[str, Location]]] = {}
    for digest, location in located.items():
        by_pack.setdefault(location.pack, []).append((digest, location))
    found = []
    for pack, members in by_pack.items():
        members.sort(key=lambda item: item[1].offset)
        current: list[tuple[str, Location]] = []
        start = end = 0
        for digest, location in members:
            if current and (location.offset - end > GAP or location.offset + location.length - start > RUN_MAX):
                found.append((pack, start, end, current))
                current = []
            if not current:
                start = location.offset
            current.append((digest, location))
            end = max(end, location.offset + location.length)
        if current:
            found.append((pack, start, end, current))
    return found


def stage_packed(remote: Remote, store: "Store", digests: list[str], limits: dict[str, int] | None, single: Callable[[list[str]], list]) -> list:
    """:meth:`Remote.stage_batch` for a remote that may hold packs: packed objects by ranged reads, the others by ``single``.

    One outcome per digest, in order (see :meth:`Remote.stage_batch`). A
    member whose bytes do not hash to its digest, or whose length is not the
    one its tree document names, is refused alone; a pack that is gone gives
    None for its members (the next source is asked).
    """
    reader = reader_of(remote)
    if reader is None:
        return single(digests)
    located, rest = reader.locate(digests)
    outcomes: dict[str, object] = {}
    if rest:
        outcomes.update(zip(rest, single(rest)))
    failed: RemoteUnavailable | None = None
    for pack, start, end, members in runs(located):
        if failed is None:
            try:
                data = remote.read_range(pack_key(pack), start, end)
            except RemoteUnavailable as error:
                failed = error
        if failed is not None:
            outcomes.update((digest, failed) for digest, _ in members)
            continue
        for digest, location in members:
            if data is None:
                outcomes[digest] = None  # the pack is gone: another source serves it
                continue
            limit = (limits or {}).get(digest)
            if limit is not None and limit != location.length:
                outcomes[digest] = IntegrityError(f"its pack index says {location.length} bytes, its tree document {limit}")
                continue
            piece = data[location.offset - start : location.offset - start + location.length]
            if len(piece) != location.length:
                outcomes[digest] = IntegrityError(f"its pack {pack} ends after {start + len(data)} bytes, before the object")
                continue
            outcomes[digest] = stage_bytes(store, digest, piece)
    return [outcomes[digest] for digest in digests]


def stage_bytes(store: "Store", digest: str, data: bytes):
    """The bytes of one object, checked against its digest and staged; the :class:`IntegrityError` when they do not match."""
    try:
        with store.objects.writer(expect=digest, limit=len(data)) as writer:
            writer.write(data)
            return writer.stage()
    except IntegrityError as error:
        return error


# -- writing ------------------------------------------------------------------


@dataclass
class PackPush:
    """The packs a push sends, and the indexes it writes once they are all up.

    :param covered: the objects this takes care of (the caller sends the others one by one)
    :param present: objects already on the remote (their tree has an index there)
    :param plans: the packs to send, as lists of (digest, size)
    :param trees: tree digest -> its packed objects, in order
    """

    covered: set[str] = field(default_factory=set)
    present: int = 0
    plans: list[list[tuple[str, int]]] = field(default_factory=list)
    trees: dict[str, list[str]] = field(default_factory=dict)
    #: digest -> (pack number in :attr:`plans`, offset, length), filled as packs are built
    placed: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    #: pack number -> (blake3 hex, size), filled as packs are sent
    sent: dict[int, tuple[str, int]] = field(default_factory=dict)

    @classmethod
    def plan(cls, remote: Remote, store: "Store", trees: list[str], members_of: Callable[[str], Iterable[str]]) -> "PackPush":
        """What to pack for ``trees``: a tree whose index is on the remote is there whole; the small objects of the others go in packs.

        :param members_of: a tree's object digests (the store's tree reader)
        """
        push = cls()
        small: dict[str, int] = {}
        for tree in dict.fromkeys(trees):
            members = list(dict.fromkeys(members_of(tree)))
            if remote.has_blob(index_key(tree)):
                fresh = [digest for digest in members if digest not in push.covered]
                push.covered.update(fresh)
                push.present += len(fresh)
                continue
            packed = []
            for digest in members:
                size = os.stat(store.objects.path_of(digest)).st_size
                if size <= PACKED_MAX:
                    small.setdefault(digest, size)
                    packed.append(digest)
            push.trees[tree] = packed
        # a digest already there through another tree's index is packed again only for trees without one
        push.covered.update(small)
        plan: list[tuple[str, int]] = []
        total = 0
        for digest, size in small.items():
            if plan and (total + size > PACK_TARGET or len(plan) >= PACK_MEMBERS):
                push.plans.append(plan)
                plan, total = [], 0
            plan.append((digest, size))
            total += size
        if plan:
            push.plans.append(plan)
        return push

    @property
    def objects(self) -> int:
        """Objects sent in packs."""
        return sum(len(plan) for plan in self.plans)

    @property
    def bytes(self) -> int:
        """Bytes sent in packs."""
        return sum(size for plan in self.plans for _, size in plan)

    def send(self, remote: Remote, store: "Store", number: int) -> int:
        """Builds pack ``number`` from the store's objects and uploads it (one PUT); returns its size."""
        from ..store.digests import hasher

        data = bytearray()
        placed = {}
        for digest, _ in self.plans[number]:
            with store.objects.open(digest) as fp:
                piece = fp.read(PACKED_MAX + 1)
            placed[digest] = (number, len(data), len(piece))
            data += piece
        digest_of_pack = hasher()
        digest_of_pack.update(data)
        name = digest_of_pack.hexdigest()
        remote.write_blob(pack_key(name), bytes(data))
        self.placed.update(placed)
        self.sent[number] = (name, len(data))
        return len(data)

    def write_indexes(self, remote: Remote) -> None:
        """Writes each tree's index, once every pack is up (what makes the packs visible)."""
        missing = [number for number in range(len(self.plans)) if number not in self.sent]
        if missing:
            raise RuntimeError(f"packs {missing} were not sent")  # a caller's bug: never an index naming a missing pack
        for tree, members in self.trees.items():
            numbers = sorted({self.placed[digest][0] for digest in members})
            renumber = {number: position for position, number in enumerate(numbers)}
            entries = sorted((renumber[self.placed[d][0]], self.placed[d][1], self.placed[d][2], d) for d in members)
            index = encode_index(tree, [self.sent[number] for number in numbers], [(d, n, offset, length) for n, offset, length, d in entries])
            remote.write_blob(index_key(tree), index)
