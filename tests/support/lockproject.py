"""Helpers of the lock tests: projects, served files, the console script, a plain web server.

A project is a folder with a ``pyproject.toml``; the commands run in it as
real processes (``datamaestro ...``), against the test HTTP server through
the ``[mirrors]`` setting, as a user's project would against a lab mirror.
"""

from __future__ import annotations

import gzip
import io
import os
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from support.mnistdata import mirror_settings

if TYPE_CHECKING:
    from datamaestro.context import Context

PYPROJECT = """[project]
name = "{name}"
version = "0.1.0"

# the data this project uses
[tool.datamaestro]
datasets = []  # filled by `datamaestro add`
"""

PINNED_FILES = {"a.txt": b"alpha\n", "sub/b.txt": b"beta\n", "sub/deep/c.txt": b"gamma\n"}


def write_pinned(root: Path, text: bytes = b"some text\n") -> None:
    """The files of ``org.pinned.bundle``: a tar.gz of three files and a gzipped text."""
    folder = root / "pinned"
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in PINNED_FILES.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            archive.addfile(info, io.BytesIO(data))
    (folder / "files.tar.gz").write_bytes(buffer.getvalue())
    (folder / "text.txt.gz").write_bytes(gzip.compress(text, mtime=0))


def settings_file(base_url: str) -> Path:
    """The user settings: the mirror to the test server, and no retries (the original URLs are dead)."""
    path = mirror_settings(base_url)
    path.write_text("retries = 0\n" + path.read_text())
    return path


@pytest.fixture
def served(mnist_server):
    """The test server with MNIST, the example files and the pinned bundle; settings point at it."""
    write_pinned(mnist_server.root)
    settings_file(mnist_server.base_url)
    return mnist_server


class Project(type(Path())):
    """A project folder (a path) that also knows the data dir it was locked on (``data``)."""

    data: Path


def make_project(folder: Path, name: str = "project") -> Project:
    """A project folder with a pyproject.toml listing no dataset."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pyproject.toml").write_text(PYPROJECT.format(name=name))
    return Project(folder)


def in_project(project: Path, data: Path) -> "Context":
    """A context as a command run in ``project`` with ``--data DATA`` would have (no progress bars)."""
    from datamaestro.context import Context

    return Context(overrides={"data_dir": data}, progress=False, project_dir=project)


def lock_project(project: Project, data: Path, *datasets: str) -> Project:
    """Adds datasets to a project and locks it on ``data``, in this process (faster than the CLI)."""
    from datamaestro import api

    with in_project(project, data) as context:
        api.add_datasets(list(datasets), context=context)
        api.lock_project(context=context)
    project.data = data
    return project


def dm(project: Path, *args: str, data: Path | None = None, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    """Runs ``datamaestro [--data DATA] ARGS`` in a project folder.

    Its timeout only stops a command that hangs: on a loaded machine (load 30 on 2 cores) a
    prepare of 5,000 files from a remote took more than 120 s.
    """
    command = ["datamaestro", *(["--data", str(data)] if data else []), *args]
    result = subprocess.run(command, cwd=project, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=600)
    if check:
        assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout}\n{result.stderr}"
    return result


def readable_files(data: Path, repository: str, dataset_id: str) -> dict[str, bytes]:
    """Every file a dataset's readable folder shows, by relative path (links followed)."""
    folder = data / "data" / repository / Path(*dataset_id.split("."))
    files = {}
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = [d for d in dirnames if d != ".view"]
        for name in filenames:
            path = Path(dirpath) / name
            if name != ".view" and path.is_file():
                files[str(path.relative_to(folder))] = path.read_bytes()
    return dict(sorted(files.items()))


def free_port() -> int:
    """A TCP port free right now on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class StaticServer:
    """``python -m http.server`` serving a folder, in a process of its own (what a lab would run)."""

    def __init__(self, folder: Path):
        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "http.server", str(self.port), "--bind", "127.0.0.1", "--directory", str(folder)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("python -m http.server did not start")

    @property
    def url(self) -> str:
        """Its base URL."""
        return f"http://127.0.0.1:{self.port}/"

    def stop(self) -> None:
        """Stops the server process."""
        self.process.terminate()
        self.process.wait(timeout=10)

    def __enter__(self) -> "StaticServer":
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()
