"""What the store checks before it hands an object out, and the quarantine.

Every object gets a *stamp* when it is committed (its size, mtime and, where
the file system keeps inode numbers stable, its inode: see
:func:`~datamaestro.store.objects.record_stamp`). A warm ``prepare``,
``prepare_dataset()`` and ``sync`` call :func:`compare_stamps` on what they
hand out: one ``stat`` (and one ``readlink``) per object, no rehash; a
large tree one slice of its files per use, round and round
(:mod:`~datamaestro.store.treeslices`). An
object whose stat no longer matches its stamp was changed after it was
stored (edited in place by its owner, replaced by root, damaged by a
restore): it is moved to ``quarantine/`` when this process may move it (its
owner, the store's owner, root), so that the caller fetches it again, and
is otherwise refused with an error saying who may repair it.
``store verify`` still rehashes every object.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pwd
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from ..errors import IntegrityError, StoreError, UntrustedInputError
from .actions import Kind, Output
from .digests import CHUNK_SIZE, digest_bytes, format_digest, hasher, hex_of, is_digest
from .layout import READ_NOFOLLOW, Layout, remove_tree, write_new
from .stamps import record_stamp, stamp_matches

if TYPE_CHECKING:
    from . import Store

QUARANTINE_NOTE = ".json"
#: on a network file system, the threads that look up the objects of an on-use check at once (see :func:`_lookup_pool`)
ON_USE_THREADS = 16
#: and how many objects they look up before they are compared (a whole check of a million files holds this many stats)
LOOKUP_BATCH = 1024

logger = logging.getLogger(__name__)


def owner_name(uid: int) -> str:
    """The user name of ``uid`` (its number when it has none)."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def quarantine_object(layout: Layout, digest: str, actual: str | None, size: int, why: str = "") -> Path | None:
    """Moves an object to ``quarantine/`` with a ``.json`` note; None if it vanished meanwhile.

    Its stamp goes with it, so that a good copy fetched again gets its own.

    :param actual: what its content hashes to (None: not rehashed, see ``why``)
    :param why: what was found (e.g. the stat that differs from the stamp)
    :raises PermissionError: another member's object in a group store (only
        its owner, the store's owner or root may move it)
    """
    layout.mkdir(layout.quarantine)
    hexdigest = hex_of(digest)
    target = layout.quarantine / hexdigest
    n = 0
    # an object quarantined earlier may have been fetched again and damaged again
    while os.path.lexists(target) or os.path.lexists(target.with_name(target.name + QUARANTINE_NOTE)):
        n += 1
        target = layout.quarantine / f"{hexdigest}.{n}"
    source = layout.fanout(layout.objects, digest)
    try:
        os.rename(source, target)
    except FileNotFoundError:
        return None
    try:
        os.unlink(layout.stamp_path(digest))
    except OSError:
        pass  # none, or another member's (a new commit replaces it where it may)
    note = {
        "digest": digest,
        "actual": actual,
        "size": size,
        "path": os.path.relpath(source, layout.root),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if why:
        note["why"] = why
    try:
        # a new file, never through a link: quarantine/ is a folder every member writes
        write_new(target.with_name(target.name + QUARANTINE_NOTE), (json.dumps(note, indent=2) + "\n").encode())
    except FileExistsError:
        logger.warning("the quarantine note of %s was not written: an entry of that name was there first", target)
    return target


def remove_entry(layout: Layout, path: Path) -> bool:
    """Removes a store folder or file this process may remove; False when it may not (another member's)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return True
    if not layout.may_remove(st):
        return False
    remove_tree(path)
    return not os.path.lexists(path)


@dataclass
class Changed:
    """An object whose ``stat`` differs from its stamp.

    :param digest: the object
    :param why: what differs (``size 10 -> 12``, ``mtime``, ``inode``, ``missing``)
    :param owner: the user owning it
    :param quarantined: where it was moved (None: this process may not move it)
    """

    digest: str
    why: str
    owner: str
    quarantined: Path | None = None


class ReaderChecks:
    """What this user has itself hashed of other users' objects: ``<user cache>/checked/<store>.log``.

    A member may alter its own objects and set their size and modification
    time back (``touch -r``), and may rewrite their stamps too: neither says
    anything to another member. What no user can set back is an inode's
    change time (``ctime``). Before this user is handed another user's
    object, the object is hashed once by this user; the record, in a file
    only this user may write, keeps its inode, change time and size. Any
    change of the object since (an edit, a ``chmod``, a ``touch``) changes
    its ctime, and it is hashed again.

    The records are lines ``<hex digest> <inode> <ctime ns> <size>``,
    appended in one write per check (a file per record made the first use
    of many small objects cost a file creation each, 0.3 ms); the last line
    of a digest counts, a line that does not parse is ignored (the object is
    hashed again), and the file is written anew when it holds many outdated
    lines.
    """

    #: the log is rewritten with only its current records when it has this many lines more than records
    COMPACT_SLACK = 10_000

    def __init__(self, store_root: Path):
        from ..settings import user_cache_dir

        name = hex_of(digest_bytes(os.fsencode(os.path.realpath(store_root))))[:32]
        self.path = user_cache_dir() / "checked" / f"{name}.log"
        self._records: dict[str, str] | None = None
        self._lines = 0
        self._new: list[str] = []

    @staticmethod
    def text(st: os.stat_result) -> str:
        """What a record says of an object: inode, change time, size."""
        return f"{st.st_ino} {st.st_ctime_ns} {st.st_size}"

    def _load(self) -> dict[str, str]:
        if self._records is None:
            self._records = {}
            try:
                fd = os.open(self.path, READ_NOFOLLOW)
                with open(fd, "rb") as fp:
                    data = fp.read()
            except OSError:
                data = b""
            for line in data.decode("ascii", "replace").splitlines():
                fields = line.split(" ")
                if len(fields) == 4 and len(fields[0]) == 64 and all(f.isdigit() for f in fields[1:]):
                    self._records[fields[0]] = " ".join(fields[1:])
                self._lines += 1
        return self._records

    def known(self, digest: str, st: os.stat_result) -> bool:
        """True when this user hashed this very object as it is now."""
        return self._load().get(digest[7:]) == self.text(st)

    def remember(self, digest: str, st: os.stat_result) -> None:
        """Records that the object was hashed right (kept by :meth:`flush`)."""
        text = self.text(st)
        self._load()[digest[7:]] = text
        self._new.append(f"{digest[7:]} {text}\n")

    def flush(self) -> None:
        """Appends the new records in one write (best effort: without a record, an object is hashed again next time)."""
        if not self._new:
            return
        lines, self._new = self._new, []
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if self._lines + len(lines) > len(self._records) + self.COMPACT_SLACK:
                # written anew: a private name, then a rename (records other processes appended meanwhile may be lost: hashed again)
                tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                write_new(tmp, "".join(f"{key} {value}\n" for key, value in self._records.items()).encode(), 0o600)
                os.replace(tmp, self.path)
                self._lines = len(self._records)
                return
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0), 0o600)
            try:
                os.write(fd, "".join(lines).encode())
            finally:
                os.close(fd)
            self._lines += len(lines)
        except OSError as exc:
            logger.debug("cannot record the checks of %d objects in %s: %s", len(lines), self.path, exc)


def _hash_as_it_is(path: str) -> tuple[str, os.stat_result, os.stat_result]:
    """The digest of a file and its ``stat`` before and after it was read (one descriptor, never through a link)."""
    fd = os.open(path, READ_NOFOLLOW)
    try:
        before = os.fstat(fd)
        digest = hasher()
        while chunk := os.read(fd, CHUNK_SIZE):
            digest.update(chunk)
        return format_digest(digest.hexdigest()), before, os.fstat(fd)
    finally:
        os.close(fd)


def _planted_stamp(layout: Layout, stamp: str, st: os.stat_result) -> bool:
    """True for a stamp made by neither the object's owner, the store's owner nor root: another member's, planted."""
    if not layout.shared:
        return False
    try:
        maker = os.lstat(stamp).st_uid
        return maker not in (st.st_uid, 0, os.stat(layout.root).st_uid)
    except OSError:
        return False


def _foreign_folder(path: Path, uid: int) -> bool:
    """True for a folder (not a link) owned by another user; False when it is this user's or absent."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return st.st_uid != uid


def _tree_difference(store: "Store", digest: str, tree: Path) -> str | None:
    """What a materialized tree holds that its document does not say (None: exactly its entries, files linked to their objects).

    One ``lstat`` per entry: a file must be its object's very inode (or a
    link to it, where hard links are refused), a link must say what the
    document says, and nothing else may be there.
    """
    try:
        if not stat.S_ISDIR(os.lstat(tree).st_mode):
            return "it is not a folder"
        entries = store.trees.iter_tree_entries(digest)
    except (OSError, StoreError, KeyError, TypeError) as exc:
        return f"unreadable ({exc})"
    root, objects = os.fspath(tree), os.fspath(store.layout.objects)
    precise = store.layout.precise_stat
    leaves = 0
    try:
        for entry in entries:
            path = f"{root}/{entry['path']}"
            st = os.lstat(path)
            kind = entry["kind"]
            if kind == "dir":
                if not stat.S_ISDIR(st.st_mode):
                    return f"{entry['path']} is not a folder"
                continue
            leaves += 1
            if kind == "symlink":
                if not stat.S_ISLNK(st.st_mode) or os.readlink(path) != entry["target"]:
                    return f"{entry['path']} is not the link it was"
                continue
            hexdigest = hex_of(entry["digest"])
            source = f"{objects}/{hexdigest[:2]}/{hexdigest[2:]}"
            if stat.S_ISLNK(st.st_mode):
                if os.readlink(path) != os.path.relpath(source, os.path.dirname(path)):
                    return f"{entry['path']} links elsewhere"
            elif not stat.S_ISREG(st.st_mode):
                return f"{entry['path']} is not a file"
            else:
                linked = os.stat(source)
                # where inode numbers are not stable (FUSE, 9p), the size is what can be compared
                same = (st.st_ino, st.st_dev) == (linked.st_ino, linked.st_dev) if precise else st.st_size == linked.st_size
                if not same:
                    return f"{entry['path']} is not its object"
        found = sum(len(files) + sum(1 for d in dirs if os.path.islink(os.path.join(top, d))) for top, dirs, files in os.walk(root))
    except (OSError, StoreError, KeyError, TypeError) as exc:
        return f"an entry is missing or unreadable ({exc})"
    return None if found == leaves else f"{found - leaves} entries that are not in the tree"


def _difference(recorded: str, now: str) -> str:
    before = dict(part.split("=", 1) for part in recorded.split(",") if "=" in part)
    after = dict(part.split("=", 1) for part in now.split(",") if "=" in part)
    names = {"size": "size", "mtime": "modification time", "mtime_s": "modification time", "ino": "inode"}
    changed = [
        f"{names.get(key, key)} {before[key]} -> {after.get(key, '?')}" if key == "size" else names.get(key, key)
        for key in before
        if before[key] != after.get(key)
    ]
    return ", ".join(changed) or "stamp unreadable"


#: ``(store folder, tree digest) -> the digests of the tree's files``: a tree
#: document never changes (its own object is checked first on every use), so
#: a process that prepares many times reads and parses it once
_TREE_FILES: dict[tuple[str, str], tuple[str, ...]] = {}
_TREE_FILES_KEPT = 64


def compare_stamps(store: "Store", outputs: Iterable[Output], *, whole: bool = False) -> list[Changed]:
    """The on-use check: compares the objects the outputs hand out with their stamps; one ``stat`` each, no rehash.

    Called by a warm ``prepare``, ``prepare_dataset()`` and ``sync`` on the
    outputs present in the store, before handing them out. A file output is
    checked on every use; so is a tree of at most
    :func:`~datamaestro.store.treeslices.slice_files` files. A larger tree
    has its own object and one slice of its files checked per use, the next
    slice on the next use (:class:`~datamaestro.store.treeslices.TreeSlices`):
    every file is checked within ``ceil(files / slice_files)`` uses; the
    rotation starts when the tree is materialized (or, for another user,
    with a first use that checks it whole), and the use after a changed
    file was found in it checks it whole.

    An object without a stamp (stored by an older datamaestro) gets one now.
    An object whose size, mtime or inode differs from its stamp, or a file of
    a materialized tree whose object is gone, is *changed*: the object is
    moved to ``quarantine/`` and the materialized tree holding it removed, so
    that the output is missing and the caller fetches it again.

    :param whole: check every file of every tree (the inputs of a derivation, read whole anyway)
    :returns: the changed objects (quarantined) and the trees removed (empty:
        everything is as stored)
    :raises IntegrityError: a changed object this process may not move
        (another member's, in a group store): the message names its owner
    """
    from .treeslices import TreeSlices

    check = _OnUseCheck(store)
    outputs = list(outputs)
    # a dataset of many files (MNIST's four) on a network file system: their lookups at once, not in turn
    check.look_up_ahead([o.digest for o in outputs if o is not None and o.kind == Kind.FILE and o.digest and is_digest(o.digest)])
    slices: TreeSlices | None = None
    for output in outputs:
        if output is None or not output.kind.stored or not output.digest:
            continue
        if not is_digest(output.digest):
            continue
        if output.kind == Kind.FILE:
            check.objects([output.digest])
            continue
        tree = store.trees.path_of(output.digest)
        if slices is None:
            slices = TreeSlices(store.layout)
        part = None if whole or _foreign_folder(tree, check.uid) else slices.next_slice(output.digest)
        if part is not None:
            damaged, foreign = check.objects([output.digest, *part.digests], tree=True)
            if damaged or foreign:
                # a changed file is seldom alone (a script, a restore): the next use checks the whole tree;
                # another member's object is hashed by this user before each use, which a slice cannot do
                slices.forget(output.digest)
            elif slices.advance(part):
                continue
            else:
                # the cursor could not be written: the next use would check this slice again, never the others
                part = None
        if part is None:
            files = _files_of(store, output.digest)
            damaged, foreign = check.objects([output.digest, *(files or ())], tree=True)
            if files is None:
                pass  # an unreadable document: only the tree's own object was checked
            elif not damaged and not foreign and not _foreign_folder(tree, check.uid):
                slices.checked_whole(output.digest, list(files))
            elif not damaged and _foreign_folder(tree, check.uid):
                # another member's materialized folder: its owner may make it writable and
                # swap a file (a new inode: the objects' check cannot see it)
                damaged = _tree_difference(store, output.digest, tree) is not None
            if damaged and files is not None and len(files) > slices.per_slice:
                slices.forget(output.digest)  # the repair's materialization must not start a rotation: the next use is whole
        if damaged:
            check.remove_tree(output.digest, tree)
    return check.finish()


def _files_of(store: "Store", digest: str) -> tuple[str, ...] | None:
    """The digests of a tree's files, in its order (None: its document cannot be read), read once per process.

    One per file entry, as the materialization lists them for the rotation's
    index (:meth:`TreeSlices.materialized`): a file whose bytes are another's
    too is listed twice, and its object checked once per use (the check
    remembers what it saw).
    """
    key = (os.fspath(store.root), digest)
    files = _TREE_FILES.get(key)
    if files is None:
        try:
            # checked once here, not on every use
            files = tuple(d for d in store.trees.iter_object_digests(digest) if is_digest(d))
        except (StoreError, UntrustedInputError, OSError):
            return None
        if len(_TREE_FILES) >= _TREE_FILES_KEPT:
            _TREE_FILES.clear()
        _TREE_FILES[key] = files
    return files


class _OnUseCheck:
    """The objects one on-use check compared with their stamps, and what it found (see :func:`compare_stamps`)."""

    def __init__(self, store: "Store"):
        self.store = store
        self.layout = store.layout
        self.precise = self.layout.precise_stat
        # paths as strings: building a Path per object would cost more than its stat
        self.objects_folder, self.stamps_folder = os.fspath(self.layout.objects), os.fspath(self.layout.stamps)
        self.changed: list[Changed] = []
        self.refused: list[Changed] = []
        # digest -> True when it is as stored (an object may be in several outputs)
        self.seen: dict[str, bool] = {}
        self.uid = os.geteuid()
        self.readers: ReaderChecks | None = None
        # digest -> its (stat, stamp), looked up ahead on a network file system, until compared
        self.looked: dict[str, tuple[os.stat_result | None, str | None]] = {}

    def look_up_ahead(self, digests: list[str]) -> None:
        """On a network file system, looks up at once objects that :meth:`objects` will check (a dataset's files, one per call)."""
        unique = [d for d in dict.fromkeys(digests) if d not in self.seen and d not in self.looked]
        if self.layout.local or len(unique) < 2:
            return
        pool = _lookup_pool(len(unique))
        try:
            for start in range(0, len(unique), LOOKUP_BATCH):
                self._look_up_by(pool, unique[start : start + LOOKUP_BATCH])
        finally:
            pool.shutdown()

    def _look_up_by(self, pool, digests: list[str]) -> None:
        """Looks up on ``pool``'s threads the objects of ``digests`` not compared nor looked up yet (into :attr:`looked`)."""
        batch = [d for d in dict.fromkeys(digests) if d not in self.seen and d not in self.looked]
        self.looked.update(zip(batch, pool.map(self._look_up, batch)))

    def objects(self, digests: list[str], *, tree: bool = False) -> tuple[bool, bool]:
        """Checks objects (a tree's own first, then its files); returns (one is changed or missing, one is another user's)."""
        damaged = foreign = False
        looked = self.looked
        pool = None if self.layout.local or len(digests) < 2 else _lookup_pool(len(digests))
        try:
            for index, digest in enumerate(digests):
                if pool is not None and index % LOOKUP_BATCH == 0:
                    # a batch at a time: a whole check of a million files holds a batch of stats, not a million
                    self._look_up_by(pool, digests[index : index + LOOKUP_BATCH])
                if digest in self.seen:
                    damaged = damaged or not self.seen[digest]
                    continue
                found = looked.pop(digest) if digest in looked else self._look_up(digest)
                # a file of a tree served without its object (moved aside or collected) is damage
                damaged = self._compare(digest, *found, missing_is_damage=tree and digest != digests[0]) or damaged
                foreign = foreign or (found[0] is not None and found[0].st_uid != self.uid)
        finally:
            if pool is not None:
                pool.shutdown()
        return damaged, foreign

    def _compare(self, digest: str, st: os.stat_result | None, recorded: str | None, *, missing_is_damage: bool) -> bool:
        """Compares one object (its ``stat`` and stamp, looked up) with its stamp; True when it is changed (or missing, as damage)."""
        layout = self.layout
        self.seen[digest] = False
        if st is None:
            return missing_is_damage
        name = f"{digest[7:9]}/{digest[9:]}"
        stamp = f"{self.stamps_folder}/{name}"
        if recorded is None:
            record_stamp(layout, digest, st)  # stored before stamps: trusted from now on (by its owner)
            same, why = True, None
        else:
            same, now = stamp_matches(recorded, st, self.precise)
            why = None if same else _difference(recorded, now)
            if not same and _planted_stamp(layout, stamp, st):
                # a stamp another member made before the object was stored (the
                # name is the digest, known to all): it says nothing of the object
                logger.warning(
                    "the stamp of object %s was made by %s, not by the object's owner: it is ignored "
                    "(the store's owner may remove it)", digest, owner_name(os.lstat(stamp).st_uid),
                )
                same, why = True, None
        if same and st.st_uid != self.uid:
            why = self._hash_foreign(digest, f"{self.objects_folder}/{name}", st)
        if why is None:
            self.seen[digest] = True
            return False
        found = Changed(digest, why, owner_name(st.st_uid))
        if layout.may_remove(st):
            try:
                found.quarantined = quarantine_object(layout, digest, None, st.st_size, why=f"changed after it was stored: {found.why}")
            except OSError:
                self.refused.append(found)  # a store this user may only read
                return True
            self.changed.append(found)
        else:
            self.refused.append(found)
        return True

    def _look_up(self, digest: str) -> tuple[os.stat_result | None, str | None]:
        """An object's ``stat`` (None: it is not there) and its stamp (None: it has none)."""
        name = f"{digest[7:9]}/{digest[9:]}"
        try:
            st = os.stat(f"{self.objects_folder}/{name}")
        except FileNotFoundError:
            return None, None
        try:
            return st, os.readlink(f"{self.stamps_folder}/{name}")
        except OSError:
            return st, None

    def _hash_foreign(self, digest: str, path: str, st: os.stat_result) -> str | None:
        """Another member's object: its stamp is its owner's word; this user's own hash is not. What differs, or None."""
        if self.readers is None:
            self.readers = ReaderChecks(self.store.root)
        if self.readers.known(digest, st):
            return None
        try:
            actual, before, after = _hash_as_it_is(path)
        except OSError:
            return None
        if actual == digest and before.st_ctime_ns == after.st_ctime_ns:
            self.readers.remember(digest, after)
            return None
        return f"its bytes hash to {actual}, with its size and modification time as recorded"

    def remove_tree(self, digest: str, tree: Path) -> None:
        """Removes a materialized tree that held a changed or missing file (so that it is produced again)."""
        if not os.path.isdir(tree):
            return
        owner = owner_name(os.lstat(tree).st_uid)
        if remove_entry(self.layout, tree):
            self.changed.append(Changed(digest, "its materialized folder held a changed or missing file (removed)", owner))
        else:
            self.refused.append(Changed(digest, "its materialized folder holds a changed or missing file", owner))

    def finish(self) -> list[Changed]:
        """Keeps this user's hashes of other members' objects; the changed objects, or the error of those it may not move."""
        if self.readers is not None:
            self.readers.flush()
        if self.refused:
            first = self.refused[0]
            raise IntegrityError(
                f"object {first.digest} of the store {self.store.root} was changed after it was stored ({first.why}); "
                f"it belongs to {first.owner} and this user may not move it aside"
                + (f" ({len(self.refused) - 1} more)" if len(self.refused) > 1 else ""),
                hint=f"ask {first.owner} or the store's owner to run `datamaestro store verify` (it moves changed objects "
                "to quarantine/), then run again: the data is fetched again",
            )
        return self.changed


def repair_warning(store_root: Path, changed: list[Changed]) -> str:
    """The one line that says a store was damaged and repaired: what changed, where it went, that it is fetched again.

    :param store_root: the store
    :param changed: what :func:`compare_stamps` moved aside or removed (not empty)
    """
    moved = [found for found in changed if found.quarantined is not None]
    folders = [found for found in changed if found.quarantined is None]
    parts = []
    if moved:
        first = moved[0]
        more = f" ({len(moved) - 1} more object(s) too)" if len(moved) > 1 else ""
        parts.append(f"object {first.digest} changed after it was stored ({first.why}): moved to {first.quarantined}{more}")
    if folders:
        parts.append(f"{len(folders)} materialized folder(s) held a changed or missing file: removed")
    return f"the store {store_root} was damaged: {'; '.join(parts)}; fetched again"


def _lookup_pool(objects: int):
    """Threads that look up the objects of an on-use check at once, on a store on a network file system.

    There each ``stat`` and ``readlink`` waits for a round trip to the server
    (1-10 ms on a busy SeaweedFS mount, more as its metadata grows): made one
    after the other, a slice of 16 files costs 32 round trips; made by
    threads, a few. On a local disk a call costs microseconds and threads
    would only add their start: the caller looks up in turn there.
    """
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(max_workers=min(ON_USE_THREADS, objects), thread_name_prefix="on-use-check")
