"""Scaling curves: warm ``prepare_dataset`` and ``store verify`` time against dataset size and file count.

Two series of datasets, each point on a data dir and store of its own
(the action cache knows a download by its URL, and every point serves
other bytes under the same URL):

- size: ``bench.big``, one file of random bytes, 1 MiB to 2 GiB;
- file count: ``sync.files``, a tar archive of 10 to 100,000 files of
  4 KiB in 100 folders, extracted into one tree (each file an object).

For every point the dataset is prepared once from the local HTTP server,
which is then stopped. Measured, in this process (imports done):

- warm ``prepare_dataset`` with a new ``Context`` per call (median of
  several calls); context series: ``cat`` of the file (reading the data
  once) or ``find -L`` of the folder (walking it once), what a warm
  prepare that looked at the data would cost;
- :func:`datamaestro.store.verify.verify` of the point's store (what
  ``datamaestro store verify`` runs), against ``sha256sum`` and ``cat``
  over the same object files, page cache warm, runs in turns.

A third series measures warm ``prepare_dataset`` alone against the files
of the tree, 10 to 1,000,000 (issue 27: at most 2× the 10-file call in the
same run). Its trees are built straight into a store (see
:func:`generated_tree`: small distinct files, no fsync per object, the tree
document and its materialized folder through the store's own functions),
once: the store of each point is kept in the work folder between runs. Its
``sync.files`` action record is pointed at that tree, so that the prepare
finds it as it would after a download. The first warm call (a whole check,
which writes the rotation's index: see ``docs/store.md``) is reported
apart; the ratio is the median of the calls after it.

The table gets one row per curve comparing its last point with a target:
warm prepare of the largest dataset against the smallest (the same time
whatever the data), verify against ``sha256sum`` (the throughput target of
``store_verify``). Every point is in ``results.json`` and ``results.png``.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks._common import (
    GiB,
    KiB,
    MB,
    MiB,
    Curve,
    Row,
    bench_env,
    compare,
    drop_dirty_pages,
    fresh_dir,
    in_environment,
    median,
    random_file,
    serving,
    size_label,
    slug,
    tar_of_files,
    time_call,
    time_command,
)

NAME = "scaling"
SIZES = [MiB, 16 * MiB, 128 * MiB, GiB, 2 * GiB]
QUICK_SIZES = [MiB, 4 * MiB]
COUNTS = [10, 100, 1_000, 10_000, 100_000]
QUICK_COUNTS = [10, 100]
FILE_SIZE = 4 * KiB
#: warm prepare: the largest dataset may take this much longer than the smallest
SAME = 1.2
#: verify: throughput against sha256sum (the target of benchmarks/store_verify.py)
VERIFY = 3.0
#: warm prepare against the files of a generated tree (the reference is the first, 10 files)
TREE_COUNTS = [10, 1_000, 10_000, 100_000, 1_000_000]
QUICK_TREE_COUNTS = [10, 1_000]
#: a warm prepare of the largest tree may take this much longer than of the 10-file one (issue 27)
BOUNDED = 2.0


@dataclass
class Point:
    """What was measured for one dataset: x and seconds of each measure."""

    x: int
    prepare: float
    walk: float
    verify: float
    sha256sum: float
    cat: float
    bytes: int
    objects: int


@dataclass
class Series:
    """One curve's datasets: the dataset id, the file served and how to name x."""

    key: str
    dataset: str
    served_as: str
    x_label: str
    x_unit: str
    walk_label: str

    def source(self, work: Path, x: int) -> Path:
        """The file served for the point ``x`` (generated once)."""
        if self.key == "size":
            return random_file(work / "data" / f"random-{slug(x)}.bin", x)
        return tar_of_files(work / "data" / f"files-{x}x{slug(FILE_SIZE)}.tar", x, FILE_SIZE)

    def walk(self, path: Path) -> list[str]:
        """The context command: read the file, or walk the folder, once."""
        if self.key == "size":
            return ["sh", "-c", 'cat "$0" > /dev/null', str(path)]
        return ["sh", "-c", 'find -L "$0" -type f > /dev/null', str(path)]

    def label(self, x: int) -> str:
        """``2 GiB``, ``100,000 files``."""
        return size_label(x) if self.x_unit == "B" else f"{x:,} files"


SIZE = Series("size", "bench.big", "big.bin", "dataset size", "B", "`cat` of the file (reading the data once)")
COUNT = Series("count", "sync.files", "files.tar", f"files in the dataset ({size_label(FILE_SIZE)} each)", "files", "`find -L` of the folder (walking it once)")


def _object_list(store, path: Path) -> tuple[Path, int, int]:
    """Writes the store's object paths, NUL-separated (too many for a command line); returns (list, bytes, count)."""
    files = [str(store.path_of(d)) for d in store.objects.iter_digests()]
    path.write_bytes(b"".join(os.fsencode(f) + b"\0" for f in files))
    return path, sum(os.path.getsize(f) for f in files), len(files)


def measure_point(series: Series, x: int, work: Path, calls: int, runs: int) -> Point:
    """Prepares one dataset, then times warm prepares, verify and the references."""
    from datamaestro.api import prepare_dataset
    from datamaestro.context import Context
    from datamaestro.store import Store
    from datamaestro.store.verify import verify

    env = bench_env(work / "home-scaling" / f"{series.key}-{x}", work)
    data_dir = fresh_dir(Path(env["DATAMAESTRO_DIR"]))
    with in_environment(env):
        with serving(work, NAME, {series.served_as: series.source(work, x)}, env):
            config = prepare_dataset(series.dataset, context=Context(progress=False))
        drop_dirty_pages()  # the cold prepare's writeback must not slow the warm calls
        # the server is stopped: a warm prepare that made a request would fail
        warm = [time_call(lambda: prepare_dataset(series.dataset, context=Context(progress=False))) for _ in range(calls)]
    walk_command = series.walk(Path(config.path))
    time_command(walk_command)  # page cache
    walk = median([time_command(walk_command) for _ in range(runs)])

    store = Store(data_dir / "store", create=False)
    listing, size, objects = _object_list(store, work / "scaling-objects.list")
    cat = ["sh", "-c", 'xargs -0 -a "$0" cat > /dev/null', str(listing)]
    sha = ["sh", "-c", 'xargs -0 -a "$0" sha256sum > /dev/null', str(listing)]
    time_command(cat)  # the page cache, for the three

    def check():
        report = verify(store)
        if not report.ok or report.bytes != size:
            raise RuntimeError(f"verify found problems or missed bytes: {report}")

    check()  # untimed: first use of the hashing threads
    # in turns, so that a busy moment of the machine hits the three alike
    times = [(time_call(check), time_command(sha), time_command(cat)) for _ in range(runs)]
    fresh_dir(data_dir)  # the next point needs the disk space
    listing.unlink()
    return Point(x, median(warm), walk, *(median([t[i] for t in times]) for i in range(3)), size, objects)


def curves(series: Series, points: list[Point], calls: int, runs: int) -> list[Curve]:
    """The two curves of one series: warm prepare, verify."""

    def line(attribute: str, scale: float = 1.0) -> list[list[float]]:
        return [[p.x, getattr(p, attribute) * scale] for p in points]

    return [
        Curve(
            NAME, f"warm `prepare_dataset` vs {series.x_label}", series.x_label, series.x_unit, "ms",
            {"datamaestro: warm `prepare_dataset`": line("prepare", 1000), series.walk_label: line("walk", 1000)},
            f"median of {calls} calls in this process, new `Context` per call, server stopped; context: median of {runs} runs",
        ),
        Curve(
            NAME, f"`store verify` vs {series.x_label}", series.x_label, series.x_unit, "s",
            {"datamaestro: `verify`": line("verify"), "`sha256sum` of the objects": line("sha256sum"), "`cat` of the objects": line("cat")},
            f"median of {runs} runs, in turns, page cache warm, every object of the point's store; {os.cpu_count()} CPUs",
        ),
    ]


def rows(series: Series, points: list[Point], quick: bool) -> list[Row]:
    """The table's rows: the last point of each curve against its target."""
    first, last = points[0], points[-1]
    what = f"{series.label(last.x)} vs {series.label(first.x)}"
    note = "quick sizes: the ratio means little; " if quick else ""
    rate = f"{last.objects:,} objects, {last.bytes / MiB:,.0f} MiB"
    return [
        compare(NAME, f"warm `prepare_dataset`, {what}", last.prepare * 1000, first.prepare * 1000, "ms",
                note + "median of calls in this process, new `Context` per call; every point in the curve",
                target=f"≤ {SAME}", met=lambda ratio: ratio <= SAME),
        compare(NAME, f"`verify` vs `sha256sum`, {series.label(last.x)} ({rate})", last.bytes / last.verify / MB, last.bytes / last.sha256sum / MB, "MB/s",
                note + "throughput, page cache warm; sha256sum: one process per command line over all objects (xargs)",
                target=f"≥ {VERIFY:g}", met=lambda ratio: ratio >= VERIFY),
    ]


#: threads writing a generated tree's objects on a network file system, where each creation is a round trip
WRITERS_NETWORK = 8


def generated_tree(store, count: int):
    """Stores a tree of ``count`` small distinct files in 100 folders, cheaply; returns its :class:`Output`.

    Each object is written straight to its place, read-only from its
    creation (the store is the benchmark's own: no reader can see it half
    written) and stamped at once, as a commit stamps; no fsync per object
    (a million fsyncs would take an hour on the development machine). On a
    network file system, where each creation is a round trip (a SeaweedFS
    mount: ~7 ms under load), :data:`WRITERS_NETWORK` threads write them.
    The tree document and its materialized folder are made by
    ``TreeStore.store_entries``, the store's own path: a hard link per file
    (its modification time put back where the link changes it, as on
    SeaweedFS) and the rotation's index of the on-use check, so that the
    first warm use checks one slice.
    """
    from concurrent.futures import ThreadPoolExecutor

    from datamaestro.store import Kind, Output
    from datamaestro.store.digests import digest_bytes
    from datamaestro.store.stamps import record_stamp

    layout = store.layout
    for prefix in range(256):
        layout.mkdir(layout.objects / f"{prefix:02x}")

    def write(index: int) -> dict:
        data = b"generated file %d\n" % index
        digest = digest_bytes(data)
        target = os.fspath(layout.fanout(layout.objects, digest))
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        except FileExistsError:
            pass  # kept from an earlier, interrupted build: same bytes by definition
        else:
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
            record_stamp(layout, digest, os.stat(target))
        return {"path": f"d{index % 100:02d}/f{index:07d}.txt", "kind": "file", "digest": digest, "size": len(data)}

    if layout.local:
        entries = [write(index) for index in range(count)]
    else:
        with ThreadPoolExecutor(WRITERS_NETWORK) as pool:
            entries = list(pool.map(write, range(count), chunksize=64))
    tree = store.trees.store_entries(entries)
    return Output(Kind.TREE, tree)


def tree_store(work: Path, count: int, env: dict[str, str]) -> Path:
    """The data dir of a prepared ``sync.files`` whose tree is a generated tree of ``count`` files (built once, then kept).

    Built in ``env``: the rotation's index, written by the materialization,
    is in that environment's cache dir.
    """
    from datamaestro.api import prepare_dataset
    from datamaestro.context import Context
    from datamaestro.store import Store
    from datamaestro.store.actions import ActionRecord

    data_dir = Path(env["DATAMAESTRO_DIR"])
    done = data_dir / f"generated-{count}.done"
    if done.exists():
        return data_dir
    fresh_dir(data_dir)
    with in_environment(env):
        with serving(work, NAME, {COUNT.served_as: tar_of_files(work / "data" / "files-1x1KiB.tar", 1, KiB)}, env):
            prepare_dataset(COUNT.dataset, context=Context(progress=False))  # the action record of its URL
        store = Store(data_dir / "store", create=False)
        (record,) = [r for r in store.actions.iter_records() if r.output.kind == "tree"]
        output = generated_tree(store, count)
        store.actions.put(ActionRecord(key=record.key, recipe=record.recipe, output=output))
    drop_dirty_pages()
    done.touch()
    return data_dir


def trees_folder(work: Path) -> Path:
    """Where the generated trees' data dirs are kept: ``$BENCH_TREES_DIR`` (another file system, e.g. a tmpfs), else the work folder."""
    return Path(os.environ.get("BENCH_TREES_DIR") or work) / "home-scaling"


@dataclass
class TreePoint:
    """A warm prepare of a generated tree: its files, the first warm call (a whole check) and the median of the next."""

    x: int
    first: float
    warm: float


def measure_tree_point(work: Path, count: int, calls: int, home: str = "tree") -> TreePoint:
    """Times warm ``prepare_dataset`` calls of a generated tree of ``count`` files (no server: nothing may be fetched)."""
    from datamaestro.api import prepare_dataset
    from datamaestro.context import Context

    env = bench_env(trees_folder(work) / f"{home}-{count}", work)
    tree_store(work, count, env)
    with in_environment(env):
        # the rotation's state goes: the first call checks the whole tree and writes it anew
        from datamaestro.settings import user_cache_dir

        shutil.rmtree(user_cache_dir() / "checked", ignore_errors=True)
        first = time_call(lambda: prepare_dataset(COUNT.dataset, context=Context(progress=False)))
        warm = [time_call(lambda: prepare_dataset(COUNT.dataset, context=Context(progress=False))) for _ in range(calls)]
    return TreePoint(count, first, median(warm))


def tree_results(work: Path, points: list[TreePoint], calls: int, quick: bool) -> list[Row | Curve]:
    """The row (largest tree against the 10-file one, same run) and the curve of the generated trees."""
    from datamaestro.store.layout import _filesystem_type

    first, last = points[0], points[-1]
    note = ("quick sizes: the ratio means little; " if quick else "") + f"stores on {_filesystem_type(trees_folder(work)) or 'an unknown file system'}; " + (
        f"median of {calls} calls in this process after a first one, new `Context` per call; trees built straight into "
        f"the store; first call (whole check, writes the index): {last.first * 1000:,.0f} ms for {last.x:,} files"
    )
    return [
        compare(NAME, f"warm `prepare_dataset`, {last.x:,}-file tree vs {first.x:,} files", last.warm * 1000, first.warm * 1000, "ms",
                note, target=f"≤ {BOUNDED:g}", met=lambda ratio: ratio <= BOUNDED),
        Curve(
            NAME, "warm `prepare_dataset` vs files in the tree (generated)", "files in the tree", "files", "ms",
            {
                "datamaestro: warm `prepare_dataset`": [[p.x, p.warm * 1000] for p in points],
                "first warm call (checks the whole tree, writes the index)": [[p.x, p.first * 1000] for p in points],
            },
            f"median of {calls} calls in this process after the first, new `Context` per call; one slice of a large tree checked per call",
        ),
    ]


def run(work: Path, quick: bool) -> list[Row | Curve]:
    """Measures both series, smallest point first."""
    calls, runs = (2, 1) if quick else (20, 3)
    results: list[Row | Curve] = []
    for series, xs in ((SIZE, QUICK_SIZES if quick else SIZES), (COUNT, QUICK_COUNTS if quick else COUNTS)):
        points = []
        for x in xs:
            started = time.perf_counter()
            points.append(measure_point(series, x, work, calls, runs))
            print(f"  scaling: {series.label(x)}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
        results += rows(series, points, quick)
        results += curves(series, points, calls, runs)
    tree_points = []
    for count in QUICK_TREE_COUNTS if quick else TREE_COUNTS:
        started = time.perf_counter()
        tree_points.append(measure_tree_point(work, count, calls))
        print(f"  scaling: generated tree of {count:,} files: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    return results + tree_results(work, tree_points, calls, quick)
