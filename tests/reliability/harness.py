"""The harness of the reliability suite: real processes, real signals, independent checks.

- :func:`suite_seed` gives the seed of a test (``$DATAMAESTRO_TEST_SEED`` or a
  random one); every random choice of a test comes from it, and the suite
  prints it, so that a failure can be replayed.
- :class:`Datamaestro` runs the installed ``datamaestro`` console script on
  one data dir and store, optionally under limits (``RLIMIT_FSIZE``) or a
  wrapper command (``setpriv``), and can signal it after a delay.
- :func:`store_problems` and :func:`readable_problems` check a store and
  the readable folders with their own code (blake3 and the file system,
  not datamaestro's), so that a bug in the store cannot hide itself.
"""

from __future__ import annotations

import json
import os
import random
import re
import resource
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from blake3 import blake3

from .samples import Expected

SEED_ENV = "DATAMAESTRO_TEST_SEED"
#: no datamaestro run of the suite may take longer (a hang is a failure)
PROCESS_TIMEOUT = 90.0


def suite_seed() -> int:
    """The seed of a test: ``$DATAMAESTRO_TEST_SEED`` when set (a replay), else a new random one."""
    text = os.environ.get(SEED_ENV)
    return int(text) if text else random.randrange(1 << 31)


@dataclass
class Outcome:
    """How a datamaestro process ended.

    :param args: the command line
    :param returncode: its exit status (negative: killed by that signal)
    :param stdout: what it printed
    :param stderr: what it printed on stderr
    :param signalled: the signal sent to it while it was running, if any
    :param elapsed: wall time in seconds
    """

    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    signalled: int | None = None
    elapsed: float = 0.0

    def describe(self) -> str:
        """The command, status and stderr, for assertion messages."""
        sent = f" after {signal.Signals(self.signalled).name}" if self.signalled else ""
        return f"`{' '.join(self.args)}` exited {self.returncode}{sent}; stderr:\n{self.stderr}"


def fsize_limit(limit: int) -> Callable[[], None]:
    """A ``preexec_fn`` that caps the size of every file the child writes.

    SIGXFSZ is ignored so that a write past the limit fails with EFBIG (what
    a full quota or a file-size limit looks like to the program) instead of
    killing the process.
    """

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


class Datamaestro:
    """Runs the ``datamaestro`` console script on one data dir and one store.

    :param data_dir: the ``--data`` folder
    :param store_dir: the ``--store`` folder
    :param wrapper: a command the script runs under (``["setpriv", ...]``)
    :param preexec: a function run in the child before ``exec`` (limits)
    :param env: extra environment variables
    :param cwd: the folder the commands run in (a project's)

    Example::

        dm = Datamaestro(tmp_path / "data", tmp_path / "store")
        outcome = dm.run("prepare", "com.lecun.mnist")
        assert outcome.returncode == 0, outcome.describe()
    """

    def __init__(
        self,
        data_dir: Path,
        store_dir: Path,
        *,
        wrapper: Sequence[str] = (),
        preexec: Callable[[], None] | None = None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ):
        self.data_dir = Path(data_dir)
        self.store_dir = Path(store_dir)
        self.wrapper = list(wrapper)
        self.preexec = preexec
        self.env = env or {}
        self.cwd = cwd

    def argv(self, *args: str) -> list[str]:
        """The full command line for ``datamaestro ARGS``."""
        return [*self.wrapper, "datamaestro", "--quiet", "--data", str(self.data_dir), "--store", str(self.store_dir), *args]

    def start(self, *args: str) -> subprocess.Popen:
        """Starts ``datamaestro ARGS`` without waiting."""
        return subprocess.Popen(
            self.argv(*args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **self.env},
            preexec_fn=self._child_setup,
            cwd=self.cwd,
        )

    def _child_setup(self) -> None:
        """In the child before ``exec``: Ctrl-C at its default, then the limits.

        A test run started in the background of a shell (``cmd &``) ignores
        SIGINT, and a child inherits that: Python then installs no Ctrl-C
        handler, and a SIGINT sent by the test would be ignored.
        """
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if self.preexec is not None:
            self.preexec()

    def run(self, *args: str, timeout: float = PROCESS_TIMEOUT) -> Outcome:
        """Runs ``datamaestro ARGS`` to its end."""
        return self.run_and_signal(args, None, 0.0, timeout=timeout)

    def run_and_signal(self, args: Sequence[str], signum: int | None, delay: float, *, timeout: float = PROCESS_TIMEOUT) -> Outcome:
        """Runs ``datamaestro ARGS`` and sends it ``signum`` after ``delay`` seconds (if it still runs)."""
        started = time.monotonic()
        process = self.start(*args)
        return finish(process, signum, delay, started, timeout)


def finish(process: subprocess.Popen, signum: int | None, delay: float, started: float, timeout: float = PROCESS_TIMEOUT) -> Outcome:
    """Waits for a started process, signalling it after ``delay`` seconds when asked.

    The pipes are drained while waiting, so that a chatty process never
    blocks on a full pipe.
    """
    sent = None
    if signum is not None:
        try:
            process.communicate(timeout=delay)
        except subprocess.TimeoutExpired:
            process.send_signal(signum)
            sent = signum
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        raise AssertionError(f"`{' '.join(process.args)}` hung for {timeout:.0f}s; stderr:\n{err}") from None
    return Outcome(list(process.args), process.returncode, out, err, sent, time.monotonic() - started)


def clean_failure_problems(outcome: Outcome, status: int = 1) -> list[str]:
    """What is wrong with a failure that should be one clear message and a non-zero status."""
    problems = []
    if outcome.returncode != status:
        problems.append(f"exit status {outcome.returncode}, expected {status}")
    if "Traceback" in outcome.stderr:
        problems.append("a traceback was printed")
    if not any(line.startswith("error: ") for line in outcome.stderr.splitlines()):
        problems.append("no 'error: ' line on stderr")
    return problems


# a frame of datamaestro's main(): once there, an interrupt must be handled
_MAIN_FRAME = re.compile(r'datamaestro[/\\]cli\.py", line \d+, in main\b')


def signal_problems(outcome: Outcome) -> list[str]:
    """What is wrong with how a process ended after being sent a signal (or not).

    A process that got SIGINT exits 130 with the one line ``interrupted``
    and no traceback, or, when the signal came
    before datamaestro's code ran (interpreter start-up), dies of it.
    SIGTERM unwinds it (exit 143, "terminated", no traceback: what was
    half-written leaves tmp/ at once) or, before main() installs its
    handler, ends it. SIGKILL ends it at once. A process may also have finished
    before the signal (0) or failed on its own (a clean failure).
    """
    status = outcome.returncode
    if status == 0:
        return []
    if outcome.signalled is None:
        return clean_failure_problems(outcome)
    if outcome.signalled == signal.SIGINT:
        if status == -signal.SIGINT:
            return []
        if "KeyboardInterrupt" in outcome.stderr and not _MAIN_FRAME.search(outcome.stderr):
            # interrupted while Python started or imported the CLI, before
            # datamaestro's main() could handle it: Python's own report
            return []
        if status == 1:
            return clean_failure_problems(outcome)
        if status == 130:
            if "Traceback" in outcome.stderr:
                return ["SIGINT: a traceback was printed"]
            if "interrupted" not in (line.strip() for line in outcome.stderr.splitlines()):
                return ["SIGINT: exit status 130 without the line 'interrupted'"]
            return []
        return [f"SIGINT: exit status {status}"]
    if status == -outcome.signalled:
        return []
    if outcome.signalled == signal.SIGTERM and status == 143:
        return ["SIGTERM: a traceback was printed"] if "Traceback" in outcome.stderr else []
    if status == 1:
        return clean_failure_problems(outcome)
    return [f"{signal.Signals(outcome.signalled).name}: exit status {status}"]


# -- independent checks of a store and of readable folders


def _blake3_of(path: Path) -> str:
    hasher = blake3()
    with open(path, "rb") as fp:
        while chunk := fp.read(1 << 20):
            hasher.update(chunk)
    return "blake3:" + hasher.hexdigest()


def _fanned(folder: Path):
    """(digest, path) of every ``folder/ab/cdef...`` entry."""
    if not folder.is_dir():
        return
    for fan in sorted(folder.iterdir()):
        for entry in sorted(fan.iterdir()):
            yield f"blake3:{fan.name}{entry.name.removesuffix('.json')}", entry


def store_problems(store_dir: Path) -> list[str]:
    """Everything that breaks a promise of the store, checked from outside datamaestro.

    - every object's name is the blake3 of its content, and it is read-only;
    - every materialized tree holds exactly the files of its tree object;
    - every view entry resolves to a present object or tree;
    - every action record is complete JSON (they are written by rename).
    """
    problems = []
    objects = store_dir / "objects"
    for digest, path in _fanned(objects):
        if _blake3_of(path) != digest:
            problems.append(f"object {path} does not hash to its name")
        if path.stat().st_mode & 0o222:
            problems.append(f"object {path} is writable")
    for digest, path in _fanned(store_dir / "trees"):
        document_path = objects / digest[7:9] / digest[9:]
        try:
            data = document_path.read_bytes()
            if data.startswith(b'{"format":"datamaestro-tree/2"}\n'):
                # format 2: a header line, one line per entry, an end line
                entries = [json.loads(line) for line in data.splitlines()[1:-1]]
            else:
                entries = json.loads(data)["entries"]
        except (OSError, ValueError) as exc:
            problems.append(f"tree {path}: its tree object is unreadable ({exc})")
            continue
        wanted = {e["path"]: e for e in entries if e["kind"] != "dir"}
        present = {str(p.relative_to(path)) for p in path.rglob("*") if p.is_symlink() or p.is_file()}
        if present != set(wanted):
            problems.append(f"tree {path} holds {sorted(present)}, its tree object lists {sorted(wanted)}")
        for name, entry in wanted.items():
            if entry["kind"] == "file" and name in present and _blake3_of(path / name) != entry["digest"]:
                problems.append(f"tree {path}: {name} does not hash to {entry['digest']}")
    views = store_dir / "views"
    if views.is_dir():
        for view in views.iterdir():
            if not (objects / view.name[:2] / view.name[2:]).is_file():
                problems.append(f"view {view.name} has no manifest object")
            for link in view.rglob("*"):
                if link.is_symlink() and not link.exists():
                    problems.append(f"view entry {link} is dangling")
    for _, path in _fanned(store_dir / "actions"):
        try:
            json.loads(path.read_bytes())
        except ValueError:
            problems.append(f"action record {path} is not complete JSON")
    return problems


def tmp_entries(store_dir: Path) -> list[str]:
    """The names in the store's ``tmp/`` (in-flight or leftover writes)."""
    tmp = store_dir / "tmp"
    return sorted(os.listdir(tmp)) if tmp.is_dir() else []


def readable_problems(data_dir: Path, expected: dict[str, Expected], *, complete: Sequence[str] = ()) -> list[str]:
    """What is wrong with the readable folders of ``expected`` datasets in ``data_dir``.

    A dataset may be absent (never prepared, or killed before its view was
    published), but whatever exists must lead to complete, correct data:
    a ``.view`` link resolves to a view holding every resource, and every
    entry that exists reads as the expected bytes.

    :param complete: datasets that must be fully present
    """
    problems = []
    for dataset_id, wanted in expected.items():
        folder = data_dir / wanted.folder
        view = folder / ".view"
        must = dataset_id in complete
        if not os.path.lexists(view):
            if must:
                problems.append(f"{dataset_id}: {folder} has no .view link")
            continue
        if not view.is_dir():
            problems.append(f"{dataset_id}: .view -> {os.readlink(view)} does not resolve")
            continue
        for top in wanted.entries:
            if not (view / top).exists():
                problems.append(f"{dataset_id}: its view lacks {top}")
        for name, data in wanted.files.items():
            path = folder / name
            if not os.path.lexists(folder / name.split("/")[0]):
                if must:
                    problems.append(f"{dataset_id}: {name} is missing")
                continue
            try:
                if path.read_bytes() != data:
                    problems.append(f"{dataset_id}: {name} does not hold the expected bytes")
            except OSError as exc:
                problems.append(f"{dataset_id}: {name} cannot be read ({exc})")
    return problems


# -- assertions shared by the tests


def assert_recovers(dm: Datamaestro, expected: dict[str, Expected], dataset: str = "com.lecun.mnist") -> None:
    """The next run succeeds, and leaves a sound store, an empty ``tmp/`` and complete data."""
    outcome = dm.run("prepare", dataset)
    assert outcome.returncode == 0, outcome.describe()
    assert store_problems(dm.store_dir) == []
    assert tmp_entries(dm.store_dir) == []
    assert readable_problems(dm.data_dir, expected, complete=[dataset]) == []


def assert_clean_failure(outcome, *words: str, status: int = 1) -> None:
    """One ``error:`` message holding ``words``, the status, no traceback."""
    problems = clean_failure_problems(outcome, status)
    assert not problems, f"{problems}: {outcome.describe()}"
    for word in words:
        assert word in outcome.stderr, outcome.describe()
