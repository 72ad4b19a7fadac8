"""The floors of two per-file paths: the system calls datamaestro's design needs per file, made by a minimal script.

``python -m benchmarks._per_file_floor extract URL WORK`` does what a cold
``prepare`` of a ``.tar.gz`` must do, and nothing else: download, gunzip
once, read the tar headers (:mod:`tarfile`), write and hash each member
(read-only, ``O_EXCL``), one ``syncfs``, then per file one ``lstat`` (its
stamp), one hard link into ``objects/ab/`` and one symbolic link (its
stamp); the tree's document written once, the folder renamed into place.

``python -m benchmarks._per_file_floor sync PEER_STORE TREE_DIGEST WORK``
does what ``sync --from`` a peer store on the same file system must do:
one ``syncfs``, then per file of the tree: open, ``fstat``, read, hash, link
the open inode into ``objects/ab/``, close; read the peer's stamp and link
it; link the object into the materialized tree.

No checks, no locks, no records, no imports of datamaestro: what is left
when everything but the work itself is taken away. The time printed is
the whole process's (start-up included), as the benchmarks measure it.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
import tarfile
import time
import urllib.request
import zlib

from blake3 import blake3

_libc = ctypes.CDLL(None, use_errno=True)


def syncfs(path: str) -> None:
    """Flushes the file system of ``path``."""
    fd = os.open(path, os.O_RDONLY)
    try:
        _libc.syncfs(fd)
    finally:
        os.close(fd)


def store_folders(work: str) -> tuple[str, str, str]:
    """``objects/``, ``stamps/`` and ``tmp/`` of a new store at ``work``, with their 256 fan-out folders."""
    objects, stamps, tmp = (os.path.join(work, name) for name in ("objects", "stamps", "tmp"))
    for base in (objects, stamps):
        for index in range(256):
            os.makedirs(f"{base}/{index:02x}")
    os.makedirs(tmp)
    return objects, stamps, tmp


def extract(url: str, work: str) -> None:
    """The floor of a cold prepare of a ``.tar.gz`` (see the module's documentation)."""
    objects, stamps, tmp = store_folders(work)
    gz = os.path.join(tmp, "download")
    with urllib.request.urlopen(url) as response, open(gz, "wb") as out:
        while chunk := response.read(1 << 20):
            out.write(chunk)
    plain = gz + ".tar"
    with open(gz, "rb") as src, open(plain, "wb") as out:
        decompressor = zlib.decompressobj(wbits=31)
        while chunk := src.read(1 << 20):
            out.write(decompressor.decompress(chunk))
    folder = os.path.join(tmp, "extract")
    os.mkdir(folder, 0o700)
    files = []
    made = set()
    with tarfile.open(plain) as archive:
        members = list(archive)
        for member in members:
            path = os.path.join(folder, member.name)
            parent = os.path.dirname(path)
            if parent not in made:
                os.makedirs(parent, exist_ok=True)
                made.add(parent)
            if member.isdir():
                continue
            data = archive.extractfile(member).read()
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
            os.write(fd, data)
            os.close(fd)
            files.append((member.name, path, blake3(data).hexdigest(), len(data)))
    os.unlink(plain), os.unlink(gz)
    syncfs(tmp)
    for _, path, hexdigest, _ in files:
        st = os.lstat(path)
        os.link(path, f"{objects}/{hexdigest[:2]}/{hexdigest[2:]}")
        os.symlink(f"size={st.st_size},mtime={st.st_mtime_ns},ino={st.st_ino}", f"{stamps}/{hexdigest[:2]}/{hexdigest[2:]}")
    files.sort()
    document = "".join(json.dumps({"digest": "blake3:" + h, "kind": "file", "path": name, "size": size}) + "\n" for name, _, h, size in files).encode()
    hexdigest = blake3(document).hexdigest()
    with open(f"{objects}/{hexdigest[:2]}/{hexdigest[2:]}", "xb") as out:
        out.write(document)
        os.fsync(out.fileno())
    os.makedirs(os.path.join(work, "trees", hexdigest[:2]))
    os.rename(folder, os.path.join(work, "trees", hexdigest[:2], hexdigest[2:]))


def sync(peer: str, tree: str, work: str) -> None:
    """The floor of ``sync --from`` a peer store on the same file system (see the module's documentation)."""
    objects, stamps, tmp = store_folders(work)
    syncfs(tmp)
    hexdigest = tree.removeprefix("blake3:")
    with open(f"{peer}/objects/{hexdigest[:2]}/{hexdigest[2:]}", "rb") as fp:
        entries = [json.loads(line) for line in fp.read().splitlines()[1:-1]]
    fds = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY)
    view = os.path.join(tmp, "tree")
    made = set()
    for entry in entries:
        if entry["kind"] != "file":
            continue
        h = entry["digest"][7:]
        fd = os.open(f"{peer}/objects/{h[:2]}/{h[2:]}", os.O_RDONLY)
        st = os.fstat(fd)
        if blake3(os.read(fd, st.st_size + 1)).hexdigest() != h:
            raise RuntimeError(entry["path"])
        target = f"{objects}/{h[:2]}/{h[2:]}"
        try:
            os.link(str(fd), target, src_dir_fd=fds, follow_symlinks=True)
        except FileExistsError:
            pass
        os.close(fd)
        try:
            os.readlink(f"{peer}/stamps/{h[:2]}/{h[2:]}")
            os.link(f"{peer}/stamps/{h[:2]}/{h[2:]}", f"{stamps}/{h[:2]}/{h[2:]}", follow_symlinks=False)
        except FileExistsError:
            pass
        path = os.path.join(view, entry["path"])
        parent = os.path.dirname(path)
        if parent not in made:
            os.makedirs(parent, exist_ok=True)
            made.add(parent)
        os.link(target, path)
    os.makedirs(os.path.join(work, "trees", hexdigest[:2]))
    os.rename(view, os.path.join(work, "trees", hexdigest[:2], hexdigest[2:]))
    os.close(fds)


if __name__ == "__main__":
    started = time.perf_counter()
    {"extract": extract, "sync": sync}[sys.argv[1]](*sys.argv[2:])
    print(f"{time.perf_counter() - started:.3f}")
