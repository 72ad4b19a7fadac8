"""The rehash of many small objects that ``store verify`` runs, in its own process or in worker processes (one per core).

This module imports nothing of datamaestro: ``store verify`` runs it as a
script (``python -P rehash.py ...``, see :func:`worker_command`) in worker
processes that start in a few hundredths of a second, each rehashing its
share of the store's fan-out folders, while the command's own process
checks the trees. Threads would not do: hashing a 4 KiB object and the
Python work around it hold the GIL, so threads only take turns (measured:
two threads are slower than one on a local disk).

Per object: ``lstat`` (the stamp's fields, the size), ``open``, one
``readv`` into a reused buffer, ``close``, blake3, and ``readlink`` of its
stamp. Nothing is kept per right object: only what needs the caller's
attention comes back (see :func:`check_objects`).
"""

from __future__ import annotations

import json
import os
import stat
import sys

#: what :func:`check_objects` reports, per object needing attention
MISMATCH, STALE, LARGE, ERROR = "M", "S", "L", "E"
#: what :func:`check_objects` reports for an entry that is not a regular file (never opened nor followed)
NOT_A_FILE = "N"
#: what :func:`check_objects` reports for an entry whose name is not an object's (never looked at: a planted
#: sparse file of a terabyte would otherwise be read whole)
NOT_A_DIGEST = "B"
#: the characters of an object's name (the hex digits of its blake3 digest, lowercase)
_HEX = "0123456789abcdef"


def is_object_name(hexdigest: str) -> bool:
    """True when ``hexdigest`` (fan-out folder and name, as listed) is an object's name: 64 lowercase hex digits.

    :func:`~datamaestro.store.digests.is_digest` without the prefix, here
    because a worker imports nothing of datamaestro.
    """
    return len(hexdigest) == 64 and not hexdigest.strip(_HEX)


def entry_kind(mode: int) -> str:
    """What an entry that is not a regular file is, in words (for the line naming it)."""
    for test, kind in ((stat.S_ISDIR, "a directory"), (stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a fifo"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file"


def stamp_text(st: os.stat_result, precise: bool) -> str:
    """What a stamp records of an object: size, mtime and inode (``precise``), else size and mtime in seconds (see :mod:`.stamps`)."""
    if precise:
        return f"size={st.st_size},mtime={st.st_mtime_ns},ino={st.st_ino}"
    return f"size={st.st_size},mtime_s={st.st_mtime_ns // 1_000_000_000}"


def check_objects(objects: str, stamps: str, precise: bool, hexdigests, buffer: bytearray) -> tuple[int, int, int, list[tuple[str, str, str]]]:
    """Rehashes objects that fit in ``buffer``; what needs attention comes back as events.

    :param objects: the store's ``objects`` folder
    :param stamps: the store's ``stamps`` folder
    :param precise: whether stamps record the inode and mtime in nanoseconds
    :param hexdigests: the objects' names (hex, no prefix)
    :param buffer: where each object is read (one larger than any small
        object: an object filling it is handed back as :data:`LARGE`)
    :returns: ``(names, checked, bytes, events)``: names looked at, objects
        rehashed (right or not) and their bytes, and ``(kind, hex, detail)``
        for each object that is :data:`MISMATCH` (detail: what it hashes
        to), :data:`STALE` (right bytes, a stamp missing or not exactly its
        ``lstat``: the caller compares again, at the stamp's precision),
        :data:`LARGE` (not read: for the caller's mapped hashing),
        :data:`NOT_A_FILE` (a directory, a symbolic link, a fifo... planted
        where an object should be: neither opened nor followed; detail:
        what it is, see :func:`entry_kind`) or :data:`ERROR` (unreadable;
        detail: the error). An object removed meanwhile (gc) is counted in
        ``names`` only. A name that is not an object's (64 lowercase hex
        digits, fan-out folder included) is :data:`NOT_A_DIGEST` (detail:
        why), neither looked up nor read.
    """
    from blake3 import blake3

    view = memoryview(buffer)
    limit = len(buffer)
    sep = os.sep
    lstat, open_, readv, close, readlink, is_file = os.lstat, os.open, os.readv, os.close, os.readlink, stat.S_ISREG
    # a fifo among the objects must not block, a symbolic link swapped in after the lstat must not be followed
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW
    names = checked = total = 0
    events: list[tuple[str, str, str]] = []
    for hexdigest in hexdigests:
        names += 1
        if not is_object_name(hexdigest):
            events.append((NOT_A_DIGEST, hexdigest, "its name is not a digest"))
            continue
        name = hexdigest[:2] + sep + hexdigest[2:]
        path = objects + sep + name
        try:
            st = lstat(path)  # for the stamp, the size to read, and what it is
            if not is_file(st.st_mode):
                events.append((NOT_A_FILE, hexdigest, entry_kind(st.st_mode)))
                continue
            if st.st_size >= limit:
                events.append((LARGE, hexdigest, ""))
                continue
            fd = open_(path, flags)
            try:
                size = readv(fd, [buffer])
                if size != st.st_size:
                    # changed meanwhile, or a network file system giving less than asked: read to the end
                    while size < limit and (more := readv(fd, [view[size:]])):
                        size += more
            finally:
                close(fd)
        except FileNotFoundError:
            continue  # removed meanwhile (gc): nothing to check
        except OSError as exc:
            events.append((ERROR, hexdigest, str(exc)))
            continue
        if size >= limit:
            events.append((LARGE, hexdigest, ""))  # grew meanwhile: hashed as a large one
            continue
        checked += 1
        total += size
        actual = blake3(view[:size]).hexdigest()
        if actual != hexdigest:
            events.append((MISMATCH, hexdigest, actual))
            continue
        try:
            if readlink(stamps + sep + name) == stamp_text(st, precise):
                continue
        except OSError:
            pass
        events.append((STALE, hexdigest, ""))
    return names, checked, total, events


def check_folder(objects: str, stamps: str, precise: bool, fan: str, buffer: bytearray) -> tuple[int, int, int, list[tuple[str, str, str]]]:
    """:func:`check_objects` of every object of the fan-out folder ``fan`` (nothing when it was removed meanwhile)."""
    try:
        names = os.listdir(objects + os.sep + fan)
    except FileNotFoundError:
        names = []  # removed meanwhile: nothing to check
    return check_objects(objects, stamps, precise, [fan + name for name in names], buffer)


def worker_command(objects: str, stamps: str, precise: bool, limit: int, fans: list[str]) -> list[str]:
    """The command line of a worker process rehashing the objects of the fan-out folders ``fans`` (see :func:`worker_main`)."""
    # -P: this file's folder is not put on sys.path (its modules would shadow the standard library's)
    return [sys.executable, "-P", os.path.abspath(__file__), objects, stamps, "1" if precise else "0", str(limit), *fans]


def event_line(kind: str, hexdigest: str, detail: str) -> str:
    """An event of :func:`check_objects` as one line of a worker's output: a JSON array.

    The name comes from a listing of the store, where a member of a group
    store may plant any name (a space, a line break, bytes that are not
    UTF-8): JSON with ASCII escapes carries it whole on one line, so that
    it can neither split its line nor forge another.
    """
    return json.dumps([kind, hexdigest, detail]) + "\n"


def parse_line(line: str) -> tuple[str, ...]:
    """A line of a worker's output as its fields: ``("D", names, checked, bytes)`` per fan-out folder done, or an event ``(kind, hex, detail)`` (see :func:`event_line`)."""
    if line.startswith("D "):
        return tuple(line.rstrip("\n").split(" "))
    kind, hexdigest, detail = json.loads(line)
    return kind, hexdigest, detail


def worker_main(argv: list[str]) -> int:
    """A worker: lists and rehashes the objects of the fan-out folders given, writes what it found on stdout.

    Arguments: ``OBJECTS STAMPS PRECISE LIMIT FAN...``. Output, one line
    each: an event of :func:`check_objects` (:func:`event_line`), then
    ``D NAMES CHECKED BYTES`` per fan-out folder
    done (after its events). Exits 0 when every folder was done.
    """
    objects, stamps, precise, limit, fans = argv[0], argv[1], argv[2] == "1", int(argv[3]), argv[4:]
    buffer = bytearray(limit)
    out = sys.stdout
    try:
        for fan in fans:
            count, checked, total, events = check_folder(objects, stamps, precise, fan, buffer)
            lines = [event_line(kind, hexdigest, detail) for kind, hexdigest, detail in events]
            lines.append(f"D {count} {checked} {total}\n")
            out.write("".join(lines))
        out.flush()
    except KeyboardInterrupt:
        return 130  # Ctrl-C reaches the whole process group: the command says so, not every worker
    except BrokenPipeError:
        return 1  # the command stopped reading (it was interrupted)
    return 0


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
