"""Two machines × 4 processes prepare one 1 GiB dataset into a new store on a shared file system.

The store is a folder of a SeaweedFS server mounted twice (FUSE): two
"machines", each a group of processes with its own host name and its own
mount, whose flock/fcntl locks do not meet — as on NFS ``nolock``. The
dataset (``bench.big``: one plain file) comes from the tests' HTTP server
on 127.0.0.1, slowed to about 100 MB/s per connection to stand for a
distant server. Eight processes (4 per machine, one data dir per machine)
start together on an empty store; the reference is one process alone on
another empty store of the same file system. Figures: the wall time of the
eight against the one, and the GET requests the eight made (target: one).

A second measure, :func:`warm_tree_on_mount`: warm ``prepare_dataset`` of
a tree of 100,000 files whose store and data dir are on one SeaweedFS mount,
against the same call for a tree of 10 files on the same mount (issue 27:
at most 2×). The trees are built straight into the store on the mount
(:func:`benchmarks.scaling.tree_store`: objects written by threads, the
tree materialized by the store, which writes the rotation's index, so that
the first warm call checks one slice); the calls are 1.5 s apart, so that
the kernel's attribute cache of the mount (1 s) has expired, as for jobs
started one after another: each call asks the file system again.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks._common import GiB, MiB, REPO_ROOT, Row, bench_env, child_command, compare, median, random_file, serving, size_label, skipped, slug

NAME = "sharedfs"
DATASET = "bench.big"
PER_MACHINE = 4
#: the per-connection rate of the "distant" server: pieces of CHUNK bytes, PAUSE seconds apart
CHUNK, PAUSE = MiB, 0.01


def _unavailable() -> str | None:
    """Why the benchmark cannot run here, or None."""
    import sys

    sys.path.insert(0, str(REPO_ROOT / "tests"))
    from support.seaweedfs import unavailable_reason

    return unavailable_reason()


def run(work: Path, quick: bool) -> list[Row]:
    """Times 8 processes on 2 machines against 1 process, each on a new store; counts the GETs."""
    size = 2 * MiB if quick else GiB
    label = f"{size_label(size)} dataset"
    reason = _unavailable()
    if reason:
        return [skipped(NAME, f"2 machines × {PER_MACHINE} processes, one {label}, new store", reason, target="≤ 1.2")]
    from support.seaweedfs import two_machines

    source = random_file(work / "data" / f"random-{slug(size)}.bin", size)
    env = bench_env(work / "home-sharedfs", work)
    shutil.rmtree(work / "sharedfs", ignore_errors=True)
    runs = 1 if quick else 2
    alone, together, gets = [], [], []
    # volumes of 64 MiB: room for two copies of the dataset and their stores
    with two_machines(work / "sharedfs", volume_max=max(16, 5 * size // (64 * MiB))) as setup, serving(work, NAME, {"big.bin": source}, env) as server:
        server.set_fault("big.bin", "throttle", chunk=CHUNK, pause=PAUSE)
        a, b = setup.machines
        for attempt in range(runs):
            store = f"store-alone-{attempt}"
            alone.append(_prepare_together([(a, a.path / store, work / f"data-alone-{attempt}")], env))
            shutil.rmtree(a.path / store, ignore_errors=True)

            store = f"store-shared-{attempt}"
            before = server.count("big.bin")
            sites = [(machine, machine.path / store, work / f"data-{machine.name}-{attempt}") for machine in (a, b)] * PER_MACHINE
            together.append(_prepare_together(sites, env))
            gets.append(server.count("big.bin") - before)
            shutil.rmtree(a.path / store, ignore_errors=True)
    how = (
        f"median of {runs} runs; 8 processes started together on an empty store, 4 on each of 2 SeaweedFS mounts "
        f"(own host names, locks not shared); reference: 1 process alone on an empty store; server capped near 100 MB/s per connection"
    )
    return [
        compare(NAME, f"2 machines × {PER_MACHINE} processes, one {label}, new store: wall time", median(together), median(alone), "s", how,
                target="≤ 1.2", met=lambda ratio: ratio <= 1.2),
        Row(NAME, f"GET requests for the {label}, 8 processes on 2 machines", max(gets), 1, max(gets) / 1, "1 per object", "",
            f"the most of {runs} runs; reference: one request", met=max(gets) == 1),
        *warm_tree_on_mount(work, quick),
    ]


#: files of the large tree on the mount, and of the reference
TREE_FILES, QUICK_TREE_FILES, REFERENCE_FILES = 100_000, 100, 10
#: seconds between two warm calls: more than the mount's attribute cache (1 s)
CALL_SPACING = 1.5


def warm_tree_on_mount(work: Path, quick: bool, calls: int | None = None, files: int | None = None) -> list[Row]:
    """Warm ``prepare_dataset`` of a large tree against a 10-file one, store and data dir on one SeaweedFS mount."""
    from benchmarks._common import in_environment, time_call

    files = files or (QUICK_TREE_FILES if quick else TREE_FILES)
    calls = calls or (1 if quick else 9)
    measure = f"warm `prepare_dataset`, {files:,}-file tree vs {REFERENCE_FILES} files, on a SeaweedFS mount"
    reason = _unavailable()
    if reason:
        return [skipped(NAME, measure, reason, target="≤ 2")]
    from support.seaweedfs import SeaweedMount, SeaweedServer

    from benchmarks.scaling import COUNT, WRITERS_NETWORK, tree_store

    folder = work / "sharedfs-trees"
    shutil.rmtree(folder, ignore_errors=True)
    times: dict[int, list[float]] = {}
    firsts: dict[int, float] = {}
    builds: dict[int, float] = {}
    with SeaweedServer(folder / "server", volume_max=40) as server, SeaweedMount(server, folder / "mount", filer_path="trees", workdir=folder / "mount.weed") as mount:
        for count in (REFERENCE_FILES, files):
            env = bench_env(work / "home-sharedfs-trees" / str(count), work)
            shutil.rmtree(Path(env["HOME"]) / ".cache", ignore_errors=True)  # the rotation's state of an earlier run
            env["DATAMAESTRO_DIR"] = str(mount.path / f"data-{count}")
            started = time.perf_counter()
            tree_store(work, count, env)
            builds[count] = time.perf_counter() - started
            print(f"  sharedfs: tree of {count:,} files built on the mount in {builds[count]:.0f} s", file=sys.stderr, flush=True)
            with in_environment(env):
                from datamaestro.api import prepare_dataset
                from datamaestro.context import Context

                def call():
                    time.sleep(CALL_SPACING)
                    return time_call(lambda: prepare_dataset(COUNT.dataset, context=Context(progress=False)))

                firsts[count] = call()  # one slice: the materialization wrote the rotation's index
                times[count] = [call() for _ in range(calls)]
    return [
        compare(NAME, measure, median(times[files]) * 1000, median(times[REFERENCE_FILES]) * 1000, "ms",
                f"median of {calls} calls {CALL_SPACING} s apart (the mount's attribute cache expired), in one process, new `Context` "
                f"per call, after a first call ({firsts[files] * 1000:,.0f} ms vs {firsts[REFERENCE_FILES] * 1000:,.0f} ms: one slice, the "
                f"materialization wrote the rotation's index); store and data dir on the mount; trees built straight into the store "
                f"({builds[files]:,.0f} s for {files:,} files: objects by {WRITERS_NETWORK} threads, then materialized by the store)",
                target="≤ 2", met=lambda ratio: ratio <= 2),
    ]


def _prepare_together(sites: list[tuple[object, Path, Path]], env: dict[str, str]) -> float:
    """Starts one prepare per ``(machine, store, data dir)`` at once; returns the wall time until all are done."""
    start = time.perf_counter()
    processes = []
    for machine, store, data in sites:
        process_env = {**env, "DATAMAESTRO_STORE": str(store), "DATAMAESTRO_DIR": str(data)}
        processes.append(machine.popen(child_command("prepare", DATASET), env=process_env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    failures = []
    for process in processes:
        out, err = process.communicate(timeout=900)
        if process.returncode != 0:
            failures.append(err[-2000:])
    seconds = time.perf_counter() - start
    if failures:
        raise RuntimeError(f"{len(failures)} of {len(processes)} prepares failed:\n{failures[0]}")
    return seconds
