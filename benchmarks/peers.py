"""datamaestro against the tools a researcher would use instead: pooch, DVC, aria2c.

Every side runs as a new process, as a user runs it, against the same
local HTTP server (:class:`ControlledServer` on 127.0.0.1); every timed run
writes into a folder never used before (:class:`RunFolders`), all deleted
after the timed runs. The peers are installed by the runner itself: pooch
and DVC with pip, each in a virtualenv of its own under the work folder;
aria2c with apt. A peer that cannot be installed gives skipped rows.

- **pooch** (``peers.mnist``: four gzipped files of MNIST's sizes, gzipped
  as much as MNIST's own: :func:`mnist_content`):
  cold, ``datamaestro prepare peers.mnist`` on a new data dir against a
  script calling ``pooch.retrieve(url, known_hash, processor=Decompress())``
  four times into a new folder; warm, both again on what they made.
- **DVC**: cold, ``dvc import-url`` of the same four files (no gunzip) in a
  new DVC project; ``dvc pull`` of 10,000 files of 4 KiB from a local DVC
  remote into a new clone of the project, against ``datamaestro sync
  --from <peer store>`` into a new data dir; a no-op ``dvc status`` against
  a warm ``datamaestro sync``.
- **aria2c**: a gzipped file served at a capped rate per connection (the
  server pauses after each 1 MiB: about 20 MB/s, a distant server), against
  ``aria2c -x8 -s8`` then ``gunzip``. datamaestro: a cold ``prepare`` of
  ``bench.gzipped`` (whatever its downloader does: one connection, or
  ranges in parallel where it splits them).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import zlib
from pathlib import Path

from benchmarks._common import (
    datamaestro,
    KiB,
    MiB,
    Row,
    RunFolders,
    bench_env,
    compare,
    fresh_dir,
    median,
    run_checked,
    serving,
    skipped,
    tar_of_files,
    text_gzip_file,
    time_command,
)
from benchmarks._peers import program, python_tool, version

NAME = "peers"
#: the four MNIST files: served name -> decompressed size
MNIST_SIZES = {"train-images.gz": 47_040_016, "train-labels.gz": 60_008, "test-images.gz": 7_840_016, "test-labels.gz": 10_008}
WARM = 2.0
COLD = 1.5
ARIA = 1.2

POOCH_SCRIPT = """
import sys, pooch
base, folder = sys.argv[1], sys.argv[2]
for name, sha in zip(sys.argv[3::2], sys.argv[4::2]):
    pooch.retrieve(base + name, known_hash="sha256:" + sha, path=folder, fname=name,
                   processor=pooch.Decompress(name=name[:-3]), progressbar=False)
"""


#: the four files as MNIST's site serves them: gzipped size (bytes)
MNIST_GZ_SIZES = {"train-images.gz": 9_912_422, "train-labels.gz": 28_881, "test-images.gz": 1_648_877, "test-labels.gz": 4_542}


def mnist_content(name: str, size: int, rng) -> bytes:
    """MNIST-like bytes: an IDX header, then 28×28 images (strokes: 42 % of a central 20×20 square lit from a few grey levels) or labels 0–9.

    Calibrated so that gzip shrinks them as much as MNIST's own files
    (within a few percent of :data:`MNIST_GZ_SIZES`): how much is downloaded
    and inflated is what a user's cold prepare pays. (Uniform noise in 20 %
    of the pixels, used before, gzipped to 1.8 times MNIST's size, which
    hid datamaestro's fixed start-up cost behind longer transfers.)
    """
    import numpy as np

    if "labels" in name:
        count = size - 8
        return (2049).to_bytes(4, "big") + count.to_bytes(4, "big") + rng.integers(0, 10, count, dtype=np.uint8).tobytes()
    count = (size - 16) // 784
    images = np.zeros((count, 28, 28), dtype=np.uint8)
    lit = rng.random((count, 20, 20)) < 0.42
    levels = rng.choice(np.array([255, 254, 253, 252, 128, 64], dtype=np.uint8), size=(count, 20, 20))
    images[:, 4:24, 4:24] = np.where(lit, levels, 0)
    header = (2051).to_bytes(4, "big") + count.to_bytes(4, "big") + (28).to_bytes(4, "big") + (28).to_bytes(4, "big")
    return header + images.tobytes()


def mnist_like(folder: Path) -> dict[str, Path]:
    """Four gzipped files of MNIST's sizes, gzipped and decompressed (see :func:`mnist_content`), made once."""
    import numpy as np

    files = {}
    rng = np.random.default_rng(3)
    marker = folder / ".realistic"
    if not marker.is_file():
        fresh_dir(folder)  # files of an older generator
    for name, size in MNIST_SIZES.items():
        path = folder / name
        if not path.is_file():
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(zlib.compress(mnist_content(name, size, rng), 6, wbits=31))
            os.replace(tmp, path)
        files[name] = path
    marker.touch()
    return files


def sha256(path: Path) -> str:
    """The hex SHA-256 of a file (pooch's known_hash)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def alternate(runs: int, *sides) -> list[list[float]]:
    """Times each side (a function returning seconds) ``runs`` times, in turns."""
    times = [[] for _ in sides]
    for _ in range(runs):
        for index, side in enumerate(sides):
            times[index].append(side())
    return times


def pooch_rows(work: Path, quick: bool, offline: bool, runs: int) -> list[Row]:
    """Cold and warm: ``datamaestro prepare`` against four ``pooch.retrieve`` calls."""
    labels = ("cold `datamaestro prepare` vs `pooch.retrieve` ×4, MNIST's four files", "warm `datamaestro prepare` (new process) vs `pooch.retrieve` ×4")
    targets = (COLD, WARM)
    bin_dir, why = python_tool(work, "pooch", ["pooch"], offline=offline)
    if bin_dir is None:
        return [skipped(NAME, label, why, target=f"≤ {target:g}") for label, target in zip(labels, targets)]
    files = mnist_like(work / "data" / "mnist-like")
    home = work / "home-peers"
    env = bench_env(home, work)
    folders = RunFolders(home / "runs-pooch")
    hashes = [part for name, path in files.items() for part in (name, sha256(path))]
    with serving(work, NAME, {f"peers/{name}": path for name, path in files.items()}, env) as server:
        base = server.base_url + "/peers/"
        made: dict[str, Path] = {}

        def ours() -> float:
            data = made["datamaestro"] = folders.new("datamaestro")
            return time_command(datamaestro("--data", data, "prepare", "peers.mnist"), env=env)

        def theirs() -> float:
            folder = made["pooch"] = folders.new("pooch")
            return time_command([str(bin_dir / "python"), "-c", POOCH_SCRIPT, base, str(folder), *hashes], env=env)

        ours(), theirs()  # bytecode and page cache, for both
        cold_ours, cold_theirs = alternate(runs, ours, theirs)
        warm_ours, warm_theirs = alternate(
            runs * 2,
            lambda: time_command(datamaestro("--data", made["datamaestro"], "prepare", "peers.mnist"), env=env),
            lambda: time_command([str(bin_dir / "python"), "-c", POOCH_SCRIPT, base, str(made["pooch"]), *hashes], env=env),
        )
    folders.discard()
    how = (f"median of {runs} (cold) and {2 * runs} (warm) runs, alternating, new processes; both gunzip and check a hash "
           f"(pooch: SHA-256 given, rehashed on every warm call; datamaestro: blake3, not rehashed warm); "
           f"pooch {version([str(bin_dir / 'python'), '-c', 'import pooch; print(pooch.__version__)'])}; the files gzipped as much as "
           f"MNIST's own ({sum(p.stat().st_size for p in files.values()) / 1e6:.1f} MB in all)")
    return [
        compare(NAME, labels[0], median(cold_ours), median(cold_theirs), "s", how + "; each cold run into a new folder", target=f"≤ {COLD:g}", met=lambda r: r <= COLD),
        compare(NAME, labels[1], median(warm_ours), median(warm_theirs), "s", how, target=f"≤ {WARM:g}", met=lambda r: r <= WARM),
    ]


def make_sync_peer(work: Path, count: int) -> tuple[dict, Path, Path, Path]:
    """A data dir holding the locked ``sync.files`` (``count`` files of 4 KiB): (env, project, peer data dir, tar)."""
    tar = tar_of_files(work / "data" / f"files-{count}.tar", count, 4 * KiB)
    home = work / "home-peers-dvc"
    env = bench_env(home, work)
    fresh_dir(Path(env["DATAMAESTRO_DIR"]))
    project = fresh_dir(home / "project")
    (project / "pyproject.toml").write_text('[project]\nname = "bench"\n\n[tool.datamaestro]\ndatasets = ["sync.files"]\n')
    peer = fresh_dir(home / "peer")
    with serving(work, NAME + "-sync", {"files.tar": tar}, env):
        run_checked(datamaestro("--data", peer, "lock"), env=env, cwd=project)
    return env, project, peer, tar


def dvc_rows(work: Path, quick: bool, offline: bool, runs: int) -> list[Row]:
    """DVC: import-url of four files, pull of many small files, a no-op status."""
    count = 500 if quick else 10_000
    labels = (
        "cold `datamaestro prepare` vs `dvc import-url` ×4, MNIST's four files",
        f"cold `sync --from <peer store>` vs `dvc pull`, {count:,} files of 4 KiB",
        "warm no-op: `datamaestro sync` vs `dvc status`",
    )
    bin_dir, why = python_tool(work, "dvc", ["dvc"], offline=offline)
    if bin_dir is None:
        return [skipped(NAME, label, why, target="≤ 1") for label in labels]
    dvc = str(bin_dir / "dvc")
    rows = []
    # -- import-url of four files
    files = mnist_like(work / "data" / "mnist-like")
    home = work / "home-peers"
    env = bench_env(home, work)
    dvc_env = {**env, "DVC_NO_ANALYTICS": "1"}
    folders = RunFolders(home / "runs-dvc")
    with serving(work, NAME, {f"peers/{name}": path for name, path in files.items()}, env) as server:
        base = server.base_url + "/peers/"

        def ours() -> float:
            return time_command(datamaestro("--data", folders.new("datamaestro"), "prepare", "peers.mnist"), env=env)

        def theirs() -> float:
            project = folders.new("dvc")
            project.mkdir()
            run_checked([dvc, "init", "--no-scm", "-q"], env=dvc_env, cwd=project)
            imports = " && ".join(f"{dvc} import-url -q {base}{name} {name}" for name in files)
            return time_command(imports, shell=True, env=dvc_env, cwd=project)

        ours(), theirs()
        cold_ours, cold_theirs = alternate(runs, ours, theirs)
    rows.append(compare(NAME, labels[0], median(cold_ours), median(cold_theirs), "s",
                        f"median of {runs} runs, alternating, new processes, new folders; DVC {version([dvc, '--version'])}: "
                        "one `dvc import-url` per file in a new `dvc init --no-scm` project (set-up untimed), no gunzip; "
                        "datamaestro downloads, gunzips and stores", target="≤ 1", met=lambda r: r <= 1))

    # -- pull of many small files, and a no-op status
    env, project, peer, tar = make_sync_peer(work, count)
    dvc_home = work / "home-peers-dvc"
    source = fresh_dir(dvc_home / "dvc-source")
    with tarfile.open(tar) as archive:
        archive.extractall(source / "files", filter="data")
    remote = fresh_dir(dvc_home / "dvc-remote")
    run_checked([dvc, "init", "--no-scm", "-q"], env=dvc_env, cwd=source)
    run_checked([dvc, "remote", "add", "-d", "local", str(remote)], env=dvc_env, cwd=source)
    run_checked([dvc, "add", "-q", "files"], env=dvc_env, cwd=source)
    run_checked([dvc, "push", "-q"], env=dvc_env, cwd=source)

    def ours_sync() -> float:
        target = folders.new("sync")
        return time_command(datamaestro("--data", target, "sync", "--offline", "--from", peer / "store"), env=env, cwd=project)

    def theirs_pull() -> float:
        clone = folders.new("pull")
        clone.mkdir()
        shutil.copytree(source / ".dvc", clone / ".dvc", ignore=shutil.ignore_patterns("cache", "tmp"))
        shutil.copy(source / "files.dvc", clone / "files.dvc")
        return time_command([dvc, "pull", "-q"], env=dvc_env, cwd=clone)

    ours_sync(), theirs_pull()
    pull_ours, pull_theirs = alternate(runs, ours_sync, theirs_pull)
    rows.append(compare(NAME, labels[1], median(pull_ours), median(pull_theirs), "s",
                        f"median of {runs} runs, alternating, new processes, each into a new folder; DVC: a clone of the project "
                        "(its .dvc files, no cache) pulling from a local remote folder; datamaestro: from the peer's store "
                        "(hard-linked after hashing, same file system)", target="≤ 1", met=lambda r: r <= 1))
    warm_data, pulled = folders.made[-2], folders.made[-1]
    status_ours, status_theirs = alternate(
        runs * 2,
        lambda: time_command(datamaestro("--data", warm_data, "sync", "--offline"), env=env, cwd=project),
        lambda: time_command([dvc, "status", "-q"], env=dvc_env, cwd=pulled),
    )
    rows.append(compare(NAME, labels[2], median(status_ours), median(status_theirs), "s",
                        f"median of {2 * runs} runs, alternating, new processes; {count:,} files present on both sides",
                        target="≤ 1", met=lambda r: r <= 1))
    folders.discard()
    return rows


def aria2c_rows(work: Path, quick: bool, offline: bool, runs: int) -> list[Row]:
    """A gzipped file from a server capped per connection: datamaestro against ``aria2c -x8 -s8`` + gunzip."""
    size = 16 * MiB if quick else 256 * MiB
    label = f"cold prepare of a {size // MiB} MiB .gz, server capped near 20 MB/s per connection, vs `aria2c -x8 -s8` + gunzip"
    aria2c, why = program("aria2c", "aria2", offline=offline)
    if aria2c is None:
        return [skipped(NAME, label, why, target=f"≤ {ARIA:g}")]
    source = text_gzip_file(work / "data" / f"text-{size // MiB}MiB.gz", size)
    home = work / "home-peers-aria"
    env = bench_env(home, work)
    folders = RunFolders(home / "runs")
    with serving(work, NAME + "-aria", {"gzipped.bin.gz": source}, env) as server:
        server.set_fault("gzipped.bin.gz", "throttle", chunk=MiB, pause=0.05)
        url = server.url("gzipped.bin.gz")

        def ours() -> float:
            return time_command(datamaestro("--data", folders.new("datamaestro"), "prepare", "bench.gzipped"), env=env)

        def theirs() -> float:
            folder = folders.new("aria2c")
            return time_command(f"{aria2c} -q -x8 -s8 --allow-overwrite=true -d {folder} -o f.gz {url} && gunzip {folder}/f.gz", shell=True)

        times = alternate(runs, ours, theirs)
    folders.discard()
    return [compare(NAME, label, median(times[0]), median(times[1]), "s",
                    f"median of {runs} runs, alternating, new processes, new folders; the server sends 1 MiB then pauses 50 ms, per "
                    f"connection; {version([aria2c, '--version'])}; datamaestro: one process, download + hash + gunzip + store + fsync",
                    target=f"≤ {ARIA:g}", met=lambda r: r <= ARIA)]


def run(work: Path, quick: bool, offline: bool = False) -> list[Row]:
    """Every peer's rows (see the module documentation)."""
    runs = 1 if quick else 3
    # pooch's rows are the shortest and the closest to their targets: more runs, for a steadier median
    rows = pooch_rows(work, quick, offline, 1 if quick else 5)
    for section in (dvc_rows, aria2c_rows):
        rows += section(work, quick, offline, runs)
    return rows
