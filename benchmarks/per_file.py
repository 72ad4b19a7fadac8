"""The per-file paths against their floor: cold extraction of a ``.tar.gz``, ``sync --from``, ``store verify``, ``store gc`` and ``store du``.

Every datamaestro side is the console script in a new process
(``python -m datamaestro ...``: start-up included, what a user measures),
against the fastest tool a user would pick for the same work, in the same
run, the two sides in turns:

- **cold extraction**: ``datamaestro --data NEW prepare sync.archive`` (a
  ``.tar.gz`` of N files of 4 KiB in 100 folders, served by a local HTTP
  server: download, gunzip, check every member, write, hash and store each
  file, flush the file system once, materialize the tree), against
  ``curl -s -o f.tar.gz URL && tar -xzf f.tar.gz && b3sum`` of the files
  (``find | xargs -0 b3sum``: one process per command line);
- **sync --from**: ``datamaestro --data NEW sync --offline --from PEER/store``
  (the peer is the last cold extraction's data dir, locked; same file system
  and owner: each object hashed, then its inode linked), against ``cp -r``
  of the peer's materialized tree;
- **their floors** (context, no target): :mod:`benchmarks._per_file_floor`,
  a minimal script making the system calls the store's design needs per
  file and nothing else, in turns with the two sides above;
- **store verify**: ``datamaestro --store PEER/store store verify`` (every
  object rehashed, stamps compared, trees parsed), against ``b3sum`` of the
  same object files (``xargs -0``), page cache warm; the in-process
  :func:`~datamaestro.store.maintenance.verify` as context (a long-lived
  tool: imports paid), and its floor, :mod:`benchmarks._verify_floor`;
- **store gc / store du** with nothing to delete, on a store of N objects
  all reachable from a data dir (one tree, one view, one dataset folder),
  against ``find objects -type f | wc -l`` (listing the objects once). This
  store is built cheaply: objects of 64 bytes written straight into
  ``objects/`` (gc and du read no content), then the tree stored and
  materialized through the store's API.

Every timed run writes into a folder never used before
(:class:`~benchmarks._common.RunFolders`), all deleted after the timed
runs; dirty pages are flushed before each timed run. Each row is the last
point of its curve (10 to 100,000 files; gc and du up to 1,000,000
objects); every point is in the curves.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks._common import (
    datamaestro,
    count_files,
    KiB,
    Curve,
    Row,
    RunFolders,
    bench_env,
    compare,
    drop_dirty_pages,
    fresh_dir,
    median,
    run_checked,
    serving,
    skipped,
    tar_gz_of_files,
    time_call,
    time_command,
)

NAME = "per_file"
DATASET = "sync.archive"
FILE_SIZE = 4 * KiB
COUNTS = [10, 100, 1_000, 10_000, 100_000]
QUICK_COUNTS = [10, 100]
GC_COUNTS = [10_000, 100_000, 1_000_000]
QUICK_GC_COUNTS = [100]
#: the targets of issue 27, as ratios to the reference
EXTRACT, SYNC, VERIFY, GC = 1.5, 2.0, 1.2, 3.0
#: bytes of each object of the gc/du store
TINY = 64


def runs_for(count: int, quick: bool) -> int:
    """Timed runs of each side at a point (fewer where one run takes minutes)."""
    return 1 if quick else 2 if count >= 100_000 else 3


@dataclass
class Point:
    """Seconds measured at one count: datamaestro's side and the reference, per path."""

    count: int
    seconds: dict[str, tuple[float, float]] = field(default_factory=dict)


def _in_turns(runs: int, ours, theirs) -> tuple[float, float]:
    """Medians of ``runs`` runs of each side, in turns."""
    times = [(ours(), theirs()) for _ in range(runs)]
    return median([t[0] for t in times]), median([t[1] for t in times])


def measure_files(work: Path, count: int, quick: bool) -> Point:
    """Cold extraction, sync --from and verify at one count (see the module documentation)."""
    from datamaestro.store.maintenance import verify
    from datamaestro.store import Store

    runs = runs_for(count, quick)
    point = Point(count)
    archive = tar_gz_of_files(work / "data" / f"files-{count}x4KiB.tar.gz", count, FILE_SIZE)
    home = work / "home-per_file" / str(count)
    env = bench_env(home, work)
    folders = RunFolders(home / "runs")
    project = fresh_dir(home / "project")
    (project / "pyproject.toml").write_text(f'[project]\nname = "bench"\n\n[tool.datamaestro]\ndatasets = ["{DATASET}"]\n')
    readable = ("data", "bench", "sync", "archive", "files")

    with serving(work, NAME, {"files.tar.gz": archive}, env) as server:
        url = server.url("files.tar.gz")

        def cold() -> float:
            data = folders.new("prepare")
            drop_dirty_pages()
            seconds = time_command(datamaestro("--data", data, "prepare", DATASET), env=env)
            if count_files(data.joinpath(*readable)) != count:
                raise RuntimeError(f"prepare did not extract {count} files")
            return seconds

        def tar_b3sum() -> float:
            folder = folders.new("tar")
            folder.mkdir()
            drop_dirty_pages()
            return time_command(["sh", "-c", 'curl -s -o "$0/f.tar.gz" "$1" && mkdir "$0/x" && tar -xzf "$0/f.tar.gz" -C "$0/x" '
                                 '&& find "$0/x" -type f -print0 | xargs -0 b3sum > /dev/null', str(folder), url])

        def extract_floor() -> float:
            drop_dirty_pages()
            return time_command([sys.executable, "-m", "benchmarks._per_file_floor", "extract", url, folders.new("floor")], env=env)

        if count < 100_000:
            cold(), tar_b3sum()  # bytecode, page cache of the archive, for both (a run at 10^5 files takes minutes: the first timed one does it)
        else:
            run_checked(["sh", "-c", 'cat "$0" > /dev/null', str(archive)])  # the archive in the page cache, for both
        times = [(cold(), tar_b3sum(), extract_floor()) for _ in range(runs)]
        point.seconds["extract"] = (median([t[0] for t in times]), median([t[1] for t in times]))
        point.seconds["extract floor"] = (median([t[2] for t in times]), median([t[1] for t in times]))
        peer = [p for p in folders.made if p.name.startswith("prepare")][-1]
        run_checked(datamaestro("--data", peer, "lock"), env=env, cwd=project)

    tree = Path(os.path.realpath(peer.joinpath(*readable)))

    def sync() -> float:
        target = folders.new("sync")
        drop_dirty_pages()
        seconds = time_command(datamaestro("--data", target, "sync", "--offline", "--from", peer / "store"), env=env, cwd=project)
        if count_files(target.joinpath(*readable)) != count:
            raise RuntimeError("sync did not reproduce every file")
        return seconds

    def cp() -> float:
        copy = folders.new("cp")
        drop_dirty_pages()
        return time_command(["cp", "-r", str(tree), str(copy)])

    tree_digest = "blake3:" + "".join(tree.parts[-2:])

    def sync_floor() -> float:
        drop_dirty_pages()
        return time_command([sys.executable, "-m", "benchmarks._per_file_floor", "sync", peer / "store", tree_digest, folders.new("floor")], env=env)

    times = [(sync(), cp(), sync_floor()) for _ in range(runs)]
    point.seconds["sync"] = (median([t[0] for t in times]), median([t[1] for t in times]))
    point.seconds["sync floor"] = (median([t[2] for t in times]), median([t[1] for t in times]))

    store = Store(peer / "store", create=False)
    listing = home / "objects.list"
    files = [os.fspath(store.path_of(d)) for d in store.objects.iter_digests()]
    listing.write_bytes(b"".join(os.fsencode(f) + b"\0" for f in files))
    size = sum(os.path.getsize(f) for f in files)
    b3sum = ["sh", "-c", 'xargs -0 -a "$0" b3sum > /dev/null', str(listing)]
    command = datamaestro("--store", peer / "store", "store", "verify")
    time_command(b3sum), time_command(command, env=env)  # page cache, bytecode

    def in_process() -> float:
        def check():
            report = verify(store)
            if not report.ok or report.bytes != size:
                raise RuntimeError(f"verify found problems or missed bytes: {report}")

        return time_call(check)

    verify_floor = [sys.executable, "-m", "benchmarks._verify_floor", peer / "store"]
    times = [(time_command(command, env=env), time_command(b3sum), in_process(), time_command(verify_floor, env=env)) for _ in range(runs + 2)]
    point.seconds["verify"] = (median([t[0] for t in times]), median([t[1] for t in times]))
    point.seconds["verify in process"] = (median([t[2] for t in times]), median([t[1] for t in times]))
    point.seconds["verify floor"] = (median([t[3] for t in times]), median([t[1] for t in times]))
    folders.discard()
    return point


def build_reachable_store(root: Path, count: int):
    """A data dir whose store holds ``count`` objects of :data:`TINY` bytes, all reachable (one tree, one view, one dataset folder); built once.

    The objects are written straight into ``objects/`` (named by their
    blake3, read-only, as the store makes them); the tree is stored and
    materialized, the view published and the dataset folder linked through
    the store's own functions, so that gc and du see a store as a prepare
    leaves it.
    """
    from blake3 import blake3

    from datamaestro.store import Store
    from datamaestro.store.views import point_readable_path

    marker = root / ".bench-complete"
    if marker.is_file() and marker.read_text() == str(count):
        return root
    fresh_dir(root)
    store = Store(root / "store")
    objects = os.fspath(store.layout.objects)
    entries = []
    made = set()
    for index in range(count):
        data = index.to_bytes(8, "little") * (TINY // 8)
        hexdigest = blake3(data).hexdigest()
        fan = objects + os.sep + hexdigest[:2]
        if fan not in made:
            os.makedirs(fan, exist_ok=True)
            made.add(fan)
        fd = os.open(fan + os.sep + hexdigest[2:], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        os.write(fd, data)
        os.close(fd)
        entries.append({"path": f"d{index % 1000:03d}/f{index:07d}", "kind": "file", "digest": "blake3:" + hexdigest, "size": TINY})
    os.sync()
    tree = store.trees.store_entries(entries)
    del entries
    manifest, view = store.views.publish({"files": ("tree", tree)})
    readable = root / "data" / "bench" / "tiny"
    readable.mkdir(parents=True)
    point_readable_path(readable, view, root, ["files"])
    store.register_root("data", root)
    marker.write_text(str(count))
    return root


def measure_gc(work: Path, count: int, quick: bool) -> Point:
    """``store gc`` and ``store du`` (nothing to delete) against ``find objects -type f | wc -l``."""
    runs = runs_for(count, quick) + (0 if count >= 1_000_000 else 2)
    point = Point(count)
    data = build_reachable_store(work / f"per_file-gc-{count}", count)
    env = bench_env(work / "home-per_file" / f"gc-{count}", work)
    store = data / "store"
    find = ["sh", "-c", 'find "$0" -type f | wc -l', str(store / "objects")]
    gc = datamaestro("--data", data, "--store", store, "store", "gc")
    du = datamaestro("--data", data, "--store", store, "store", "du")
    listed = int(run_checked(find).stdout.strip())
    if listed != count + 2:  # the tree document and the manifest
        raise RuntimeError(f"the store holds {listed} objects, not {count + 2}")
    run_checked(gc, env=env), run_checked(du, env=env)  # page cache, bytecode
    times = [(time_command(gc, env=env), time_command(du, env=env), time_command(find)) for _ in range(runs)]
    if int(run_checked(find).stdout.strip()) != listed:
        raise RuntimeError("gc deleted objects that a data dir reaches")
    point.seconds["gc"] = (median([t[0] for t in times]), median([t[2] for t in times]))
    point.seconds["du"] = (median([t[1] for t in times]), median([t[2] for t in times]))
    return point


#: path -> (measure of the row, reference's label, target)
PATHS = {
    "extract": ("cold `prepare` of a .tar.gz of {n} × 4 KiB vs `tar -xzf` + `b3sum`", "`curl` + `tar -xzf` + `b3sum` of the files", EXTRACT),
    "sync": ("cold `sync --offline --from <peer store>` vs `cp -r`, {n} × 4 KiB", "`cp -r` of the peer's tree", SYNC),
    "extract floor": ("floor of cold extraction (`benchmarks._per_file_floor`: the same system calls per file, nothing else) vs `tar -xzf` + `b3sum`, {n} × 4 KiB",
                      "`curl` + `tar -xzf` + `b3sum` of the files", None),
    "sync floor": ("floor of `sync --from` (`benchmarks._per_file_floor`: the same system calls per file, nothing else) vs `cp -r`, {n} × 4 KiB",
                   "`cp -r` of the peer's tree", None),
    "verify": ("`datamaestro store verify` (command line) vs `b3sum`, {n} × 4 KiB", "`b3sum` of the object files", VERIFY),
    "verify in process": ("`verify()` in a running process vs `b3sum`, {n} × 4 KiB", "`b3sum` of the object files", None),
    "verify floor": ("floor of `store verify` (`benchmarks._verify_floor`: the same system calls and hashing per object, nothing else) vs `b3sum`, {n} × 4 KiB",
                     "`b3sum` of the object files", None),
    "gc": ("`store gc`, nothing to delete, {n} objects, vs `find objects -type f | wc -l`", "`find objects -type f | wc -l`", GC),
    "du": ("`store du`, {n} objects, vs `find objects -type f | wc -l`", "`find objects -type f | wc -l`", GC),
}

NOTES = {
    "extract": "new processes, in turns, each into a new folder; datamaestro: download, gunzip, check every member, write, hash and "
    "store each file, one flush of the file system (objects are durable before they are named), materialize the tree; "
    "reference: `curl -s -o` from the same server, `tar -xzf`, `find | xargs -0 b3sum` (no fsync)",
    "sync": "new processes, in turns, each into a new folder; the peer: the data dir of the last cold prepare (same file system and "
    "owner: each object hashed, then its inode linked); reference: `cp -r` of the peer's materialized tree",
    "extract floor": "context: a minimal script (no datamaestro import, no checks, no locks) downloading, gunzipping, writing and hashing "
    "each member, one syncfs, then per file a stat, a hard link into objects/ and a stamp; measured in turns with the two above",
    "sync floor": "context: a minimal script: one syncfs, then per file open, fstat, read, hash, link of the open inode into objects/, "
    "the peer's stamp read and linked, a link into the tree; measured in turns with the two above",
    "verify": "new processes, in turns, page cache warm; every object rehashed, its stamp compared, every tree parsed; "
    "reference: one `b3sum` per command line over the object files (`xargs -0`)",
    "verify in process": "context: `datamaestro.store.maintenance.verify` called in this process (imports paid), as a long-lived tool would",
    "verify floor": "context: a minimal script, one forked process per core (as verify's workers on a local disk), each listing its "
    "share of the fan-out folders and per object an lstat, open, read, close, blake3 and readlink of its stamp; no tree parsed, no command "
    "line start-up; measured in turns with the two above",
    "gc": "new processes, in turns; every object reachable from one data dir (one tree, one view), so nothing is deleted; objects of "
    f"{TINY} bytes written straight into the store (gc reads no content)",
    "du": "new processes, in turns; the same store as gc; du reads the sizes the tree document records, from its text "
    "(no stat per file, no entry-by-entry parse)",
}


def rows_and_curves(points: list[Point], paths: list[str], quick: bool, title: str, x_label: str) -> list[Row | Curve]:
    """One row per path (its last point against its target), and one curve of all paths."""
    results: list[Row | Curve] = []
    last = points[-1]
    prefix = "quick sizes: the ratio means little; " if quick else ""
    for path in paths:
        measure, _, target = PATHS[path]
        ours, theirs = last.seconds[path]
        runs = runs_for(last.count, quick)
        note = f"{prefix}median of {runs}+ runs; {NOTES[path]}; every point in the curve"
        results.append(compare(NAME, measure.format(n=f"{last.count:,}"), ours, theirs, "s", note,
                               target=f"≤ {target:g}" if target else "", met=(lambda r, t=target: r <= t) if target else None))
    series = {}
    for path in paths:
        series[f"datamaestro: {path}"] = [[p.count, p.seconds[path][0]] for p in points]
        if path not in ("verify in process", "verify floor", "extract floor", "sync floor"):
            series[f"{PATHS[path][1]} ({path})"] = [[p.count, p.seconds[path][1]] for p in points]
    results.append(Curve(NAME, title, x_label, "files", "s", series,
                         f"each point: medians of its runs, datamaestro and the reference in turns, new processes; "
                         f"load average at the end: {', '.join(f'{v:.1f}' for v in os.getloadavg())}"))
    return results


def run(work: Path, quick: bool, offline: bool = False) -> list[Row | Curve]:
    """Both series, smallest point first (see the module documentation)."""
    from benchmarks._peers import program

    for tool in ("b3sum", "curl"):
        found, why = program(tool, tool, offline=offline)
        if found is None:
            # every reference needs them: the rows say why they were not measured, next to their targets
            return [skipped(NAME, measure.format(n="…"), why, target=f"≤ {target:g}" if target else "") for measure, _, target in PATHS.values()]
    results: list[Row | Curve] = []
    points = []
    for count in QUICK_COUNTS if quick else COUNTS:
        started = time.perf_counter()
        points.append(measure_files(work, count, quick))
        print(f"  per_file: {count:,} files: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    results += rows_and_curves(points, ["extract", "extract floor", "sync", "sync floor", "verify", "verify in process", "verify floor"], quick,
                               "per-file paths vs files (4 KiB each)", "files (4 KiB each)")
    gc_points = []
    for count in QUICK_GC_COUNTS if quick else GC_COUNTS:
        started = time.perf_counter()
        gc_points.append(measure_gc(work, count, quick))
        print(f"  per_file: gc/du of {count:,} objects: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    results += rows_and_curves(gc_points, ["gc", "du"], quick, "`store gc` and `store du` vs objects in the store", "objects in the store")
    return results
