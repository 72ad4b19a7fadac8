"""What every benchmark shares: the result row, isolated environments, data files, timing.

Nothing here knows a particular benchmark. Paths are derived from this
file's location, never from the machine.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import stat
import statistics
import subprocess
import sys
import tarfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

#: the benchmarks package, the repository root, the default work folder
BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
WORK_DIR = BENCH_DIR / ".work"
#: the datasets used by the prepare benchmarks: a repository on sys.path, not installed
PLUGIN_DIR = BENCH_DIR / "plugin"
#: what their URLs start with; a ``[mirrors]`` setting sends it to a local server
PLUGIN_PREFIX = "http://127.0.0.1:9/bench/"

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
MB = 1_000_000


@dataclass
class Row:
    """One measured figure, next to the reference it is judged against.

    :param benchmark: the benchmark module's name
    :param measure: what was measured (one line)
    :param value: the figure for datamaestro (None when it could not be measured)
    :param reference: the same figure for the reference (another tool, the
        original datamaestro, a smaller input), None when there is none
    :param ratio: how value compares to reference, as the target states it
        (``value / reference`` unless the note says otherwise)
    :param target: the goal, as text (``≤ 0.33``, ``< 100 MB``)
    :param unit: the unit of value and reference (``s``, ``ms``, ``MB``, ``MB/s``)
    :param note: how it was measured, and anything needed to read the figure
    :param met: whether the target is met (None: no target, or not measured)
    :param skipped: why the figure was not measured (``--offline``), empty when it was
    """

    benchmark: str
    measure: str
    value: float | None
    reference: float | None = None
    ratio: float | None = None
    target: str = ""
    unit: str = ""
    note: str = ""
    met: bool | None = None
    skipped: str = ""


@dataclass
class Curve:
    """A scaling curve: series of ``(x, y)`` points over one x axis, drawn on log-log axes.

    :param benchmark: the benchmark module's name
    :param title: what is plotted against what (one line)
    :param x_label: the quantity on the x axis (``dataset size``, ``files in the dataset``)
    :param x_unit: ``B`` for bytes (labelled KiB, MiB, GiB), else the unit of x
    :param y_unit: the unit of every y (``s``, ``ms``)
    :param series: label -> points ``[x, y]``; the first series is datamaestro,
        the others references measured in the same run
    :param note: how it was measured
    """

    benchmark: str
    title: str
    x_label: str
    x_unit: str
    y_unit: str
    series: dict[str, list[list[float]]]
    note: str = ""


def skipped(benchmark: str, measure: str, reason: str, *, target: str = "") -> Row:
    """A row for a figure that was not measured (its target stays visible)."""
    return Row(benchmark, measure, None, target=target, note=f"skipped: {reason}", skipped=reason)


def compare(benchmark: str, measure: str, value: float, reference: float, unit: str, note: str = "", *, target: str = "", met: Callable[[float], bool] | None = None) -> Row:
    """A row whose ratio is ``value / reference``; ``met`` judges the ratio (None: no target)."""
    ratio = value / reference
    return Row(benchmark, measure, value, reference, ratio, target, unit, note, met=None if met is None else met(ratio))


def size_label(size: int) -> str:
    """``2 GiB``, ``64 MiB``, ``512 KiB``, ``100 B``: the largest unit that divides evenly."""
    for unit, factor in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size} B"


def slug(size: int) -> str:
    """``2GiB``: a size label usable in file names."""
    return size_label(size).replace(" ", "")


# -- folders and environments


def fresh_dir(path: Path) -> Path:
    """Removes ``path`` (even a store with read-only trees) and creates it empty."""
    if path.is_dir() and not path.is_symlink():
        # materialized store trees are read-only folders: their entries cannot be unlinked otherwise
        for dirpath, _, _ in os.walk(path):
            os.chmod(dirpath, stat.S_IRWXU)
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
    path.mkdir(parents=True)
    return path


class RunFolders:
    """A new, never used folder for every timed run; all of them deleted together, untimed, at the end.

    Deleting a folder just before a timed run slows that run's file
    creations (ext4 keeps recently freed inodes aside: ``recently_deleted()``),
    which once made a ``cp`` reference ten times slower. So no timed run
    follows a deletion closely: leftovers of an earlier run are removed
    when this is made (before the untimed set-up), and this run's folders
    by :meth:`discard`, after every timed run, followed by a ``sync``.
    """

    def __init__(self, parent: Path):
        self.parent = parent
        self.made: list[Path] = []
        if parent.exists():
            fresh_dir(parent)
        parent.mkdir(parents=True, exist_ok=True)

    def new(self, name: str) -> Path:
        """A path for one run (not created: the measured command makes it)."""
        path = self.parent / f"{name}-{len(self.made)}"
        self.made.append(path)
        return path

    def discard(self) -> None:
        """Removes every folder made so far (call it after the timed runs)."""
        fresh_dir(self.parent)
        self.made.clear()
        os.sync()


def isolated_env(home: Path, *, python_path: Sequence[Path] = ()) -> dict[str, str]:
    """An environment where datamaestro (either version) reads and writes only below ``home``.

    ``HOME`` and the XDG folders move too: the original datamaestro reads
    ``~/.config/datamaestro``. Proxies point at a closed port, so that any
    attempt to use the network fails at once instead of going out.

    :param python_path: folders put on ``PYTHONPATH`` (nothing else is)
    """
    home.mkdir(parents=True, exist_ok=True)
    (home / "settings.toml").touch()  # DATAMAESTRO_CONFIG must name a file that exists
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATAMAESTRO_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_CACHE_HOME=str(home / ".cache"),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        DATAMAESTRO_DIR=str(home / "datamaestro"),
        DATAMAESTRO_CONFIG=str(home / "settings.toml"),
        # the local test server must stay reachable: only other hosts go through the dead proxy
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        env[name] = "http://127.0.0.1:9"
    if python_path:
        env["PYTHONPATH"] = os.pathsep.join(str(p) for p in python_path)
    # a settings file named by DATAMAESTRO_CONFIG must exist (an empty one is no setting)
    settings = home / "settings.toml"
    if not settings.exists():
        settings.touch()
    return env


def write_mirrors(env: dict[str, str], mirrors: dict[str, str]) -> Path:
    """Writes the settings file of ``env`` with a ``[mirrors]`` table (prefix -> replacement)."""
    path = Path(env["DATAMAESTRO_CONFIG"])
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["[mirrors]"] + [f'"{prefix}" = ["{target}"]' for prefix, target in mirrors.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def plugin_path(work: Path) -> list[Path]:
    """Folders that make the benchmark repository ``bench`` visible to datamaestro.

    The repository's package lives in ``benchmarks/plugin``; its entry
    point is declared by a minimal ``.dist-info`` generated in the work
    folder, so nothing is installed into the interpreter.
    """
    folder = work / "plugin-path"
    info = folder / "datamaestro_bench-0.0.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: datamaestro-bench\nVersion: 0.0.0\n")
    (info / "entry_points.txt").write_text("[datamaestro.repositories]\nbench = datamaestro_bench:Repository\n")
    return [PLUGIN_DIR, folder]


def bench_env(home: Path, work: Path) -> dict[str, str]:
    """An isolated environment for a child process of this package (``python -m benchmarks._child``)."""
    return isolated_env(home, python_path=[REPO_ROOT, *plugin_path(work)])


@contextlib.contextmanager
def in_environment(env: dict[str, str]) -> Iterator[None]:
    """This process with the variables and ``sys.path`` of ``env``, restored afterwards.

    For benchmarks that call datamaestro in this process (imports already
    paid) on the data dir of an isolated environment.
    """
    saved_environ, saved_path = dict(os.environ), list(sys.path)
    os.environ.clear()
    os.environ.update(env)
    sys.path[:0] = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    from datamaestro.context import Context

    try:
        yield
    finally:
        # the next environment must not find this one's context
        Context.set_instance(None)
        os.environ.clear()
        os.environ.update(saved_environ)
        sys.path[:] = saved_path


def child_command(*args: str) -> list[str]:
    """The command of the benchmark child process (see :mod:`benchmarks._child`)."""
    return [sys.executable, "-m", "benchmarks._child", *args]


# -- data files, generated once


def _generate(path: Path, write: Callable[[object], None]) -> Path:
    """Writes a work file through ``write(fp)`` into a temporary name, then renames it.

    An interrupted generation leaves no file that a later run would take for complete.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fp:
        write(fp)
    os.replace(tmp, path)
    return path


def random_file(path: Path, size: int, *, seed: int = 0) -> Path:
    """A file of ``size`` incompressible pseudo-random bytes (kept if already there)."""
    if path.is_file() and path.stat().st_size == size:
        return path
    import numpy as np

    def write(fp):
        rng = np.random.default_rng(seed)
        left = size
        while left:
            count = min(left, 16 * MiB)
            fp.write(rng.integers(0, 256, count, dtype=np.uint8).tobytes())
            left -= count

    return _generate(path, write)


def text_gzip_file(path: Path, compressed_size: int, *, seed: int = 0) -> Path:
    """A level-1 gzip file of about ``compressed_size`` bytes (kept if already there).

    The content is random letters from a 16-letter alphabet: moderately
    compressible (about 2:1, as much real data), and too irregular for the
    compressor to find long matches, so decompression works on every byte.
    """
    marker = path.with_name(path.name + ".size")
    if path.is_file() and marker.is_file() and marker.read_text() == str(compressed_size):
        return path
    import numpy as np

    def write(fp):
        rng = np.random.default_rng(seed)
        compressor = zlib.compressobj(1, zlib.DEFLATED, 31)  # wbits 31: a gzip member
        written = 0
        while written < compressed_size:
            chunk = (rng.integers(0, 16, 4 * MiB, dtype=np.uint8) + ord("a")).tobytes()
            out = compressor.compress(chunk)
            fp.write(out)
            written += len(out)
        fp.write(compressor.flush())

    _generate(path, write)
    marker.write_text(str(compressed_size))
    return path


def zeros_gzip_file(path: Path, size: int) -> Path:
    """A gzip file that decompresses to ``size`` zero bytes (a worst case for buffering)."""
    marker = path.with_name(path.name + ".size")
    if path.is_file() and marker.is_file() and marker.read_text() == str(size):
        return path

    def write(fp):
        compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
        zeros = bytes(16 * MiB)
        left = size
        while left:
            count = min(left, len(zeros))
            fp.write(compressor.compress(zeros[:count]))
            left -= count
        fp.write(compressor.flush())

    _generate(path, write)
    marker.write_text(str(size))
    return path


def tar_of_files(path: Path, count: int, file_size: int) -> Path:
    """A plain tar of ``count`` distinct files of ``file_size`` random bytes in 100 folders (kept when there)."""
    if path.is_file():
        return path
    import numpy as np

    rng = np.random.default_rng(0)

    def write(fp):
        with tarfile.open(fileobj=fp, mode="w") as tar:
            for index in range(count):
                data = rng.integers(0, 256, file_size, dtype=np.uint8).tobytes()
                info = tarfile.TarInfo(f"d{index % 100:02d}/f{index:05d}.bin")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))

    return _generate(path, write)


def tar_gz_of_files(path: Path, count: int, file_size: int) -> Path:
    """:func:`tar_of_files`, gzipped (level 6, gzip's default; random content does not shrink): kept when there."""
    if path.is_file():
        return path
    plain = tar_of_files(path.with_name(path.name.removesuffix(".gz")), count, file_size)

    def write(fp):
        compressor = zlib.compressobj(6, zlib.DEFLATED, 31)  # wbits 31: a gzip member
        with open(plain, "rb") as src:
            while chunk := src.read(4 * MiB):
                fp.write(compressor.compress(chunk))
        fp.write(compressor.flush())

    return _generate(path, write)


def link_files(folder: Path, files: dict[str, Path]) -> Path:
    """A fresh folder holding hard links ``name -> file`` (no copy; the server refuses symlinks out of its root)."""
    fresh_dir(folder)
    for name, source in files.items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)  # another file system
    return folder


@contextlib.contextmanager
def http_server(root: Path) -> Iterator[object]:
    """The tests' :class:`ControlledServer` serving ``root`` on 127.0.0.1 (a random port)."""
    tests = str(REPO_ROOT / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    from support.httpserver import ControlledServer

    with ControlledServer(root) as server:
        yield server


@contextlib.contextmanager
def serving(work: Path, name: str, files: dict[str, Path], env: dict[str, str]) -> Iterator[object]:
    """Serves ``files`` (name -> file) locally; the settings of ``env`` mirror the benchmark datasets' URLs to them."""
    with http_server(link_files(work / "serve" / name, files)) as server:
        write_mirrors(env, {PLUGIN_PREFIX: server.base_url + "/"})
        yield server


# -- measuring


def median(values: Sequence[float]) -> float:
    """The median of some measurements."""
    return statistics.median(values)


def run_checked(
    command: Sequence[str] | str, *, env: dict[str, str] | None = None, cwd: Path | None = None, shell: bool = False, ok: Sequence[int] = (0,)
) -> subprocess.CompletedProcess:
    """Runs a command, capturing its output; raises with its stderr when it fails (an exit status not in ``ok``)."""
    result = subprocess.run(command, env=env, cwd=cwd, shell=shell, capture_output=True, text=True)
    if result.returncode not in ok:
        raise RuntimeError(f"{command if shell else ' '.join(map(str, command))} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


def run_timed(
    command: Sequence[str] | str,
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    shell: bool = False,
    before: Callable[[], None] | None = None,
    ok: Sequence[int] = (0,),
) -> tuple[float, subprocess.CompletedProcess]:
    """Wall-clock seconds of one run of a command, and its result (``before`` runs first, untimed; ``ok``: accepted exit statuses)."""
    if before is not None:
        before()
    start = time.perf_counter()
    result = run_checked(command, env=env, cwd=cwd, shell=shell, ok=ok)
    return time.perf_counter() - start, result


def time_command(command: Sequence[str] | str, **options) -> float:
    """Wall-clock seconds of one run of a command (options of :func:`run_timed`)."""
    return run_timed(command, **options)[0]


def time_call(function: Callable[[], object]) -> float:
    """Wall-clock seconds of one call."""
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


#: run by a fresh interpreter whose only child is the measured command, so
#: that RUSAGE_CHILDREN (the largest peak of all waited-for children) is that command's peak
_RSS_WRAPPER = (
    "import json, resource, subprocess, sys\n"
    "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "print(json.dumps({'code': done.returncode, 'stdout': done.stdout, 'stderr': done.stderr[-3000:],"
    " 'maxrss_kib': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))\n"
)


def peak_rss(command: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None) -> tuple[int, str]:
    """Peak resident memory in bytes of a command, and its stdout.

    Measured with ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` in a wrapper
    process that runs nothing else (the value is a maximum over every child
    a process ever waited for, so the benchmark process itself cannot read it).
    """
    done = run_checked([sys.executable, "-c", _RSS_WRAPPER, *command], env=env, cwd=cwd)
    result = json.loads(done.stdout)
    if result["code"] != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result['code']}):\n{result['stderr']}")
    return result["maxrss_kib"] * KiB, result["stdout"]


def drop_dirty_pages() -> None:
    """Flushes written data to disk, so that one run's writeback does not slow the next."""
    os.sync()


def datamaestro(*args: str | Path) -> list[str]:
    """The command line of ``datamaestro ARGS``: the console script's module, run by this interpreter."""
    return [sys.executable, "-m", "datamaestro", *map(str, args)]


def count_files(folder: Path) -> int:
    """Files below a folder, links followed."""
    return sum(len(files) for _, _, files in os.walk(folder, followlinks=True))
