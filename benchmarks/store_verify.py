"""``store verify`` throughput, against ``sha256sum`` and ``cat`` of the same object files.

A store holding about 2 GiB in files of mixed sizes (a few large ones,
many of a few MiB, many small ones) is built once in the work folder.
Every object file is read once with ``cat`` first, so that all three
measurements find them in the page cache: what is compared is hashing,
not the disk. datamaestro's side is :func:`datamaestro.store.maintenance.verify`
called in this process (default ``jobs``); the references run as one
subprocess over all the object files.
"""

from __future__ import annotations

import os
from pathlib import Path

from benchmarks._common import GiB, KiB, MB, MiB, Row, compare, fresh_dir, median, size_label, slug, time_call, time_command

NAME = "store_verify"
TARGET = 3.0


def object_sizes(total: int) -> list[int]:
    """File sizes adding up to about ``total``: half in 4 large files, 40 % of 1–8 MiB, 10 % of 1–256 KiB."""
    import numpy as np

    rng = np.random.default_rng(0)
    sizes = [total // 8] * 4
    medium = total * 4 // 10
    while medium > 0:
        size = int(rng.integers(MiB, 8 * MiB))
        sizes.append(size)
        medium -= size
    small = total // 10
    while small > 0:
        size = int(rng.integers(KiB, 256 * KiB))
        sizes.append(size)
        small -= size
    return sizes


def build_store(root: Path, total: int):
    """The store of the benchmark, built once (random content, so every object is distinct)."""
    import numpy as np

    from datamaestro.store import Store

    marker = root / ".bench-complete"
    if marker.is_file() and marker.read_text() == str(total):
        return Store(root)
    fresh_dir(root)
    store = Store(root)
    rng = np.random.default_rng(1)
    for size in object_sizes(total):
        with store.writer() as writer:
            left = size
            while left:
                count = min(left, 16 * MiB)
                writer.write(rng.integers(0, 256, count, dtype=np.uint8).tobytes())
                left -= count
            writer.commit()
    marker.write_text(str(total))
    return store


def run(work: Path, quick: bool) -> list[Row]:
    """Throughput of verify, sha256sum and cat over the same files (page cache warm)."""
    from datamaestro.store.maintenance import verify

    total = 64 * MiB if quick else 2 * GiB
    runs = 3
    store = build_store(work / f"verify-store-{slug(total)}", total)
    files = sorted(str(store.path_of(d)) for d in store.objects.iter_digests())
    size = sum(os.path.getsize(f) for f in files)
    cat = ["sh", "-c", 'cat "$@" > /dev/null', "cat", *files]
    sha = ["sh", "-c", 'sha256sum "$@" > /dev/null', "sha256sum", *files]
    time_command(cat)  # the page cache, for all three

    def check():
        report = verify(store)
        if not report.ok or report.bytes != size:
            raise RuntimeError(f"verify found problems or missed bytes: {report}")

    # in turns, so that a busy moment of the machine hits the three alike
    times = [(time_call(check), time_command(sha), time_command(cat)) for _ in range(runs)]
    ours, sha256, cat_rate = (size / median([t[i] for t in times]) / MB for i in range(3))
    what = f"{len(files)} objects, {size_label(size) if size % MiB == 0 else f'{size / GiB:.2f} GiB'}"
    how = f"median of {runs} runs, in turns, page cache warm; {os.cpu_count()} CPUs"
    return [
        compare(NAME, f"`verify` vs `sha256sum`, {what}", ours, sha256, "MB/s", how + "; sha256sum: one process over all files", target=f"≥ {TARGET:g}", met=lambda ratio: ratio >= TARGET),
        compare(NAME, f"`verify` vs `cat > /dev/null`, {what}", ours, cat_rate, "MB/s", how + "; context: reading alone"),
    ]
