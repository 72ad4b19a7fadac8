"""The store's layout version and its migration, and the creation of a store.

``VERSION`` holds the version of each part of the layout (:data:`LAYOUT_PARTS`); :func:`open_layout` reads it, refuses a newer store and migrates an older one (:data:`MIGRATIONS`, :func:`migrate_layout`); :func:`create_store` creates a store with operations that stay atomic on a file system shared by several machines. See the package's docstring for the format."""

from __future__ import annotations

import contextlib
import errno
import grp
import os
import re
import time
from pathlib import Path
from typing import Callable

from ..errors import LockTimeoutError, StoreError
from .locking import store_lock
from .layout import SHARED_DIR_MODE, SHARED_LEASE_DIR_MODE, Layout, disk_error, write_new

VERSION_FILE = "VERSION"
SHARED_FILE = "SHARED"
#: The parts of the layout, each with the version this datamaestro reads and
#: writes. A change to one part (e.g. the format of action records) raises
#: its version and adds one function to :data:`MIGRATIONS`.
LAYOUT_PARTS: dict[str, int] = {"objects": 1, "actions": 1, "views": 1, "roots": 1, "trees": 2}
#: Parts added after per-part versions, with the version a ``VERSION`` file
#: that does not name them stands for (``trees``: tree documents went with
#: ``objects`` until their format changed; version 1 is the JSON document).
LATER_PARTS: dict[str, int] = {"trees": 1}
#: Migration steps that change no file (only what this datamaestro may write
#: from then on): a store one may only read is read as it is.
NO_FILE_CHANGES: frozenset[tuple[str, int]] = frozenset({("trees", 1)})
#: ``(part, version) -> function(layout)`` bringing ``part`` of a store from
#: ``version`` to ``version + 1``. A function runs under the store lock
#: ``layout`` and the new version is recorded right after it returns, so a
#: function killed midway runs again on the next open: it must be idempotent
#: (and safe to run twice at once, where locks are not shared: NFS ``nolock``).
MIGRATIONS: dict[tuple[str, int], Callable[[Layout], None]] = {}


def _trees_1_to_2(layout: Layout) -> None:
    """``trees`` 1 -> 2 (tree documents read and written as a stream): no file changes.

    Format-1 tree documents stay objects under their digests, which lock
    files, action records (here and on remote caches), views and warm records
    name; they are read as a stream like format-2 ones (``store/trees.py``).
    The new version only stops releases that read format 1 alone from using
    a store where format-2 documents are written (they would take them for
    corrupt objects). See docs/store.md, "Tree documents".
    """


MIGRATIONS[("trees", 1)] = _trees_1_to_2
#: What ``VERSION`` held before parts had their own version: every part at 1.
LEGACY_LAYOUT = "1"
#: The store lock held while the layout is migrated.
LAYOUT_LOCK = "layout"
#: Seconds a process waits for a ``VERSION`` file another creator linked but
#: this machine does not see yet (an NFS client's cache of missing names).
VERSION_SETTLE = 30.0
# What a store folder holds besides VERSION. A folder holding only these
# is a store that lost its VERSION file (a process killed while creating
# the store, or a store deleted while another process was adding to it,
# which then recreated some folders): it is taken as a store again, so that
# the next run works instead of refusing the folder for ever.
LAYOUT_ENTRIES = frozenset({"objects", "trees", "actions", "views", "roots", "tmp", "locks", "leases", "quarantine", "stamps", SHARED_FILE})
#: errno of a hard link the file system does not support
_NO_HARD_LINKS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK, errno.EXDEV})
_PART_LINE = re.compile(r"([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(\S+)")
_NEWER_HINT = "a newer datamaestro wrote this store: upgrade datamaestro, or point DATAMAESTRO_STORE at another folder"


def _layout_entry(name: str) -> bool:
    """True for a name the store itself creates.

    ``.VERSION.<pid>`` and ``.SHARED.<pid>``: files being written by an older
    datamaestro; ``.nfs...``: a file an NFS client renamed because it was
    deleted while open.
    """
    return name in LAYOUT_ENTRIES or name.startswith((f".{VERSION_FILE}.", f".{SHARED_FILE}.", ".nfs"))


# -- the VERSION file


def format_layout(versions: dict[str, int]) -> str:
    """The text of a ``VERSION`` file recording ``versions`` (one line per part, in a fixed order)."""
    lines = ["# datamaestro store layout: the version of each part (see docs/store.md)"]
    lines += [f"{part} = {versions[part]}" for part in LAYOUT_PARTS]
    return "\n".join(lines) + "\n"


def _garbled(root: Path, why: str) -> StoreError:
    return StoreError(
        f"store {root}: its {VERSION_FILE} file is garbled ({why})",
        hint=f"it holds one `part = version` line per part ({', '.join(LAYOUT_PARTS)}), e.g. `objects = 1`; "
        "restore it (from a backup, or another store of the same datamaestro), or point DATAMAESTRO_STORE at another folder",
    )


def parse_layout(root: Path, text: str) -> tuple[dict[str, int], bool]:
    """The part versions a ``VERSION`` file records, and whether it is in the first format (just ``1``).

    :raises StoreError: the file is garbled, or names a part newer than
        this datamaestro reads (or a part it does not know)
    """
    if text.strip() == LEGACY_LAYOUT:
        return dict.fromkeys(LAYOUT_PARTS, 1), True
    if text.strip().isdigit():
        # one number: the layout of a datamaestro that had a single layout version
        readable = ", ".join(f"{part} {version}" for part, version in LAYOUT_PARTS.items())
        raise StoreError(
            f"store {root} has layout version {text.strip()}, this datamaestro reads version {LEGACY_LAYOUT} "
            f"and per-part versions up to {readable}",
            hint="use a datamaestro release that matches the store, or point DATAMAESTRO_STORE at another folder",
        )
    versions: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _PART_LINE.fullmatch(line)
        if match is None or not match.group(2).isdigit() or int(match.group(2)) < 1:
            raise _garbled(root, f"line {number}: {line[:60]!r}")
        part = match.group(1)
        if part in versions:
            raise _garbled(root, f"line {number}: {part} is given twice")
        versions[part] = int(match.group(2))
    if not versions:
        raise _garbled(root, "it names no part")
    newer = [f"{part} (a part it does not know)" for part in versions if part not in LAYOUT_PARTS]
    newer += [
        f"{part} at version {versions[part]} (reads up to {current})"
        for part, current in LAYOUT_PARTS.items()
        if versions.get(part, 0) > current
    ]
    if newer:
        raise StoreError(f"store {root} has a newer layout than this datamaestro reads: {', '.join(newer)}", hint=_NEWER_HINT)
    for part, version in LATER_PARTS.items():
        versions.setdefault(part, version)
    missing = [part for part in LAYOUT_PARTS if part not in versions]
    if missing:
        raise _garbled(root, f"no version for {', '.join(missing)}")
    return versions, False


def _read_version(root: Path) -> str | None:
    """The text of the ``VERSION`` file, or None when there is none."""
    try:
        data = (root / VERSION_FILE).read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except IsADirectoryError:
        raise _garbled(root, "it is a folder") from None
    except OSError as exc:
        raise StoreError(
            f"cannot read {root / VERSION_FILE}: {exc.strerror}",
            hint="fix its permissions, or point DATAMAESTRO_STORE at another folder",
        ) from None
    return data.decode("utf-8", errors="replace")


def _await_version(root: Path, settle: float = VERSION_SETTLE) -> str:
    """The text of ``VERSION`` right after :func:`create_store`, waiting a little for it to show.

    Another machine may have linked it a moment ago: an NFS client can go on
    saying the name does not exist (its cache of missing names) until it
    reads the folder again.
    """
    deadline = time.monotonic() + settle
    delay = 0.01
    while True:
        text = _read_version(root)
        if text is not None:
            return text
        if not root.is_dir():
            raise StoreError(f"the store {root} was deleted while in use", hint="run again: a new store is created")
        if time.monotonic() >= deadline:
            raise StoreError(
                f"the store {root} has no {VERSION_FILE} file although it was just created",
                hint="another process may be deleting it; run again",
            )
        with contextlib.suppress(OSError):
            os.listdir(root)  # reading the folder refreshes an NFS client's view of it
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


def _foreign_entries(root: Path) -> list[str]:
    """Names in ``root`` that are neither ``VERSION`` nor a store's own (empty when ``root`` is no folder)."""
    try:
        names = os.listdir(root)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(name for name in names if name != VERSION_FILE and not _layout_entry(name))


def _write_synced(path: Path, text: str) -> None:
    write_new(path, text.encode(), sync=True)


def replace_store_file(layout: Layout, name: str, text: str) -> None:
    """Writes ``text`` to a unique file in ``tmp/``, then renames it over ``<store>/<name>`` (atomic)."""
    tmp = layout.tmp_path(f".{name.lower()}")
    try:
        _write_synced(tmp, text)
        os.replace(tmp, layout.root / name)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def _link_version(layout: Layout, text: str) -> None:
    """Puts a ``VERSION`` file holding ``text`` in place unless there is one already.

    The file is complete under a unique name before it is hard-linked as
    ``VERSION``: a reader never sees a partial file, and a link, unlike a
    rename, never replaces the file another creator was first to put there
    (whose content is then the one read).
    """
    target = layout.root / VERSION_FILE
    tmp = layout.tmp_path(".version")
    try:
        _write_synced(tmp, text)
        try:
            os.link(tmp, target)
        except FileExistsError:
            pass  # another creator was first (or an NFS client retried a link that had worked)
        except OSError as exc:
            if exc.errno not in _NO_HARD_LINKS:
                raise
            # a file system without hard links: rename, unless another creator was
            # first (all creators of one release write the same text)
            if not target.exists():
                os.rename(tmp, target)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


# -- creation


def group_id(group: str) -> int:
    """The id of a Unix group.

    :raises StoreError: no such group
    """
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise StoreError(
            f"unknown Unix group {group!r}",
            hint="list groups with `getent group`; create one with `groupadd` and add the store's users to it",
        ) from None


#: The folders of the layout whose entries sit in a two-level fan-out (``ab/cdef...``)
FANOUT_FOLDERS = ("objects", "trees", "actions", "stamps")


def make_folders(layout: Layout) -> None:
    """Creates every folder of the layout that is missing (with the store's folder mode).

    In a group store the fan-out folders (``objects/00`` ... ``objects/ff``,
    and of ``trees/``, ``actions/``, ``stamps/``) and ``roots/{data,lock}``
    are made too, so that the store's owner owns them: the owner of a
    sticky folder may remove any entry of it, which no member may then do.
    """
    for folder in (layout.objects, layout.trees, layout.actions, layout.views, layout.roots, layout.tmp, layout.locks, layout.quarantine, layout.stamps):
        layout.mkdir(folder)
    layout.mkdir(layout.leases, mode=SHARED_LEASE_DIR_MODE if layout.shared else None)
    if layout.shared:
        for name in FANOUT_FOLDERS:
            for fan in range(256):
                layout.mkdir(layout.root / name / f"{fan:02x}")
        for kind in ("data", "lock"):
            layout.mkdir(layout.roots / kind)


def create_store(root: Path, *, group: str | None = None) -> None:
    """Makes ``root`` a store, unless it has a ``VERSION`` file already.

    The one place where a store is created (:class:`Store` with
    ``create=True``, ``datamaestro store init``). Any number of processes on
    any number of machines may create the same store at once, on a file
    system where ``O_CREAT|O_EXCL`` and locks are not shared (NFS
    ``nolock``, FUSE): every step either does not mind being done twice
    (``mkdir`` where "exists" is fine, a rename of identical content) or is
    a hard link that only one creator wins (``VERSION``, last, so that a
    ``VERSION`` file means a complete store). None of them fails because
    another one is creating.

    A folder that holds only what a store holds (left by a kill during the
    creation, or by a creator running now) is completed; one holding
    anything else is refused.

    :param group: a store for this Unix group: the store folder is given to
        it (setgid, group-writable) and ``SHARED`` is written *before*
        ``VERSION``, so that no process ever uses the new store as a private
        one (the rest of the group setup: :func:`~.init.init_store`)
    :raises StoreError: the folder is not a store and not empty, an unknown
        group, or the store cannot be written
    """
    root = Path(root)
    gid = group_id(group) if group is not None else None
    if _read_version(root) is not None:
        return
    foreign = _foreign_entries(root)
    if foreign:
        raise StoreError(f"{root} is not a datamaestro store (no {VERSION_FILE} file) and is not empty")
    try:
        root.mkdir(parents=True, exist_ok=True)
        if group is not None:
            _give_to_group(root, gid, group)
        layout = Layout(root, shared=group is not None or (root / SHARED_FILE).is_file())
        if group is not None and _marker_group(root) != group:
            replace_store_file(layout, SHARED_FILE, group + "\n")
        # the other folders are made on demand (``store init``: all at once)
        _link_version(layout, format_layout(LAYOUT_PARTS))
    except OSError as exc:
        raise disk_error(exc, f"creating the store {root}") from None


def _marker_group(root: Path) -> str | None:
    """The group named by the ``SHARED`` marker (None without one)."""
    try:
        return (root / SHARED_FILE).read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None


def _give_to_group(folder: Path, gid: int, group: str) -> None:
    """Gives the store folder to ``gid``, setgid and group-writable."""
    try:
        if os.stat(folder).st_gid != gid:
            os.chown(folder, -1, gid)
        os.chmod(folder, SHARED_DIR_MODE)  # after chown, which may clear the setgid bit
    except PermissionError as exc:
        raise StoreError(
            f"cannot give {folder} to group {group}: {exc.strerror}",
            hint="be a member of the group (see `id`) and own the store folder, or run as root",
        ) from None


# -- opening and migration


def open_layout(root: Path, *, create: bool = True) -> dict[str, int]:
    """Checks the layout of the store at ``root`` (creating or migrating it); returns its part versions.

    :raises StoreError: no store (``create=False``), a folder that is not a
        store, a garbled ``VERSION``, a newer layout
    """
    text = _read_version(root)
    if text is None:
        if not create:
            if _foreign_entries(root):
                raise StoreError(f"{root} is not a datamaestro store (no {VERSION_FILE} file) and is not empty")
            raise StoreError(f"no store at {root}")
        create_store(root)
        text = _await_version(root)
    versions, legacy = parse_layout(root, text)
    if legacy or _behind(versions):
        versions = migrate_layout(root)
    return versions


def _version_text(root: Path) -> str:
    text = _read_version(root)
    if text is None:
        raise StoreError(f"the store {root} lost its {VERSION_FILE} file while in use", hint="run again")
    return text


def _behind(versions: dict[str, int]) -> list[str]:
    """The parts older than this datamaestro's."""
    return [part for part, current in LAYOUT_PARTS.items() if versions[part] < current]


def migrate_layout(root: Path, *, timeout: float = 3600) -> dict[str, int]:
    """Brings every part of the store at ``root`` to this datamaestro's version; returns the versions.

    Under the store lock ``layout``, ``VERSION`` is read again (another
    process may have migrated meanwhile), then for each part older than
    :data:`LAYOUT_PARTS` the :data:`MIGRATIONS` steps run one version at a
    time, ``VERSION`` being rewritten (temporary file, then rename) after
    each. A ``VERSION`` of the first format is rewritten in the new one.

    A store one may only read (or whose disk is full) whose only change
    would be the format of ``VERSION`` is read as it is; one whose parts
    must change is refused.

    :raises StoreError: a step failed, or the store must change and cannot be written
    """
    versions, legacy = parse_layout(root, _version_text(root))
    behind = _behind(versions)
    if not legacy and not behind:
        return versions
    layout = Layout(root, shared=(root / SHARED_FILE).is_file())
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(store_lock(layout, LAYOUT_LOCK, timeout=timeout, what="migrating the store layout"))
        except LockTimeoutError:
            raise
        except StoreError as exc:
            changing = [part for part in behind if any((part, v) not in NO_FILE_CHANGES for v in range(versions[part], LAYOUT_PARTS[part]))]
            if not changing:
                # nothing to change but VERSION: read it as it is (a reader writes nothing)
                return {**versions, **{part: LAYOUT_PARTS[part] for part in behind}}
            steps = ", ".join(f"{part} {versions[part]} -> {LAYOUT_PARTS[part]}" for part in changing)
            raise StoreError(
                f"store {root} must be migrated to this datamaestro's layout ({steps}) and cannot be: {exc.message}",
                hint="ask the store's owner to open it once with this datamaestro (e.g. `datamaestro store info`)",
            ) from None
        versions, legacy = parse_layout(root, _version_text(root))  # another process may have migrated meanwhile
        for part, current in LAYOUT_PARTS.items():
            while versions[part] < current:
                MIGRATIONS[part, versions[part]](layout)
                versions[part] += 1
                _record_layout(layout, versions)
                legacy = False
        if legacy:
            with contextlib.suppress(StoreError):
                _record_layout(layout, versions)  # on failure, read as it is; the next open tries again
    return versions


def _record_layout(layout: Layout, versions: dict[str, int]) -> None:
    try:
        replace_store_file(layout, VERSION_FILE, format_layout(versions))
    except OSError as exc:
        raise disk_error(exc, "recording the store's layout version") from None


def _check_migrations() -> None:
    """Every part has a migration from each of its versions below the current one."""
    for part, current in LAYOUT_PARTS.items():
        for version in range(1, current):
            if (part, version) not in MIGRATIONS:
                raise RuntimeError(f"no migration of the store's {part} from version {version}")


_check_migrations()
