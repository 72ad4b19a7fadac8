"""Other users for the tests: a process without write rights, and real Unix users in one group.

- :func:`read_only_wrapper`: a command prefix under which a store cannot be
  written (as root: the store given to ``nobody`` and every capability
  dropped, with ``setpriv``).
- :class:`LabUsers`: a Unix group and users in it, made with
  ``groupadd``/``useradd`` under unique names and removed afterwards; each
  acts through ``setpriv --reuid --regid --init-groups``.
- :func:`group_venv`: a virtualenv every user can run, with this checkout's
  datamaestro (editable) and the test plugin, cached between runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]
TEST_PLUGIN = REPOSITORY / "tests" / "plugins" / "datamaestro_testimage"
#: the interpreter of the shared virtualenv: one every user may run (the test
#: interpreter may live in root's home, which nobody else can read)
SYSTEM_PYTHON = Path("/usr/bin/python3")


def read_only_wrapper(store_dir: Path) -> list[str]:
    """Makes ``store_dir`` read-only for the processes started with the returned wrapper command.

    As a normal user, removing the write bits is enough. As root, permission
    bits do not stop writes: the store is given to ``nobody`` and the
    process runs as root without any capability (``setpriv``), which the
    kernel then treats as any other user. Skips the test when neither works.
    """
    if os.geteuid() != 0:
        for folder, _, _ in os.walk(store_dir):
            os.chmod(folder, 0o555)
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: cannot take write rights away")
    wrapper = [setpriv, "--bounding-set=-all", "--inh-caps=-all", "--ambient-caps=-all"]
    if subprocess.run([*wrapper, "true"], check=False, capture_output=True).returncode != 0:
        pytest.skip("setpriv cannot drop capabilities here (no CAP_SETPCAP)")
    for folder, dirs, files in os.walk(store_dir):
        for name in [folder, *(os.path.join(folder, f) for f in dirs + files)]:
            os.lchown(name, 65534, 65534)
    probe = subprocess.run([*wrapper, "touch", str(store_dir / "probe")], check=False, capture_output=True)
    if probe.returncode == 0:
        pytest.skip("the store stays writable without capabilities (file system ignores ownership)")
    return wrapper


# -- real users in one group


def lab_users_problem() -> str | None:
    """Why real users cannot be made here (None: they can)."""
    if os.geteuid() != 0:
        return "needs root, to create Unix users and a group (CI and the dev container run the tests as root)"
    missing = [tool for tool in ("setpriv", "useradd", "userdel", "groupadd", "groupdel") if shutil.which(tool) is None]
    if missing:
        return f"needs {', '.join(missing)} (util-linux, passwd) to act as other users"
    return None


@dataclass(frozen=True)
class User:
    """A Unix user made by :class:`LabUsers`."""

    name: str
    uid: int
    gid: int

    def wrapper(self) -> list[str]:
        """The command prefix that runs a command as this user, with its groups."""
        return [shutil.which("setpriv") or "setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups"]


class LabUsers:
    """A Unix group and users in it, under unique names; removed by :meth:`remove`.

    Example::

        lab = LabUsers(["alice", "bob"])
        try:
            subprocess.run([*lab.users["bob"].wrapper(), "id"])
        finally:
            lab.remove()
    """

    def __init__(self, roles: list[str]):
        tag = uuid.uuid4().hex[:6]
        self.group = f"dmlab{tag}"
        self.users: dict[str, User] = {}
        _edit_accounts(["groupadd", self.group])
        try:
            for role in roles:
                name = f"dm{role[:8]}{tag}"
                # no home, no login shell: the tests give each user a HOME of its own
                _edit_accounts(["useradd", "-M", "-N", "-g", self.group, "-s", "/usr/sbin/nologin", name])
                entry = pwd.getpwnam(name)
                self.users[role] = User(name, entry.pw_uid, entry.pw_gid)
        except BaseException:
            self.remove()
            raise

    def remove(self) -> None:
        """Deletes the users and the group."""
        for user in self.users.values():
            subprocess.run(["userdel", user.name], check=False, capture_output=True)
        subprocess.run(["groupdel", self.group], check=False, capture_output=True)


def _edit_accounts(command: list[str], attempts: int = 5) -> None:
    """Runs ``groupadd``/``useradd``, again while another process holds the lock of ``/etc/passwd`` or ``/etc/group``.

    Tests running in parallel (and other test runs on the machine) make
    users at the same moment; the shadow tools then fail at once with
    "cannot lock /etc/group; try again later".
    """
    for attempt in range(attempts):
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode == 0:
            return
        if "lock" not in done.stderr or attempt == attempts - 1:
            raise subprocess.CalledProcessError(done.returncode, command, done.stdout, done.stderr)
        time.sleep(0.2 * (attempt + 1))


def uv_command() -> str | None:
    """The ``uv`` command (of the test extra) beside this interpreter or on the PATH, if any."""
    beside = Path(sys.executable).parent / "uv"
    return str(beside) if beside.exists() else shutil.which("uv")


def cache_root() -> Path:
    """Where the shared virtualenv is kept between runs: a folder every user can read."""
    configured = os.environ.get("DATAMAESTRO_TESTS_SHARED_CACHE")
    return Path(configured) if configured else Path(tempfile.gettempdir()) / "datamaestro-tests-shared"


def group_venv() -> Path:
    """The ``bin`` folder of a virtualenv every user can run, with this checkout's datamaestro.

    Made from :data:`SYSTEM_PYTHON` when there is one (else from the test
    interpreter) in a world-readable folder; datamaestro and the test plugin
    are installed editable, so the code tested is this checkout's. It is
    kept between runs under a name hashed from what it is built of (the
    checkout's path and the two ``pyproject.toml``), and rebuilt when those change.
    """
    from filelock import FileLock

    python = SYSTEM_PYTHON if SYSTEM_PYTHON.exists() else Path(sys.executable)
    recipe = {
        "python": str(python),
        "checkout": str(REPOSITORY),
        "pyproject": hashlib.sha256((REPOSITORY / "pyproject.toml").read_bytes()).hexdigest(),
        "plugin": hashlib.sha256((TEST_PLUGIN / "pyproject.toml").read_bytes()).hexdigest(),
    }
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)
    folder = root / f"group-venv-{key}"
    ready = folder / "ready"
    with FileLock(str(folder) + ".lock"):
        if not ready.is_file():
            shutil.rmtree(folder, ignore_errors=True)
            uv = uv_command()
            make = [uv, "venv", "--quiet", "--python", str(python), str(folder)] if uv else [str(python), "-m", "venv", str(folder)]
            made = subprocess.run(make, capture_output=True, text=True)
            if made.returncode != 0:
                pytest.fail(f"cannot make a virtualenv with {python}: {made.stderr[-2000:]}")
            packages = ["-e", str(REPOSITORY), "-e", str(TEST_PLUGIN)]
            # uv installs in seconds what pip takes a minute or two for (measured: 5 s against 54-103 s)
            install_command = (
                [uv, "pip", "install", "--quiet", "--python", str(folder / "bin" / "python"), *packages]
                if uv
                else [str(folder / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *packages]
            )
            install = subprocess.run(install_command, capture_output=True, text=True, timeout=1200)
            if install.returncode != 0:
                pytest.fail(f"cannot install this datamaestro into {folder}:\n{install.stderr[-3000:]}")
            for dirpath, _, filenames in os.walk(folder):
                os.chmod(dirpath, 0o755)
                for name in filenames:
                    path = os.path.join(dirpath, name)
                    if not os.path.islink(path):
                        os.chmod(path, os.stat(path).st_mode | 0o444)
            ready.write_text(json.dumps(recipe))
    return folder / "bin"
