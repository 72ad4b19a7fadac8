"""``store verify`` throughput, against ``b3sum``, ``sha256sum`` and ``cat`` of the same object files.

Two stores compare verify with ``b3sum`` (the same hash, mapped files and
every core; installed with apt by the runner when missing): one object of
1 GiB, and 10,000 objects of 4 KiB. ``b3sum`` runs as one process over all
the object files; verify is called in this process (imports paid, as in a
long-lived tool), and it also lists the store and checks trees and views.
The Python ``blake3`` package's command line is not a fair peer (it reads
in Python): it is not used.

A store holding about 2 GiB in files of mixed sizes (a few large ones,
many of a few MiB, many small ones) is built once in the work folder.
Every object file is read once with ``cat`` first, so that all three
measurements find them in the page cache: what is compared is hashing,
not the disk. datamaestro's side is :func:`datamaestro.store.verify.verify`
called in this process (default ``jobs``); the references run as one
subprocess over all the object files.
"""

from __future__ import annotations

import os
from pathlib import Path

from benchmarks._common import GiB, KiB, MB, MiB, Row, compare, fresh_dir, median, size_label, skipped, slug, time_call, time_command

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


def build_store(root: Path, total: int, sizes: list[int] | None = None):
    """The store of the benchmark, built once (random content, so every object is distinct)."""
    import numpy as np

    from datamaestro.store import Store

    marker = root / ".bench-complete"
    if marker.is_file() and marker.read_text() == str(total):
        return Store(root)
    fresh_dir(root)
    store = Store(root)
    rng = np.random.default_rng(1)
    for size in sizes or object_sizes(total):
        with store.writer() as writer:
            left = size
            while left:
                count = min(left, 16 * MiB)
                writer.write(rng.integers(0, 256, count, dtype=np.uint8).tobytes())
                left -= count
            writer.commit()
    marker.write_text(str(total))
    return store


B3SUM_LARGE = 1.3
B3SUM_SMALL = 1.5


def build_small_store(root: Path, count: int, size: int):
    """A store of ``count`` distinct objects of ``size`` random bytes (one tree), built once."""
    import numpy as np

    from datamaestro.store import Store

    marker = root / ".bench-complete"
    if marker.is_file() and marker.read_text() == f"{count}x{size}":
        return Store(root)
    fresh_dir(root)
    source = fresh_dir(root.with_name(root.name + "-source"))
    rng = np.random.default_rng(2)
    for index in range(count):
        folder = source / f"d{index % 100:02d}"
        folder.mkdir(exist_ok=True)
        (folder / f"f{index:05d}").write_bytes(rng.integers(0, 256, size, dtype=np.uint8).tobytes())
    store = Store(root)
    store.ingest_tree(source, move=True)
    fresh_dir(source).rmdir()
    marker.write_text(f"{count}x{size}")
    return store


def against_b3sum(work: Path, quick: bool, offline: bool) -> list[Row]:
    """verify against b3sum on one large object and on many small ones."""
    from benchmarks._peers import program, version
    from datamaestro.store.verify import verify

    large_size = 64 * MiB if quick else GiB
    count = 1000 if quick else 10_000
    large_label, small_label = f"1 object of {size_label(large_size)}", f"{count:,} objects of 4 KiB"
    cases = [
        (large_label, B3SUM_LARGE, lambda: build_store_of_one(work / f"verify-one-{slug(large_size)}", large_size)),
        (small_label, B3SUM_SMALL, lambda: build_small_store(work / f"verify-small-{count}", count, 4 * KiB)),
    ]
    b3sum, why = program("b3sum", "b3sum", offline=offline)
    if b3sum is None:
        return [skipped(NAME, f"`verify` vs `b3sum`, {label}", why, target=f"≤ {target:g}") for label, target, _ in cases]
    runs = 5
    rows = []
    for label, target, build in cases:
        store = build()
        files = sorted(os.fspath(store.path_of(d)) for d in store.objects.iter_digests())
        size = sum(os.path.getsize(f) for f in files)
        command = [b3sum, "--no-names", *files]
        time_command(command)  # the page cache, for both

        def check():
            report = verify(store)
            if not report.ok or report.bytes != size:
                raise RuntimeError(f"verify found problems or missed bytes: {report}")

        times = [(time_call(check), time_command(command)) for _ in range(runs)]
        ours, theirs = median([t[0] for t in times]), median([t[1] for t in times])
        rows.append(compare(NAME, f"`verify` vs `b3sum`, {label}", ours, theirs, "s",
                            f"median of {runs} runs, in turns, page cache warm; {os.cpu_count()} CPUs; verify() in this process "
                            f"(lists the store, checks trees and views too); reference: one `b3sum` process over the object files "
                            f"({version([b3sum, '--version'])})", target=f"≤ {target:g}", met=lambda ratio, t=target: ratio <= t))
    return rows


def build_store_of_one(root: Path, size: int):
    """A store holding one object of ``size`` random bytes, built once."""
    return build_store(root, size, sizes=[size])


def run(work: Path, quick: bool, offline: bool = False) -> list[Row]:
    """Throughput of verify, sha256sum and cat over the same files (page cache warm); verify against b3sum."""
    rows = against_b3sum(work, quick, offline)
    from datamaestro.store.verify import verify

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
    return rows + [
        compare(NAME, f"`verify` vs `sha256sum`, {what}", ours, sha256, "MB/s", how + "; sha256sum: one process over all files", target=f"≥ {TARGET:g}", met=lambda ratio: ratio >= TARGET),
        compare(NAME, f"`verify` vs `cat > /dev/null`, {what}", ours, cat_rate, "MB/s", how + "; context: reading alone"),
    ]
