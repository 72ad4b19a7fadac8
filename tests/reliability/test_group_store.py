"""A group store with two real Unix users: they share every byte, and neither can alter what the other reads.

The module makes a group and two users (``useradd``, unique names, removed
at the end), a group store owned by root (``store init --group``), and a
virtualenv every user can run (``support.users.group_venv``: this
checkout's datamaestro). Each user acts through ``setpriv --reuid --regid
--init-groups`` with umask 002, as lab members sharing files usually do.
One store and one server serve the whole module; the tests run in order
(each leaves the store sound for the next).
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.httpserver import ControlledServer
from support.mnistdata import PLUGIN_PREFIX
from support.users import LabUsers, User, group_venv, lab_users_problem

from .harness import PROCESS_TIMEOUT, readable_problems, store_problems
from .samples import Expected, write_samples

MNIST = "com.lecun.mnist"


@dataclass
class Lab:
    """The module's setup: users, their folders, the store, the server."""

    users: LabUsers
    bin: Path
    base: Path
    store: Path
    settings: Path
    server: ControlledServer
    expected: dict[str, Expected]

    def data_dir(self, role: str) -> Path:
        """The data dir of a user (``alice``, ``bob``)."""
        return self.base / role

    def env(self, role: str) -> dict[str, str]:
        """The whole environment of a user's process: nothing of root's."""
        return {
            "PATH": f"{self.bin}{os.pathsep}/usr/bin{os.pathsep}/bin",
            "HOME": str(self.base / f"{role}-home"),
            "LANG": "C.UTF-8",
            "DATAMAESTRO_CONFIG": str(self.settings),
            "DATAMAESTRO_REPOSITORIES": "image=datamaestro-testimage",
        }

    def command(self, role: str, *args: str) -> list[str]:
        """``datamaestro ARGS`` on the user's data dir and the group store, as that user."""
        user: User = self.users.users[role]
        return [*user.wrapper(), str(self.bin / "datamaestro"), "--quiet", "--data", str(self.data_dir(role)), "--store", str(self.store), *args]

    def start(self, role: str, *args: str) -> subprocess.Popen:
        """Starts ``datamaestro ARGS`` as a user, without waiting."""
        return subprocess.Popen(
            self.command(role, *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env(role), preexec_fn=_group_umask
        )

    def run(self, role: str, *args: str) -> subprocess.CompletedProcess:
        """Runs ``datamaestro ARGS`` as a user, to its end."""
        return subprocess.run(self.command(role, *args), capture_output=True, text=True, env=self.env(role), preexec_fn=_group_umask, timeout=PROCESS_TIMEOUT)

    def python(self, role: str, script: str, *args: str) -> subprocess.CompletedProcess:
        """Runs a Python script as a user (the shared virtualenv's interpreter)."""
        command = [*self.users.users[role].wrapper(), str(self.bin / "python"), "-c", script, *args]
        return subprocess.run(command, capture_output=True, text=True, env=self.env(role), preexec_fn=_group_umask, timeout=PROCESS_TIMEOUT)

    def uid(self, role: str) -> int:
        """The uid of a user."""
        return self.users.users[role].uid


def _group_umask() -> None:
    os.umask(0o002)


def _describe(outcome: subprocess.CompletedProcess) -> str:
    return f"exit {outcome.returncode}; stderr:\n{outcome.stderr}"


@pytest.fixture(scope="module")
def lab():
    """Two users in one group, a group store owned by root, a server with the sample datasets."""
    problem = lab_users_problem()
    if problem:
        pytest.skip(problem)
    bin_folder = group_venv()
    users = LabUsers(["alice", "bob"])
    base = Path(tempfile.mkdtemp(prefix="dm-group-store-"))
    server = None
    try:
        os.chmod(base, 0o755)
        server = ControlledServer(base / "http").start()
        expected = write_samples(server.root)
        settings = base / "settings.toml"
        settings.write_text(
            'retries = 1\nread_timeout = 1\nconnect_timeout = 1\nlock_timeout = 60\n'
            f'[mirrors]\n"{PLUGIN_PREFIX}" = ["{server.base_url.rstrip("/")}/"]\n'
        )
        os.chmod(settings, 0o644)
        for role, user in users.users.items():
            for folder in (base / role, base / f"{role}-home"):
                folder.mkdir()
                os.chown(folder, user.uid, user.gid)
        alice = users.users["alice"]
        probe = subprocess.run([*alice.wrapper(), str(bin_folder / "python"), "-c", "import datamaestro.store"], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "HOME": str(base)})
        if probe.returncode != 0:
            pytest.skip(f"another user cannot run the shared virtualenv {bin_folder.parent} (is the checkout readable by all?): {probe.stderr.strip()[-300:]}")
        store = base / "store"
        init = subprocess.run(
            [str(bin_folder / "datamaestro"), "--store", str(store), "store", "init", "--group", users.group],
            capture_output=True,
            text=True,
            env={"PATH": os.environ["PATH"], "HOME": str(base), "DATAMAESTRO_CONFIG": str(settings)},
            timeout=PROCESS_TIMEOUT,
        )
        assert init.returncode == 0, init.stderr
        yield Lab(users, bin_folder, base, store, settings, server, expected)
    finally:
        if server is not None:
            server.stop()
        users.remove()
        shutil.rmtree(base, ignore_errors=True)


def owned_by(store: Path, uid: int) -> dict[str, tuple[int, int, int]]:
    """``path -> (size, mtime_ns, inode)`` of every entry of the store owned by ``uid`` (tmp/ and leases/ left out)."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(store):
        relative = os.path.relpath(dirpath, store)
        if relative.split(os.sep)[0] in ("tmp", "leases", "locks"):
            continue
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if st.st_uid == uid:
                found[os.path.relpath(path, store)] = (st.st_size, st.st_mtime_ns, st.st_ino)
    return found


def test_a_member_reuses_another_members_download(lab):
    """alice downloads MNIST; bob prepares it with no request, reading alice's very objects."""
    first = lab.run("alice", "prepare", MNIST)
    assert first.returncode == 0, _describe(first)
    counts = [lab.server.count(f"mnist/{name}") for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")]
    second = lab.run("bob", "prepare", MNIST)
    assert second.returncode == 0, _describe(second)
    assert [lab.server.count(f"mnist/{name}") for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")] == counts
    assert readable_problems(lab.data_dir("bob"), {MNIST: lab.expected[MNIST]}, complete=[MNIST]) == []
    alice_view = os.path.realpath(lab.data_dir("alice") / lab.expected[MNIST].folder / ".view")
    bob_view = os.path.realpath(lab.data_dir("bob") / lab.expected[MNIST].folder / ".view")
    assert alice_view == bob_view and os.stat(alice_view).st_uid == lab.uid("alice")


#: Run by bob: every way to change an entry of alice's; prints what the kernel allowed.
TAMPER = r"""
import json, os, sys
store, targets = sys.argv[1], json.loads(sys.argv[2])
evil = os.path.join(store, "tmp", "evil-%d" % os.getpid())
allowed = []
def attempt(name, action):
    with open(evil, "w") as fp:  # again each time: a replace that worked took it
        fp.write("evil bytes")
    try:
        action()
        allowed.append(name)
    except OSError:
        pass
for kind, path in targets.items():
    attempt(f"replace {kind}", lambda: os.replace(evil, path) if os.path.isfile(path) else os.rename(path, path + ".moved"))
    attempt(f"delete {kind}", lambda: os.unlink(path) if not os.path.isdir(path) or os.path.islink(path) else os.rmdir(path))
    if kind == "fan-out folder":
        continue  # adding entries there is what members do
    if os.path.isdir(path) and not os.path.islink(path):
        attempt(f"add into {kind}", lambda: os.symlink("evil", os.path.join(path, "evil")))
    elif not os.path.islink(path):
        attempt(f"append to {kind}", lambda: open(path, "ab").write(b"evil"))
        attempt(f"chmod {kind}", lambda: os.chmod(path, 0o666))
attempt("rename objects/", lambda: os.rename(os.path.join(store, "objects"), os.path.join(store, "objects.moved")))
attempt("replace VERSION", lambda: os.replace(evil, os.path.join(store, "VERSION")))
if os.path.exists(evil):
    os.unlink(evil)
print(json.dumps(allowed))
"""


#: Run by alice: stores a folder (a tree of her own) through the store's API; prints its materialized folder.
ALICE_TREE = r"""
import sys
from pathlib import Path
from datamaestro.store import Store
store, folder = Store(Path(sys.argv[1])), Path(sys.argv[2])
(folder / "sub").mkdir(parents=True)
(folder / "sub" / "a.txt").write_text("alice's file")
print(store.trees.path_of(store.ingest_tree(folder)))
"""


def test_a_member_cannot_replace_delete_or_append_to_another_members_entries(lab):
    """Objects, trees, views, action records, stamps and roots of alice's stay as they are, whatever bob tries."""
    made = lab.python("alice", ALICE_TREE, str(lab.store), str(lab.base / "alice-home" / "folder"))
    assert made.returncode == 0, made.stderr
    tree = Path(made.stdout.strip())
    assert tree.is_dir() and tree.is_relative_to(lab.store / "trees")
    view = Path(os.path.realpath(lab.data_dir("alice") / lab.expected[MNIST].folder / ".view"))
    obj = Path(os.path.realpath(next(p for p in view.iterdir())))
    assert obj.is_file() and obj.is_relative_to(lab.store / "objects")
    fan = obj.parent.name
    targets = {
        "object": obj,
        "tree": tree,
        "file of a tree": next(p for p in tree.rglob("*") if p.is_file()),
        "view": view,
        "action record": next(p for p in (lab.store / "actions").rglob("*.json") if p.stat().st_uid == lab.uid("alice")),
        "stamp": lab.store / "stamps" / fan / obj.name,
        "root": next(p for p in (lab.store / "roots" / "data").glob("*.json") if p.stat().st_uid == lab.uid("alice")),
        "fan-out folder": obj.parent,
    }
    before = owned_by(lab.store, lab.uid("alice"))
    contents = {str(obj): obj.read_bytes()}
    tampered = lab.python("bob", TAMPER, str(lab.store), json.dumps({k: str(v) for k, v in targets.items()}))
    assert tampered.returncode == 0, tampered.stderr
    assert json.loads(tampered.stdout) == []
    assert owned_by(lab.store, lab.uid("alice")) == before
    assert obj.read_bytes() == contents[str(obj)]
    assert store_problems(lab.store) == []


#: Run by a user: makes its own object writable and appends to it (what an editor does in place).
EDIT_IN_PLACE = r"""
import os, sys
path = sys.argv[1]
os.chmod(path, 0o644)
with open(path, "ab") as fp:
    fp.write(b"changed in place\n")
os.chmod(path, 0o444)
"""


def test_an_object_changed_in_place_by_its_owner_is_not_served_silently(lab):
    """bob is refused (naming alice) and his verify leaves it; alice's next prepare quarantines it and fetches it again."""
    dataset = "org.example"
    expected = {dataset: lab.expected[dataset]}
    first = lab.run("alice", "prepare", dataset)
    assert first.returncode == 0, _describe(first)
    view = Path(os.path.realpath(lab.data_dir("alice") / lab.expected[dataset].folder / ".view"))
    obj = Path(os.path.realpath(next(p for p in view.iterdir())))
    requests = lab.server.count("example/readme.txt")
    edited = lab.python("alice", EDIT_IN_PLACE, str(obj))
    assert edited.returncode == 0, edited.stderr

    refused = lab.run("bob", "prepare", dataset)
    assert refused.returncode == 1, _describe(refused)
    assert "was changed after it was stored" in refused.stderr and lab.users.users["alice"].name in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not (lab.data_dir("bob") / lab.expected[dataset].folder).exists()
    # bob's verify finds it by its hash, and leaves it to alice or the store's owner
    verified = lab.run("bob", "store", "verify")
    assert verified.returncode == 1, _describe(verified)
    assert f"not moved: it belongs to {lab.users.users['alice'].name}" in verified.stdout
    assert obj.exists()

    repaired = lab.run("alice", "prepare", dataset)
    assert repaired.returncode == 0, _describe(repaired)
    assert lab.server.count("example/readme.txt") == requests + 1
    assert readable_problems(lab.data_dir("alice"), expected, complete=[dataset]) == []
    notes = [json.loads(p.read_text()) for p in (lab.store / "quarantine").glob("*.json")]
    assert any(note["path"] == os.path.relpath(obj, lab.store) and "changed after it was stored" in note["why"] for note in notes)
    again = lab.run("bob", "prepare", dataset)
    assert again.returncode == 0, _describe(again)
    assert readable_problems(lab.data_dir("bob"), expected, complete=[dataset]) == []
    assert store_problems(lab.store) == []


def test_gc_by_a_member_removes_nothing_of_another_members_data(lab):
    """bob's gc leaves alice's unreachable data (and says so); the store's owner collects it."""
    dataset = "org.example.digits"
    scratch = lab.base / "alice-scratch"
    scratch.mkdir()
    os.chown(scratch, lab.uid("alice"), lab.users.users["alice"].gid)
    made = subprocess.run(
        [*lab.users.users["alice"].wrapper(), str(lab.bin / "datamaestro"), "--quiet", "--data", str(scratch), "--store", str(lab.store), "prepare", dataset],
        capture_output=True, text=True, env=lab.env("alice"), preexec_fn=_group_umask, timeout=PROCESS_TIMEOUT,
    )
    assert made.returncode == 0, _describe(made)
    digits = Path(os.path.realpath(scratch / lab.expected[dataset].folder / ".view"))
    shutil.rmtree(scratch)  # alice's data dir is gone: the digits are unreachable
    before = owned_by(lab.store, lab.uid("alice"))

    collected = lab.run("bob", "store", "gc", "--grace", "0")
    assert collected.returncode == 0, _describe(collected)
    assert "unreachable entries of other members" in collected.stdout
    assert owned_by(lab.store, lab.uid("alice")) == before

    # the store's owner (root here) collects them
    owner = subprocess.run(
        [str(lab.bin / "datamaestro"), "--quiet", "--store", str(lab.store), "store", "gc", "--grace", "0"],
        capture_output=True, text=True, env={**lab.env("alice"), "HOME": str(lab.base)}, timeout=PROCESS_TIMEOUT,
    )
    assert owner.returncode == 0, _describe(owner)
    assert not digits.exists()
    assert readable_problems(lab.data_dir("alice"), {MNIST: lab.expected[MNIST]}, complete=[MNIST]) == []
    assert store_problems(lab.store) == []


def test_a_member_killed_mid_prepare_leaves_nothing_the_other_cannot_finish(lab):
    """kill -9 of alice's prepare while it downloads: bob takes over its lease and finishes the dataset."""
    dataset = "org.samples.tokens"
    lab.server.set_fault("samples/text.txt.gz", "slow", delay=60)
    try:
        alice = lab.start("alice", "prepare", dataset)
        deadline = time.monotonic() + PROCESS_TIMEOUT
        leases = lab.store / "leases"
        while not any(not name.startswith(".") and not name.endswith(".break") for name in os.listdir(leases)):
            assert alice.poll() is None, alice.communicate()[1]
            assert time.monotonic() < deadline, "alice's prepare never took a lease"
            time.sleep(0.05)
        while lab.server.count("samples/text.txt.gz") == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(alice.pid, signal.SIGKILL)
        alice.communicate()
    finally:
        lab.server.clear_faults()
    finished = lab.run("bob", "prepare", dataset)
    assert finished.returncode == 0, _describe(finished)
    assert readable_problems(lab.data_dir("bob"), {dataset: lab.expected[dataset]}, complete=[dataset]) == []
    assert store_problems(lab.store) == []


def reference_store(lab, dataset: str) -> Path:
    """A store of root's own where ``dataset`` was prepared: what any member can learn of the names a prepare uses.

    Recipe keys and manifest digests are the same in every store: a member
    learns them from another store, or from ``actions/``.
    """
    reference = lab.base / f"reference-{dataset}"
    if not (reference / "store").is_dir():
        made = subprocess.run(
            [str(lab.bin / "datamaestro"), "--quiet", "--data", str(reference / "data"), "--store", str(reference / "store"), "prepare", dataset],
            capture_output=True, text=True, env={**lab.env("alice"), "HOME": str(lab.base)}, timeout=PROCESS_TIMEOUT,
        )
        assert made.returncode == 0, _describe(made)
    return reference / "store"


def lock_names(lab, dataset: str) -> list[str]:
    """The names of the store locks a prepare of ``dataset`` takes for its steps (not the gc lock its publication takes)."""
    return sorted(path.name.removesuffix(".lock") for path in (reference_store(lab, dataset) / "locks").glob("*.lock") if path.name != "gc.lock")


#: Run by bob: plants, at the given names, links to a file of alice's (a member needs no rights on the target to make a link).
PLANT = r"""
import os, sys
target = sys.argv[1]
for name in sys.argv[2:]:
    os.symlink(target, name)
"""


def run_as(lab, role: str, data_dir: Path, store: Path, *args: str, settings: Path | None = None) -> subprocess.CompletedProcess:
    """``datamaestro ARGS`` as a user, on the given data dir and store (and settings file)."""
    user = lab.users.users[role]
    env = {**lab.env(role), **({"DATAMAESTRO_CONFIG": str(settings)} if settings else {})}
    return subprocess.run(
        [*user.wrapper(), str(lab.bin / "datamaestro"), "--quiet", "--data", str(data_dir), "--store", str(store), *args],
        capture_output=True, text=True, env=env, preexec_fn=_group_umask, timeout=PROCESS_TIMEOUT,
    )


def fresh_group_store(lab, name: str) -> Path:
    """Another group store of the lab's group, owned by root (no lock file taken in it yet)."""
    store = lab.base / name
    made = subprocess.run(
        [str(lab.bin / "datamaestro"), "--store", str(store), "store", "init", "--group", lab.users.group],
        capture_output=True, text=True, env={"PATH": os.environ["PATH"], "HOME": str(lab.base), "DATAMAESTRO_CONFIG": str(lab.settings)},
        timeout=PROCESS_TIMEOUT,
    )
    assert made.returncode == 0, made.stderr
    return store


def test_a_link_planted_by_a_member_is_never_written_through(lab):
    """bob plants links to a private file of alice's at the holder notes and a lock file of a dataset alice prepares next.

    alice's prepare writes nothing through them (her file keeps its bytes),
    goes on without the lock bob blocked, names bob, and serves the data.
    """
    dataset = MNIST
    store = fresh_group_store(lab, "planted-store")
    data_dir = lab.base / "alice-planted"
    data_dir.mkdir()
    os.chown(data_dir, lab.uid("alice"), lab.users.users["alice"].gid)
    names = lock_names(lab, dataset)
    assert names
    precious = lab.base / "alice-home" / "precious.txt"
    precious.write_text("alice's own notes\n")
    os.chown(precious, lab.uid("alice"), lab.users.users["alice"].gid)
    os.chmod(precious, 0o600)
    before = (precious.read_bytes(), os.stat(precious).st_mtime_ns)
    locks = store / "locks"
    holders = [str(locks / f"{name}.holder") for name in names]
    blocked = str(locks / f"{names[0]}.lock")
    planted = lab.python("bob", PLANT, str(precious), *holders, blocked)
    assert planted.returncode == 0, planted.stderr

    outcome = run_as(lab, "alice", data_dir, store, "prepare", dataset)
    assert (precious.read_bytes(), os.stat(precious).st_mtime_ns) == before, precious.read_bytes()
    assert outcome.returncode == 0, _describe(outcome)
    assert "cannot be used" in outcome.stderr and lab.users.users["bob"].name in outcome.stderr, _describe(outcome)
    assert readable_problems(data_dir, {dataset: lab.expected[dataset]}, complete=[dataset]) == []
    # what bob planted stays his (the sticky folder), and blocks nothing
    assert all(os.path.islink(name) for name in [*holders, blocked])
    assert store_problems(store) == []


def test_a_data_dir_this_user_may_not_write_is_named_before_any_download(lab):
    """alice's data dir belongs to root (mode 755): one error naming it, with the hint, and no request."""
    dataset = "org.example"
    store = fresh_group_store(lab, "unwritable-data-store")
    data_dir = lab.base / "root-owned-data"
    data_dir.mkdir()
    os.chmod(data_dir, 0o755)
    requests = lab.server.count("example/readme.txt")
    outcome = run_as(lab, "alice", data_dir, store, "prepare", dataset)
    assert outcome.returncode == 1, _describe(outcome)
    assert f"the data dir {data_dir} is read-only for this user" in outcome.stderr and "DATAMAESTRO_DIR" in outcome.stderr, _describe(outcome)
    assert "Traceback" not in outcome.stderr
    assert lab.server.count("example/readme.txt") == requests


#: Run by bob: holds a store lock (as a process would that never ends) with a holder note claiming anything; until stdin closes.
HOLD_LOCK = r"""
import fcntl, json, os, sys, time
lock, note = sys.argv[1], sys.argv[2]
fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
fcntl.flock(fd, fcntl.LOCK_EX)
with open(note, "w") as fp:
    json.dump({"host": "elsewhere", "pid": 1, "time": time.time(), "what": "nothing at all"}, fp)
print("held", flush=True)
sys.stdin.read()
"""


def test_a_lock_held_by_a_member_is_reported_with_its_name(lab):
    """bob holds the lock of a step alice needs, with a note claiming another host: alice's timeout names bob."""
    dataset = "org.example"
    store = fresh_group_store(lab, "held-lock-store")
    (name,) = lock_names(lab, dataset)
    data_dir = lab.base / "alice-held"
    data_dir.mkdir()
    os.chown(data_dir, lab.uid("alice"), lab.users.users["alice"].gid)
    settings = lab.base / "short-lock-settings.toml"
    settings.write_text(lab.settings.read_text().replace("lock_timeout = 60", "lock_timeout = 1"))
    os.chmod(settings, 0o644)
    holder = subprocess.Popen(
        [*lab.users.users["bob"].wrapper(), str(lab.bin / "python"), "-c", HOLD_LOCK, str(store / "locks" / f"{name}.lock"), str(store / "locks" / f"{name}.holder")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=lab.env("bob"), preexec_fn=_group_umask,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        outcome = run_as(lab, "alice", data_dir, store, "prepare", dataset, settings=settings)
    finally:
        holder.stdin.close()
        holder.wait(timeout=PROCESS_TIMEOUT)
    assert outcome.returncode == 1, _describe(outcome)
    assert "timed out" in outcome.stderr and f"of user {lab.users.users['bob'].name}" in outcome.stderr, _describe(outcome)
    assert "Traceback" not in outcome.stderr


#: Run by bob: plants, where a download of the URL keeps its bytes for a resume, a link to a file of alice's and a record claiming a resume.
PLANT_PARTIAL = r"""
import json, os, socket, sys
from blake3 import blake3
store, url, target = sys.argv[1:4]
folder = os.path.join(store, "tmp", "partial")
os.makedirs(folder, exist_ok=True)
name = f"{socket.gethostname()}.{blake3(url.encode()).hexdigest()[:32]}"
os.symlink(target, os.path.join(folder, name + ".data"))
with open(os.path.join(folder, name + ".json"), "w") as fp:
    json.dump({"url": url, "size": 1000, "etag": '"planted"', "last_modified": None}, fp)
"""


def test_a_partial_download_planted_by_a_member_is_not_written_through(lab):
    """bob plants the partial download of a URL alice fetches next as a link to her file: her file keeps its bytes, her data is right."""
    dataset = "org.example"
    store = fresh_group_store(lab, "planted-partial-store")
    precious = lab.base / "alice-home" / "precious-partial.txt"
    precious.write_text("alice's other notes\n")
    os.chown(precious, lab.uid("alice"), lab.users.users["alice"].gid)
    os.chmod(precious, 0o600)
    before = (precious.read_bytes(), os.stat(precious).st_mtime_ns)
    url = f"{lab.server.base_url.rstrip('/')}/example/readme.txt"
    planted = lab.python("bob", PLANT_PARTIAL, str(store), url, str(precious))
    assert planted.returncode == 0, planted.stderr
    data_dir = lab.base / "alice-partial"
    data_dir.mkdir()
    os.chown(data_dir, lab.uid("alice"), lab.users.users["alice"].gid)

    outcome = run_as(lab, "alice", data_dir, store, "prepare", dataset)
    assert (precious.read_bytes(), os.stat(precious).st_mtime_ns) == before, precious.read_bytes()
    assert outcome.returncode == 0, _describe(outcome)
    assert readable_problems(data_dir, {dataset: lab.expected[dataset]}, complete=[dataset]) == []


#: Run by bob: makes stamps (symbolic links whose text says size, mtime and inode) that match nothing.
PLANT_STAMPS = r"""
import os, sys
for path in sys.argv[1:]:
    os.symlink("size=1,mtime=1,ino=1", path)
"""


def test_stamps_planted_by_a_member_do_not_make_another_fetch_again_and_again(lab):
    """bob stamps, wrongly, the objects alice is about to store: her prepares ignore his stamps (naming him) and download once."""
    dataset = "org.example.digits"
    store = fresh_group_store(lab, "planted-stamp-store")
    reference = reference_store(lab, dataset)
    stamps = [store / "stamps" / p.parent.name / p.name for p in (reference / "objects").rglob("*") if p.is_file()]
    planted = lab.python("bob", PLANT_STAMPS, *map(str, stamps))
    assert planted.returncode == 0, planted.stderr
    data_dir = lab.base / "alice-stamps"
    data_dir.mkdir()
    os.chown(data_dir, lab.uid("alice"), lab.users.users["alice"].gid)
    requests = lab.server.count("example/digits.csv.gz")
    for _ in range(2):
        outcome = run_as(lab, "alice", data_dir, store, "prepare", dataset)
        assert outcome.returncode == 0, _describe(outcome)
    assert lab.server.count("example/digits.csv.gz") == requests + 1
    assert "stamp" in outcome.stderr and lab.users.users["bob"].name in outcome.stderr, _describe(outcome)
    assert list((store / "quarantine").iterdir()) == []
    assert readable_problems(data_dir, {dataset: lab.expected[dataset]}, complete=[dataset]) == []


#: Run by bob: makes the markers folder of the gc root a data dir will have (its name is a hash of host and path).
PLANT_MARKERS = r"""
import os, socket, sys
from datamaestro.store.digests import digest_bytes, hex_of
store, data_dir = sys.argv[1], sys.argv[2]
name = hex_of(digest_bytes(f"{socket.gethostname()}:{data_dir}".encode()))[:32]
os.mkdir(os.path.join(store, "roots", "data", name + ".manifests"), 0o777)
print(name)
"""


def test_a_markers_folder_planted_by_a_member_is_not_used(lab):
    """bob makes the folder of the manifest markers of alice's next gc root: alice records nothing there (he could delete it) and names him."""
    dataset = "org.example"
    store = fresh_group_store(lab, "planted-markers-store")
    data_dir = lab.base / "alice-markers"
    data_dir.mkdir()
    os.chown(data_dir, lab.uid("alice"), lab.users.users["alice"].gid)
    planted = lab.python("bob", PLANT_MARKERS, str(store), str(data_dir))
    assert planted.returncode == 0, planted.stderr
    markers = store / "roots" / "data" / f"{planted.stdout.strip()}.manifests"

    outcome = run_as(lab, "alice", data_dir, store, "prepare", dataset)
    assert outcome.returncode == 0, _describe(outcome)
    assert list(markers.iterdir()) == []
    assert "markers folder" in outcome.stderr and lab.users.users["bob"].name in outcome.stderr, _describe(outcome)
    assert readable_problems(data_dir, {dataset: lab.expected[dataset]}, complete=[dataset]) == []


#: Run by bob: writes, under both names alice's root note of a data dir may have, notes of his that alice cannot replace.
PLANT_ROOT_NOTES = r"""
import json, os, socket, sys
from datamaestro.store.digests import digest_bytes, hex_of
store, data_dir, alice = sys.argv[1], sys.argv[2], sys.argv[3]
name = hex_of(digest_bytes(f"{socket.gethostname()}:{data_dir}".encode()))[:32]
for note in (f"{name}.json", f"{name}.{alice}.json"):
    path = os.path.join(store, "roots", "data", note)
    with open(path, "w") as fp:
        json.dump({"kind": "data", "path": "/nowhere", "manifests": [], "host": "elsewhere"}, fp)
    os.chmod(path, 0o444)
"""


def test_root_notes_planted_by_a_member_leave_the_data_dir_registered(lab):
    """bob writes both guessable names of alice's gc root note: alice registers hers under a name of her own, with no warning (gc would have collected her data)."""
    dataset = "org.example"
    store = fresh_group_store(lab, "planted-roots-store")
    data_dir = lab.base / "alice-roots"
    data_dir.mkdir()
    os.chown(data_dir, lab.uid("alice"), lab.users.users["alice"].gid)
    planted = lab.python("bob", PLANT_ROOT_NOTES, str(store), str(data_dir), str(lab.uid("alice")))
    assert planted.returncode == 0, planted.stderr

    for attempt in range(2):  # the second run finds her note again, and makes no other
        outcome = run_as(lab, "alice", data_dir, store, "prepare", dataset)
        assert outcome.returncode == 0, _describe(outcome)
        assert "gc root" not in outcome.stderr, _describe(outcome)
    notes = [note for note in (store / "roots" / "data").glob("*.json") if os.lstat(note).st_uid == lab.uid("alice")]
    assert len(notes) == 1 and json.loads(notes[0].read_text())["path"] == str(data_dir), notes
    assert readable_problems(data_dir, {dataset: lab.expected[dataset]}, complete=[dataset]) == []


#: Run by bob: makes, under a view's name, a folder of his own whose entries link to a file of his.
PLANT_VIEW = r"""
import os, sys
view, names, target = sys.argv[1], sys.argv[2:-1], sys.argv[-1]
os.mkdir(view)
for name in names:
    os.makedirs(os.path.dirname(os.path.join(view, name)), exist_ok=True)
    os.symlink(target, os.path.join(view, name))
"""


def test_a_view_planted_by_a_member_is_not_served(lab):
    """bob makes the view of a manifest before anybody published it, its links pointing at his bytes: alice is refused, naming bob."""
    dataset = "org.example"
    store = fresh_group_store(lab, "planted-view-store")
    reference = reference_store(lab, dataset)
    (view,) = [p for p in (reference / "views").iterdir()]
    names = sorted(str(p.relative_to(view)) for p in view.rglob("*") if p.is_symlink())
    evil = lab.base / "bob-home" / "evil.txt"
    evil.write_text("bob's bytes\n")
    os.chown(evil, lab.uid("bob"), lab.users.users["bob"].gid)
    planted = lab.python("bob", PLANT_VIEW, str(store / "views" / view.name), *names, str(evil))
    assert planted.returncode == 0, planted.stderr
    data_dir = lab.base / "alice-view"
    data_dir.mkdir()
    os.chown(data_dir, lab.uid("alice"), lab.users.users["alice"].gid)

    refused = run_as(lab, "alice", data_dir, store, "prepare", dataset)
    assert refused.returncode == 1, _describe(refused)
    assert "does not show its manifest" in refused.stderr and lab.users.users["bob"].name in refused.stderr, _describe(refused)
    assert "Traceback" not in refused.stderr
    assert not any(p.read_bytes() == evil.read_bytes() for p in data_dir.rglob("*") if p.is_file())
    # the store's owner removes it; alice is served then
    shutil.rmtree(store / "views" / view.name)
    served = run_as(lab, "alice", data_dir, store, "prepare", dataset)
    assert served.returncode == 0, _describe(served)
    assert readable_problems(data_dir, {dataset: lab.expected[dataset]}, complete=[dataset]) == []


#: Run by a user: overwrites its own object in place with bytes of the same size, then sets its mtime back (``touch -r``).
EDIT_WITH_MTIME_RESTORED = r"""
import os, sys
path = sys.argv[1]
st = os.stat(path)
os.chmod(path, 0o644)
with open(path, "r+b") as fp:
    data = fp.read()
    fp.seek(0)
    fp.write(bytes(b ^ 0x20 for b in data[:8]) + data[8:])
os.chmod(path, 0o444)
os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
"""


def test_an_edit_with_its_mtime_restored_is_not_served_to_another_member(lab):
    """alice alters her object keeping its size and mtime: bob's next prepare refuses it, naming alice."""
    dataset = "org.example"
    for role in ("alice", "bob"):
        prepared = lab.run(role, "prepare", dataset)
        assert prepared.returncode == 0, _describe(prepared)
    view = Path(os.path.realpath(lab.data_dir("alice") / lab.expected[dataset].folder / ".view"))
    obj = Path(os.path.realpath(next(p for p in view.iterdir())))
    assert os.stat(obj).st_uid == lab.uid("alice")
    stamp = os.readlink(lab.store / "stamps" / obj.parent.name / obj.name)
    edited = lab.python("alice", EDIT_WITH_MTIME_RESTORED, str(obj))
    assert edited.returncode == 0, edited.stderr
    assert os.readlink(lab.store / "stamps" / obj.parent.name / obj.name) == stamp  # the stamp still matches

    refused = lab.run("bob", "prepare", dataset)
    assert refused.returncode == 1, _describe(refused)
    assert "was changed after it was stored" in refused.stderr and lab.users.users["alice"].name in refused.stderr
    assert "Traceback" not in refused.stderr
    # a member who never used it is refused too (its first use hashes it)
    fresh = lab.base / "bob-fresh"
    fresh.mkdir()
    os.chown(fresh, lab.uid("bob"), lab.users.users["bob"].gid)
    first_use = subprocess.run(
        [*lab.users.users["bob"].wrapper(), str(lab.bin / "datamaestro"), "--quiet", "--data", str(fresh), "--store", str(lab.store), "prepare", dataset],
        capture_output=True, text=True, env=lab.env("bob"), preexec_fn=_group_umask, timeout=PROCESS_TIMEOUT,
    )
    assert first_use.returncode == 1, _describe(first_use)
    assert lab.users.users["alice"].name in first_use.stderr

    # the object's owner gets it fetched again, and bob is served again
    repaired = lab.run("alice", "store", "verify")
    assert repaired.returncode == 1, _describe(repaired)
    again = lab.run("bob", "prepare", dataset)
    assert again.returncode == 0, _describe(again)
    assert readable_problems(lab.data_dir("bob"), {dataset: lab.expected[dataset]}, complete=[dataset]) == []
    assert store_problems(lab.store) == []


#: Run by a user: overwrites the first bytes of its own object in place (same size), then sets its mtime back.
OVERWRITE_WITH_MTIME_RESTORED = r"""
import os, sys
path = sys.argv[1]
st = os.stat(path)
os.chmod(path, 0o644)
with open(path, "r+b") as fp:
    fp.write(b"zzzzzzzz ")
os.chmod(path, 0o444)
os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
"""


def test_another_members_altered_input_does_not_feed_a_derivation(lab):
    """alice's transient text, altered with its mtime set back, is refused as the input of bob's derivation, naming alice."""
    dataset = "org.samples.tokens"
    store = fresh_group_store(lab, "derivation-store")
    alice_data, bob_data = lab.base / "alice-derive", lab.base / "bob-derive"
    for role, folder in (("alice", alice_data), ("bob", bob_data)):
        folder.mkdir()
        os.chown(folder, lab.uid(role), lab.users.users[role].gid)
    made = run_as(lab, "alice", alice_data, store, "prepare", dataset)
    assert made.returncode == 0, _describe(made)
    # the derivation's output goes (as gc would take it); its transient input stays, alice's
    tokens = Path(os.path.realpath(alice_data / lab.expected[dataset].folder / "tokens.txt"))
    tokens.unlink()
    raw = gzip.decompress((lab.server.root / "samples" / "text.txt.gz").read_bytes())
    text = [p for p in (store / "objects").rglob("*") if p.is_file() and p.read_bytes() == raw]
    assert len(text) == 1 and os.stat(text[0]).st_uid == lab.uid("alice"), text
    edited = lab.python("alice", OVERWRITE_WITH_MTIME_RESTORED, str(text[0]))
    assert edited.returncode == 0, edited.stderr

    outcome = run_as(lab, "bob", bob_data, store, "prepare", dataset)
    assert outcome.returncode == 1, _describe(outcome)
    assert "was changed after it was stored" in outcome.stderr and lab.users.users["alice"].name in outcome.stderr, _describe(outcome)
    assert "Traceback" not in outcome.stderr


#: Run by alice: stores a folder of her own holding the given text; prints its materialized folder.
ALICE_TEXT_TREE = r"""
import sys
from pathlib import Path
from datamaestro.store import Store
store, folder, text = Store(Path(sys.argv[1])), Path(sys.argv[2]), sys.argv[3]
(folder / "sub").mkdir(parents=True)
(folder / "sub" / "a.txt").write_text(text)
print(store.trees.path_of(store.ingest_tree(folder)))
"""

#: Run by a tree's owner: makes a folder of its materialized tree writable and puts another file in place of one.
SWAP_IN_TREE = r"""
import os, sys
path = sys.argv[1]
folder = os.path.dirname(path)
os.chmod(folder, 0o755)
os.unlink(path)
with open(path, "w") as fp:
    fp.write("other bytes")
os.chmod(folder, 0o555)
"""

#: Run by a member: the on-use check of a tree (what a warm prepare or sync does before handing it out).
CHECK_TREE = r"""
import sys
from pathlib import Path
from datamaestro.errors import IntegrityError
from datamaestro.store import Store
from datamaestro.store.actions import Kind, Output
try:
    Store(Path(sys.argv[1])).compare_stamps([Output(Kind.TREE, sys.argv[2])])
    print("served")
except IntegrityError as exc:
    print(f"refused: {exc}")
"""


def test_a_file_swapped_in_another_members_tree_is_not_served(lab):
    """alice replaces a file of her materialized tree by another file (a new inode): bob's on-use check refuses the tree, naming alice."""
    made = lab.python("alice", ALICE_TEXT_TREE, str(lab.store), str(lab.base / "alice-home" / "swapped"), "alice's tree file")
    assert made.returncode == 0, made.stderr
    tree = Path(made.stdout.strip())
    digest = f"blake3:{tree.parent.name}{tree.name}"
    checked = lab.python("bob", CHECK_TREE, str(lab.store), digest)
    assert checked.stdout.strip() == "served", checked.stdout + checked.stderr
    swapped = lab.python("alice", SWAP_IN_TREE, str(tree / "sub" / "a.txt"))
    assert swapped.returncode == 0, swapped.stderr

    checked = lab.python("bob", CHECK_TREE, str(lab.store), digest)
    assert checked.stdout.startswith("refused:") and lab.users.users["alice"].name in checked.stdout, checked.stdout + checked.stderr
    # the store's owner's check removes the folder (the next use materializes it again from the objects)
    owner = subprocess.run([str(lab.bin / "python"), "-c", CHECK_TREE, str(lab.store), digest], capture_output=True, text=True, timeout=PROCESS_TIMEOUT)
    assert owner.returncode == 0, owner.stderr
    assert not tree.exists()
    assert store_problems(lab.store) == []


if sys.platform != "linux":  # pragma: no cover - setpriv and useradd are Linux tools
    pytestmark = pytest.mark.skip(reason="real Unix users are made with Linux tools (setpriv, useradd)")


def test_rm_by_a_member_leaves_another_members_objects_to_the_owner(lab):
    """bob's `rm` of a dataset whose objects alice stored says they are left to the store's owner, and is no error."""
    dataset = "org.example"
    store = lab.base / "rm-store"
    init = subprocess.run(
        [str(lab.bin / "datamaestro"), "--store", str(store), "store", "init", "--group", lab.users.group],
        capture_output=True, text=True, env={**lab.env("alice"), "HOME": str(lab.base)}, timeout=PROCESS_TIMEOUT,
    )
    assert init.returncode == 0, _describe(init)

    def as_user(role: str, data: Path, *args: str) -> subprocess.CompletedProcess:
        if not data.exists():
            data.mkdir()
            os.chown(data, lab.uid(role), lab.users.users[role].gid)
        command = [*lab.users.users[role].wrapper(), str(lab.bin / "datamaestro"), "--data", str(data), "--store", str(store), *args]
        return subprocess.run(command, capture_output=True, text=True, env=lab.env(role), preexec_fn=_group_umask, timeout=PROCESS_TIMEOUT)

    alice_data, bob_data = lab.base / "rm-alice", lab.base / "rm-bob"
    assert as_user("alice", alice_data, "prepare", dataset).returncode == 0
    assert as_user("bob", bob_data, "prepare", dataset).returncode == 0  # alice's objects, reused
    shutil.rmtree(alice_data)  # only bob's folder keeps the data now
    before = owned_by(store, lab.uid("alice"))
    assert before

    removed = as_user("bob", bob_data, "rm", dataset)
    assert removed.returncode == 0, _describe(removed)
    assert "error" not in removed.stderr, _describe(removed)
    assert "entries of other members: in a group store only the store's owner (or root) collects them" in removed.stdout
    assert owned_by(store, lab.uid("alice")) == before
    assert store_problems(store) == []
