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
"""

from __future__ import annotations

import shutil
import subprocess
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
    size = 8 * MiB if quick else GiB
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
