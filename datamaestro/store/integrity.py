"""What the store checks before it hands an object out, and the quarantine.

Every object gets a *stamp* when it is committed (its size, mtime and, where
the file system keeps inode numbers stable, its inode: see
:func:`~datamaestro.store.objects.record_stamp`). A warm ``prepare``,
``prepare_dataset()`` and ``sync`` call :func:`check_on_use` on what they
hand out: one ``stat`` (and one ``readlink``) per object, no rehash. An
object whose stat no longer matches its stamp was changed after it was
stored (edited in place by its owner, replaced by root, damaged by a
restore): it is moved to ``quarantine/`` when this process may move it (its
owner, the store's owner, root), so that the caller fetches it again, and
is otherwise refused with an error saying who may repair it.
``store verify`` still rehashes every object.
"""

from __future__ import annotations

import json
import os
import pwd
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from ..errors import IntegrityError, StoreError, UntrustedInputError
from .actions import Kind, Output
from .digests import hex_of, is_digest
from .objects import Layout, record_stamp, remove_tree, stamp_matches

if TYPE_CHECKING:
    from . import Store

QUARANTINE_NOTE = ".json"


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
    while target.exists() or target.with_name(target.name + QUARANTINE_NOTE).exists():
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
    target.with_name(target.name + QUARANTINE_NOTE).write_text(json.dumps(note, indent=2) + "\n")
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


def _objects_of(store: "Store", output: Output) -> tuple[list[str], Path | None]:
    """The objects an output hands out (a tree: its own object first), and its materialized folder (None for a file)."""
    if output.kind == Kind.FILE:
        return [output.digest], None
    tree = store.trees.path_of(output.digest)
    key = (os.fspath(store.root), output.digest)
    files = _TREE_FILES.get(key)
    if files is None:
        try:
            # checked once here, not on every use
            files = tuple(digest for digest in dict.fromkeys(store.trees.iter_object_digests(output.digest)) if is_digest(digest))
        except (StoreError, UntrustedInputError, OSError):
            return [output.digest], tree
        if len(_TREE_FILES) >= _TREE_FILES_KEPT:
            _TREE_FILES.clear()
        _TREE_FILES[key] = files
    return [output.digest, *files], tree


def check_on_use(store: "Store", outputs: Iterable[Output]) -> list[Changed]:
    """The on-use check: compares every object the outputs hand out with its stamp; one ``stat`` each, no rehash.

    Called by a warm ``prepare``, ``prepare_dataset()`` and ``sync`` on the
    outputs present in the store, before handing them out. An object without
    a stamp (stored by an older datamaestro) gets one now. An object whose
    size, mtime or inode differs from its stamp, or a file of a materialized
    tree whose object is gone, is *changed*: the object is moved to
    ``quarantine/`` and the materialized tree holding it removed, so that
    the output is missing and the caller fetches it again.

    :returns: the changed objects (quarantined) and the trees removed (empty:
        everything is as stored)
    :raises IntegrityError: a changed object this process may not move
        (another member's, in a group store): the message names its owner
    """
    layout = store.layout
    precise = layout.precise_stat
    # paths as strings: building a Path per object would cost more than its stat
    objects, stamps = os.fspath(layout.objects), os.fspath(layout.stamps)
    changed: list[Changed] = []
    refused: list[Changed] = []
    # digest -> True when it is as stored (an object may be in several outputs)
    seen: dict[str, bool] = {}
    for output in outputs:
        if output is None or not output.kind.stored or not output.digest:
            continue
        if not is_digest(output.digest):
            continue
        digests, tree = _objects_of(store, output)
        damaged = False
        for digest in digests:
            if digest in seen:
                damaged = damaged or not seen[digest]
                continue
            seen[digest] = False
            name = f"{digest[7:9]}/{digest[9:]}"
            try:
                st = os.stat(f"{objects}/{name}")
            except FileNotFoundError:
                if tree is not None and digest != output.digest:
                    damaged = True  # a tree served without one of its objects (moved aside or collected)
                continue
            try:
                recorded = os.readlink(f"{stamps}/{name}")
            except OSError:
                recorded = None
            if recorded is None:
                record_stamp(layout, digest, st)  # stored before stamps: trusted from now on
                seen[digest] = True
                continue
            same, now = stamp_matches(recorded, st, precise)
            if same:
                seen[digest] = True
                continue
            found = Changed(digest, _difference(recorded, now), owner_name(st.st_uid))
            damaged = True
            if layout.may_remove(st):
                try:
                    found.quarantined = quarantine_object(layout, digest, None, st.st_size, why=f"changed after it was stored: {found.why}")
                except OSError:
                    refused.append(found)  # a store this user may only read
                    continue
                changed.append(found)
            else:
                refused.append(found)
        if damaged and tree is not None and os.path.isdir(tree):
            owner = owner_name(os.lstat(tree).st_uid)
            if remove_entry(layout, tree):
                changed.append(Changed(output.digest, "its materialized folder held a changed or missing file (removed)", owner))
            else:
                refused.append(Changed(output.digest, "its materialized folder holds a changed or missing file", owner))
    if refused:
        first = refused[0]
        raise IntegrityError(
            f"object {first.digest} of the store {store.root} was changed after it was stored ({first.why}); "
            f"it belongs to {first.owner} and this user may not move it aside"
            + (f" ({len(refused) - 1} more)" if len(refused) > 1 else ""),
            hint=f"ask {first.owner} or the store's owner to run `datamaestro store verify` (it moves changed objects "
            "to quarantine/), then run again: the data is fetched again",
        )
    return changed


def repair_warning(store_root: Path, changed: list[Changed]) -> str:
    """The one line that says a store was damaged and repaired: what changed, where it went, that it is fetched again.

    :param store_root: the store
    :param changed: what :func:`check_on_use` moved aside or removed (not empty)
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
