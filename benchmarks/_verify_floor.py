"""The floor of ``store verify`` on many small objects: the system calls and hashing it needs per object, made by a minimal script.

``python -m benchmarks._verify_floor STORE [PROCESSES]``: the store's 256
fan-out folders shared among PROCESSES forked processes (default: one per
core, as ``store verify`` does on a local disk); each lists its folders and
per object makes one ``lstat``, ``open``, ``readv``, ``close``, blake3 of
the bytes, and ``readlink`` of the object's stamp. No datamaestro import, no
tree parsed, no report, no start-up of a command line: what is left when
everything but the rehash itself is taken away. The time printed is the
whole process's, as the benchmarks measure it.
"""

from __future__ import annotations

import os
import sys
import time

from blake3 import blake3


def rehash(store: str, fans: list[str]) -> int:
    """Objects of ``fans`` whose bytes do not hash to their name."""
    objects, stamps = os.path.join(store, "objects"), os.path.join(store, "stamps")
    buffer = bytearray((1 << 20) + 1)
    view = memoryview(buffer)
    wrong = 0
    for fan in fans:
        base, stamp_base = f"{objects}/{fan}/", f"{stamps}/{fan}/"
        for name in os.listdir(base):
            path = base + name
            os.lstat(path)
            fd = os.open(path, os.O_RDONLY)
            size = os.readv(fd, [buffer])
            os.close(fd)
            if blake3(view[:size]).hexdigest() != fan + name:
                wrong += 1
            try:
                os.readlink(stamp_base + name)
            except OSError:
                pass
    return wrong


def main(store: str, processes: int) -> None:
    """Rehashes the store's small objects in ``processes`` forked processes."""
    fans = sorted(name for name in os.listdir(os.path.join(store, "objects")) if len(name) == 2)
    children = []
    for index in range(1, processes):
        pid = os.fork()
        if pid == 0:
            rehash(store, fans[index::processes])
            os._exit(0)
        children.append(pid)
    rehash(store, fans[0::processes])
    for pid in children:
        os.waitpid(pid, 0)


if __name__ == "__main__":
    started = time.perf_counter()
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else len(os.sched_getaffinity(0)))
    print(f"{time.perf_counter() - started:.3f}")
