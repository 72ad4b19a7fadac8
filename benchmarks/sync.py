"""``datamaestro sync`` of a locked dataset of 10,000 small files from another store, cold and warm.

A project locks ``sync.files`` (``benchmarks/plugin``: a tar archive of
10,000 files of 4 KiB in 100 folders, served locally, extracted into one
tree) on a "peer" data dir; the server is then stopped. Measured, each in a
new process (the console script, what a user runs):

- cold: ``datamaestro --data FRESH sync --offline --from PEER/store``
  into an empty data dir and store (the user's code cache, which holds the
  plugin index and the lock's last check, is warm: as on any machine where
  datamaestro ran once with these plugins; a context row empties it too), against ``cp -r`` of the peer's
  materialized tree (the same 10,000 files) and ``cp -al`` (links only)
  into a new folder. Every timed run writes into a folder never used
  before; all are deleted together after the timed runs (a deletion just
  before a run slows its file creations on ext4, which once inflated the
  reference tenfold). The peer is on the same file system and owned by the same user,
  so objects are hard-linked after being hashed; a second row forces a copy
  (peer objects given to another owner, as in another user's store: needs root);
- warm: the same ``sync`` again when everything is present (no rehash:
  presence of a digest-named object is proof; the lock's check against the
  definitions is remembered in the data dir's cache).

Dirty pages are flushed before each timed run, so that one run's writeback
does not slow the next.
"""

from __future__ import annotations

import os
from pathlib import Path

from benchmarks._common import KiB, Row, RunFolders, bench_env, compare, drop_dirty_pages, fresh_dir, median, run_checked, serving, tar_of_files, time_command, datamaestro, count_files

NAME = "sync"
DATASET = "sync.files"
FILE_SIZE = 4 * KiB
#: the cold sync may take this much longer than `cp -r`
COLD = 2.0
WARM_S = 0.5


def run(work: Path, quick: bool) -> list[Row]:
    """Locks the dataset on a peer, then times cold syncs, copies and warm syncs."""
    count = 100 if quick else 10_000
    runs = 1 if quick else 5
    tar = tar_of_files(work / "data" / f"files-{count}.tar", count, FILE_SIZE)
    home = work / "home-sync"
    env = bench_env(home, work)
    runs_dir = RunFolders(home / "runs")  # leftovers deleted now, long before the timed runs
    fresh_dir(Path(env["DATAMAESTRO_DIR"]))
    project = fresh_dir(home / "project")
    (project / "pyproject.toml").write_text(f'[project]\nname = "bench"\n\n[tool.datamaestro]\ndatasets = ["{DATASET}"]\n')
    peer = home / "peer"
    readable = peer / "data" / "bench" / "sync" / "files" / "files"
    if peer.is_dir():
        # the last run's peer is kept: deleting its 30,000 entries now would
        # slow the file creations of the timed runs that follow (see RunFolders);
        # `lock` below finds its data in place (the last run gave its objects away)
        for dirpath, _, files in os.walk(peer / "store" / "objects"):
            for name in files:
                os.chown(os.path.join(dirpath, name), os.geteuid(), -1)
    for attempt in range(2):
        if attempt or not peer.is_dir():
            fresh_dir(peer)  # none yet, or one of another size (a quick run's)
        with serving(work, NAME, {"files.tar": tar}, env):
            run_checked(datamaestro("--data", peer, "lock"), env=env, cwd=project)
        if count_files(readable) == count:
            break
    else:
        raise RuntimeError(f"the peer's dataset has {count_files(readable)} files, not {count}")

    tree = Path(os.path.realpath(readable))  # the peer's materialized tree: real files

    def sync(target: Path) -> list[str]:
        return datamaestro("--data", target, "sync", "--offline", "--from", peer / "store")

    def cold_sync(code_cache: bool = True) -> float:
        target = runs_dir.new("sync")
        drop_dirty_pages()
        run_env = env if code_cache else {**env, "DATAMAESTRO_CACHE": str(runs_dir.new("code-cache"))}
        seconds = time_command(sync(target), env=run_env, cwd=project)
        if count_files(target / "data" / "bench" / "sync" / "files" / "files") != count:
            raise RuntimeError("sync did not reproduce every file")
        return seconds

    def cp(*options: str) -> float:
        copy = runs_dir.new("cp")
        drop_dirty_pages()
        return time_command(["cp", *options, str(tree), str(copy)])

    cold, copies, links = [], [], []
    cold_sync(), cp("-r"), cp("-al")  # page cache and bytecode, for all
    for _ in range(runs):
        cold.append(cold_sync())
        copies.append(cp("-r"))
        links.append(cp("-al"))
    no_cache = [cold_sync(code_cache=False) for _ in range(max(1, runs // 2))]
    warm_target = runs_dir.made[0]
    warm = [time_command(sync(warm_target), env=env, cwd=project) for _ in range(runs)]

    how = (f"median of {runs} runs, alternating, new processes, after one untimed run of each; every run writes into "
           "a new folder, all deleted after the timed runs")
    label = f"{count:,} files of {FILE_SIZE // KiB} KiB"
    rows = [
        compare(NAME, f"cold `sync --offline --from <peer store folder>` vs `cp -r`, {label}", median(cold), median(copies), "s",
                how + "; objects hashed, then hard-linked from the peer (same file system, same owner); "
                "reference: `cp -r` of the peer's materialized tree (the same files)", target=f"≤ {COLD:g}", met=lambda ratio: ratio <= COLD),
        compare(NAME, f"cold `sync --offline --from <peer store folder>` vs `cp -al`, {label}", median(cold), median(links), "s",
                how + "; context: `cp -al` only makes the links, it neither hashes nor writes a store"),
        compare(NAME, f"cold `sync`, empty code cache too, vs `cp -r`, {label}", median(no_cache), median(copies), "s",
                f"median of {len(no_cache)} runs after the timed ones; context: the user's code cache (plugin index, lock check) "
                "is empty as well, so the lock is checked by importing the dataset's definitions (once per set of installed plugins)"),
        Row(NAME, f"warm `sync` (everything present), {label}", median(warm), None, None, f"< {WARM_S} s", "s",
            f"median of {runs} runs in new processes; no byte read, no rehash", met=median(warm) < WARM_S),
    ]
    if os.geteuid() == 0:
        # another owner's objects cannot be hard-linked: they are copied (and hashed) instead
        for dirpath, _, files in os.walk(peer / "store" / "objects"):
            for name in files:
                os.chown(os.path.join(dirpath, name), 65534, -1)
        copied, copies = [], []
        for _ in range(runs):
            copied.append(cold_sync())
            copies.append(cp("-r"))
        rows.insert(1, compare(NAME, f"cold `sync --offline --from <another owner's store folder>`, {label}", median(copied), median(copies), "s",
                               how + "; the peer's objects belong to another user: copied and hashed; reference: `cp -r`",
                               target=f"≤ {COLD:g}", met=lambda ratio: ratio <= COLD))
    runs_dir.discard()
    return rows
