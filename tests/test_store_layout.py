"""The store's layout on real files and real processes: per-part versions, creation races, migration."""

from __future__ import annotations

import grp
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import datamaestro.store.actions as actions_module
from blake3 import blake3

import datamaestro
import datamaestro.store.versioning as versioning_module
from datamaestro.errors import StoreError
from datamaestro.store import LAYOUT_PARTS, MIGRATIONS, Store, create_store, format_layout
from datamaestro.store.info import store_info
from datamaestro.store.init import init_store
from datamaestro.store.verify import verify
from support.users import read_only_wrapper

REPO_ROOT = Path(datamaestro.__file__).resolve().parents[1]
#: rounds of each creation race (more: DATAMAESTRO_RACE_ROUNDS=50)
ROUNDS = int(os.environ.get("DATAMAESTRO_RACE_ROUNDS", "5"))
RACERS = 8
PROCESS_TIMEOUT = 300
CURRENT = format_layout(LAYOUT_PARTS)
ROOT_NAMES = {"VERSION", "SHARED", "objects", "trees", "actions", "views", "roots", "tmp", "locks", "leases", "quarantine", "stamps"}


def env() -> dict:
    return dict(os.environ, PYTHONPATH=str(REPO_ROOT))


# -- racing processes

#: One racer: for each round, says it is ready, waits for the round's go
#: file, then opens (or creates) the round's store and adds an object.
RACER = r"""
import errno, json, os, sys, time
from pathlib import Path
from datamaestro.store import Store
from datamaestro.store.init import init_store

mode, group, rounds = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
if mode == "nolink":  # a file system without hard links
    def no_link(*args, **kwargs):
        raise OSError(errno.EPERM, "Operation not permitted")
    os.link = no_link
for root, go in rounds:
    print("ready", flush=True)
    go = Path(go)
    while not go.exists():
        time.sleep(0.0005)
    try:
        if mode == "init":
            store = init_store(Path(root))
        elif mode == "group":
            store = init_store(Path(root), group=group)
        else:
            store = Store(Path(root))
        print(json.dumps({"digest": store.ingest_stream([f"{mode} {os.getpid()}".encode()])}), flush=True)
    except Exception as exc:
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
"""


def race(tmp_path: Path, modes: list[str], prepare=None, group: str = "") -> list[Path]:
    """Runs ``ROUNDS`` rounds of ``len(modes)`` processes opening one new store at once.

    ``prepare(root)`` sets up each round's folder before the go (what it
    leaves is left alone). Every process must succeed in every round;
    returns the stores.
    """
    rounds = [(tmp_path / f"round{n}" / "store", tmp_path / f"go{n}") for n in range(ROUNDS)]
    argument = json.dumps([[str(root), str(go)] for root, go in rounds])
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, mode, group, argument],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env(),
        )
        for mode in modes
    ]
    failures = []
    try:
        for number, (root, go) in enumerate(rounds):
            root.parent.mkdir()
            if prepare is not None:
                prepare(root)
            left = {str(p.relative_to(root)) for p in root.rglob("*")} if root.exists() else set()
            for process in processes:
                line = process.stdout.readline()
                assert line.strip() == "ready", f"round {number}: {line!r} {process.stderr.read() if not line else ''}"
            go.touch()
            digests = []
            for mode, process in zip(modes, processes):
                result = json.loads(process.stdout.readline() or '{"error": "no answer"}')
                if "error" in result:
                    failures.append(f"round {number}, {mode}: {result['error']}")
                else:
                    digests.append(result["digest"])
            if not failures:
                check_created(root, digests, number, left)
        for process in processes:
            process.wait(timeout=PROCESS_TIMEOUT)
            assert process.returncode == 0, process.stderr.read()
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert failures == []
    return [root for root, _ in rounds]


def check_created(root: Path, digests: list[str], number: int, left: set[str]) -> None:
    """One complete store: the current VERSION, only store entries, every racer's object, no leftover."""
    assert (root / "VERSION").read_text() == CURRENT, f"round {number}"
    assert {p.name for p in root.iterdir()} - left <= ROOT_NAMES, f"round {number}"
    store = Store(root, create=False)
    assert store.layout_versions == LAYOUT_PARTS
    assert all(store.has(digest) for digest in digests), f"round {number}"
    assert {f"tmp/{p.name}" for p in (root / "tmp").iterdir()} - left == set(), f"round {number}: leftovers in tmp/"


def test_processes_creating_one_store_at_once_all_succeed(tmp_path):
    """8 processes open a store that does not exist yet, at the same moment: one store, nobody fails."""
    race(tmp_path, ["store"] * RACERS)


def test_store_init_and_store_opens_racing_all_succeed(tmp_path):
    """`store init` creates with the same function as opening a store: they may race too."""
    race(tmp_path, ["init", "store"] * (RACERS // 2))


def test_creators_on_a_folder_left_by_a_killed_creation_all_succeed(tmp_path):
    """Store folders and no VERSION (a creator killed before its link, or still creating): completed by all."""

    def leftovers(root: Path) -> None:
        (root / "objects" / "ab").mkdir(parents=True)
        (root / "tmp").mkdir()
        (root / "tmp" / "otherhost.4242.0123456789ab.version").write_text("half")
        (root / ".VERSION.4242").write_text("1\n")  # an older datamaestro's creation

    stores = race(tmp_path, ["store"] * RACERS, prepare=leftovers)
    for root in stores:
        assert (root / "objects" / "ab").is_dir()


def test_creators_without_hard_links_all_succeed(tmp_path):
    """Where the file system has no hard links (EPERM), creators fall back to a rename and still agree."""
    race(tmp_path, ["nolink", "store"] * (RACERS // 2))


def test_group_store_init_racing_plain_opens(tmp_path):
    """`store init --group` and plain opens at once: the store ends shared, every folder given to the group."""
    group = grp.getgrgid(os.getgid()).gr_name
    gid = grp.getgrnam(group).gr_gid
    for root in race(tmp_path, ["group", "store"] * (RACERS // 2), group=group):
        assert (root / "SHARED").read_text().strip() == group
        for folder in [root, root / "objects", root / "locks", root / "tmp"]:
            st = folder.stat()
            assert stat.S_IMODE(st.st_mode) == 0o3775 and st.st_gid == gid, folder
        assert Store(root).shared


# -- creation, one process


def test_a_new_group_store_is_shared_before_its_version_file_exists(tmp_path, monkeypatch):
    """SHARED is in place, and the store folder given to the group, when VERSION is linked."""
    group = grp.getgrgid(os.getgid()).gr_name
    root = tmp_path / "store"
    seen = []
    real_link = os.link

    def link(source, target, *args, **kwargs):
        if Path(target).name == "VERSION":
            seen.append(((root / "SHARED").read_text().strip(), stat.S_IMODE(root.stat().st_mode)))
        return real_link(source, target, *args, **kwargs)

    monkeypatch.setattr(os, "link", link)
    store = init_store(root, group=group)
    assert seen == [(group, 0o3775)]
    assert store.shared and store_info(store).group == group


def test_a_creator_that_loses_the_race_reads_the_winners_version(tmp_path, monkeypatch):
    """Another creator links its VERSION just before this one: no error, its file is kept and read."""
    root = tmp_path / "store"
    real_link = os.link

    def link(source, target, *args, **kwargs):
        if Path(target).name == "VERSION" and not Path(target).exists():
            Path(target).write_text("1\n")  # the winner: an older datamaestro
        return real_link(source, target, *args, **kwargs)

    monkeypatch.setattr(os, "link", link)
    store = Store(root)
    # the winner's first-layout file was read, hence migrated: not replaced by the loser's link
    assert store.layout_versions == LAYOUT_PARTS
    assert (root / "VERSION").read_text() == CURRENT
    assert list((root / "tmp").iterdir()) == []


def test_a_version_file_another_machine_linked_is_awaited(tmp_path, monkeypatch):
    """An NFS client may not see, for a while, the VERSION another machine just linked: wait for it."""
    root = tmp_path / "store"
    real_read = versioning_module._read_version
    hidden = {"count": 0}

    def read_version(path):
        if (path / "VERSION").exists() and hidden["count"] < 4:
            hidden["count"] += 1
            return None
        return real_read(path)

    monkeypatch.setattr(versioning_module, "_read_version", read_version)
    store = Store(root)
    assert hidden["count"] == 4
    assert store.layout_versions == LAYOUT_PARTS


def test_a_folder_of_ones_own_files_is_still_refused(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    (tmp_path / "mine" / "objects").mkdir()
    with pytest.raises(StoreError, match="is not a datamaestro store .no VERSION file. and is not empty"):
        Store(tmp_path / "mine")
    with pytest.raises(StoreError, match="is not a datamaestro store"):
        create_store(tmp_path / "mine")
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt", "objects"]


def test_a_new_store_has_the_current_version_file_and_store_init_every_folder(tmp_path):
    store = Store(tmp_path / "store")
    # folders are made on demand; tmp/ held the VERSION file while it was written
    assert {p.name for p in store.root.iterdir()} == {"VERSION", "tmp"}
    assert init_store(store.root).layout_versions == LAYOUT_PARTS
    assert {p.name for p in store.root.iterdir()} == ROOT_NAMES - {"SHARED"}
    assert (store.root / "VERSION").read_text() == CURRENT
    assert CURRENT.splitlines()[1:] == [f"{part} = {version}" for part, version in LAYOUT_PARTS.items()]
    assert store_info(store).layout_versions == LAYOUT_PARTS


# -- the first layout (VERSION = "1") and its migration


def blake3_of(data: bytes) -> str:
    return "blake3:" + blake3(data).hexdigest()


def first_layout_store(root: Path) -> dict:
    """A store as datamaestro with the single layout version "1" left it, made by hand.

    Returns what it holds: object digests, an action key and its output, a data root.
    """
    contents = [b"an object of the first layout\n", b"another one\n"]
    digests = []
    for data in contents:
        digest = blake3_of(data)
        path = root / "objects" / digest[7:9] / digest[9:]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(0o444)
        digests.append(digest)
    key = blake3_of(b"a recipe")
    record = {"key": key, "recipe": {"url": "http://example.org/a"}, "output": {"kind": "file", "digest": digests[0]}, "created": 1.0}
    action = root / "actions" / key[7:9] / (key[9:] + ".json")
    action.parent.mkdir(parents=True)
    action.write_text(json.dumps(record, sort_keys=True, separators=(",", ":")))
    data_dir = root.parent / "data-dir"
    data_dir.mkdir()
    note = root / "roots" / "data" / "0123456789abcdef0123456789abcdef.json"
    note.parent.mkdir(parents=True)
    note.write_text(json.dumps({"kind": "data", "manifests": [], "path": str(data_dir)}))
    (root / "VERSION").write_text("1\n")
    return {"objects": digests, "contents": contents, "key": key, "data_dir": data_dir}


def snapshot(root: Path) -> dict:
    """Path -> (inode, mtime, mode, bytes) of every file of objects/, actions/, roots/."""
    found = {}
    for part in ("objects", "actions", "roots"):
        for path in sorted((root / part).rglob("*")):
            st = path.lstat()
            found[str(path.relative_to(root))] = (st.st_ino, st.st_mtime_ns, st.st_mode, path.read_bytes() if path.is_file() else None)
    return found


def test_a_store_of_the_first_layout_is_migrated_in_place(tmp_path):
    root = tmp_path / "store"
    held = first_layout_store(root)
    before = snapshot(root)
    store = Store(root)
    assert store.layout_versions == LAYOUT_PARTS == {"objects": 1, "actions": 1, "views": 1, "roots": 1, "trees": 2}
    assert (root / "VERSION").read_text() == CURRENT
    # nothing else changed, and everything reads
    assert snapshot(root) == before
    for digest, data in zip(held["objects"], held["contents"]):
        assert store.has(digest) and store.path_of(digest).read_bytes() == data
    record = store.actions.get(held["key"])
    assert record is not None and record.output.digest == held["objects"][0]
    assert [root.path for root in store.roots()] == [held["data_dir"]]
    assert verify(store).ok
    assert list((root / "tmp").iterdir()) == []
    # opening again rewrites nothing
    inode = (root / "VERSION").stat().st_ino
    assert Store(root).layout_versions == LAYOUT_PARTS
    assert (root / "VERSION").stat().st_ino == inode


OPENER = r"""
import sys
from pathlib import Path
from datamaestro.store import Store
store = Store(Path(sys.argv[1]))
print(store.path_of(sys.argv[2]).read_text(), end="", flush=True)
"""


def test_processes_opening_a_first_layout_store_at_once_all_succeed(tmp_path):
    root = tmp_path / "store"
    held = first_layout_store(root)
    before = snapshot(root)
    processes = [
        subprocess.Popen([sys.executable, "-c", OPENER, str(root), held["objects"][0]], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
        for _ in range(RACERS)
    ]
    for process in processes:
        out, err = process.communicate(timeout=PROCESS_TIMEOUT)
        assert process.returncode == 0, err
        assert out == held["contents"][0].decode()
    assert (root / "VERSION").read_text() == CURRENT
    assert snapshot(root) == before


#: Opens a store, optionally pretending this datamaestro has actions at version 2.
READER = r"""
import sys
from pathlib import Path
import datamaestro.store as s
from datamaestro.errors import StoreError
if sys.argv[3] == "actions-2":
    s.LAYOUT_PARTS["actions"] = 2
    s.MIGRATIONS["actions", 1] = lambda layout: None
try:
    store = s.Store(Path(sys.argv[1]))
    print(store.path_of(sys.argv[2]).read_text(), end="", flush=True)
except StoreError as exc:
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(1)
"""


def test_a_first_layout_store_one_may_only_read_is_read_as_it_is(tmp_path):
    """Its VERSION cannot be rewritten: the store serves its data all the same; a part that must change is an error."""
    root = tmp_path / "store"
    held = first_layout_store(root)
    wrapper = read_only_wrapper(root)

    def run(*args: str) -> subprocess.CompletedProcess:
        command = [*wrapper, sys.executable, "-c", READER, str(root), held["objects"][0], *args]
        return subprocess.run(command, check=False, capture_output=True, text=True, env=env(), timeout=PROCESS_TIMEOUT)

    try:
        reader = run("")
        assert reader.returncode == 0, reader.stderr
        assert reader.stdout == held["contents"][0].decode()
        assert (root / "VERSION").read_text() == "1\n"
        must_change = run("actions-2")
        assert must_change.returncode == 1
        assert "must be migrated to this datamaestro's layout (actions 1 -> 2) and cannot be: no permission to write the store" in must_change.stderr
        assert "ask the store's owner to open it once" in must_change.stderr
        assert (root / "VERSION").read_text() == "1\n"
    finally:
        for folder, _, _ in os.walk(root):
            os.chmod(folder, 0o755)


# -- migrating one part


@pytest.fixture
def actions_at_2(monkeypatch):
    """This datamaestro pretends its action records are at version 2: the step 1 -> 2 adds a field."""
    calls = []

    def actions_1_to_2(layout):
        calls.append(layout.root)
        for record in layout.actions.rglob("*.json"):
            data = json.loads(record.read_text())
            data["migrated"] = True
            tmp = layout.tmp_path(".action")
            tmp.write_text(json.dumps(data))
            os.replace(tmp, record)

    monkeypatch.setitem(LAYOUT_PARTS, "actions", 2)
    monkeypatch.setitem(MIGRATIONS, ("actions", 1), actions_1_to_2)
    # a datamaestro whose records are at version 2 knows the field it added (records are read strictly)
    monkeypatch.setattr(actions_module, "RECORD_FIELDS", actions_module.RECORD_FIELDS | {"migrated"})
    return calls


def test_a_part_is_migrated_once_and_its_version_recorded(tmp_path, actions_at_2):
    root = tmp_path / "store"
    held = first_layout_store(root)
    objects = {k: v for k, v in snapshot(root).items() if k.startswith("objects")}
    store = Store(root)
    assert actions_at_2 == [root]
    assert store.layout_versions == {"objects": 1, "actions": 2, "views": 1, "roots": 1, "trees": 2}
    assert "actions = 2" in (root / "VERSION").read_text().splitlines()
    assert json.loads(store.actions.path_of(held["key"]).read_text())["migrated"] is True
    assert store.actions.get(held["key"]).output.digest == held["objects"][0]
    assert {k: v for k, v in snapshot(root).items() if k.startswith("objects")} == objects
    Store(root)
    assert actions_at_2 == [root]  # not run again


def test_a_failed_migration_step_leaves_the_old_version_and_runs_again(tmp_path, actions_at_2, monkeypatch):
    root = tmp_path / "store"
    Store(tmp_path / "store")
    (root / "VERSION").write_text(format_layout({**LAYOUT_PARTS, "actions": 1}))
    good = MIGRATIONS["actions", 1]

    def killed(layout):
        raise StoreError("the step was interrupted")

    monkeypatch.setitem(MIGRATIONS, ("actions", 1), killed)
    with pytest.raises(StoreError, match="the step was interrupted"):
        Store(root)
    assert "actions = 1" in (root / "VERSION").read_text().splitlines()
    monkeypatch.setitem(MIGRATIONS, ("actions", 1), good)
    assert Store(root).layout_versions["actions"] == 2
    assert actions_at_2 == [root]


def test_every_part_version_has_its_migration(monkeypatch):
    """A part whose version is raised without a step from the previous version is a bug found at import."""
    versioning_module._check_migrations()
    for part, current in LAYOUT_PARTS.items():
        assert all((part, version) in MIGRATIONS for version in range(1, current))
    monkeypatch.setitem(LAYOUT_PARTS, "views", 2)
    with pytest.raises(RuntimeError, match="no migration of the store's views from version 1"):
        versioning_module._check_migrations()


# -- refused layouts


@pytest.mark.parametrize(
    "text, message",
    [
        ("objects = 1\nactions = 2\nviews = 1\nroots = 1\n", r"newer layout than this datamaestro reads: actions at version 2 \(reads up to 1\)"),
        ("objects = 3\nactions = 1\nviews = 1\nroots = 1\nshelves = 1\n", r"newer layout .*: shelves \(a part it does not know\), objects at version 3"),
        ("objects = 1\nactions = 1\nviews = 1\nroots = 1\ntrees = 3\n", r"newer layout than this datamaestro reads: trees at version 3 \(reads up to 2\)"),
        ("2\n", r"has layout version 2, this datamaestro reads version 1 and per-part versions up to objects 1"),
    ],
)
def test_a_newer_layout_is_refused(tmp_path, text, message):
    store = Store(tmp_path / "store")
    (store.root / "VERSION").write_text(text)
    with pytest.raises(StoreError, match=message) as refused:
        Store(store.root)
    assert "upgrade datamaestro" in (refused.value.hint or "") or "release that matches" in (refused.value.hint or "")
    assert (store.root / "VERSION").read_text() == text


@pytest.mark.parametrize(
    "data, why",
    [
        (b"", "it names no part"),
        (b"# only a comment\n\n", "it names no part"),
        (b"hello\n", "line 1: 'hello'"),
        (b"objects = one\nactions = 1\nviews = 1\nroots = 1\n", "line 1: 'objects = one'"),
        (b"objects = 0\nactions = 1\nviews = 1\nroots = 1\n", "line 1: 'objects = 0'"),
        (b"objects = 1\nactions = 1\n", "no version for views, roots"),
        (b"objects = 1\nobjects = 1\nactions = 1\nviews = 1\nroots = 1\n", "line 2: objects is given twice"),
        (b"\xff\xfe\x00garbage", "line 1"),
    ],
)
def test_a_garbled_version_file_is_refused(tmp_path, data, why):
    store = Store(tmp_path / "store")
    (store.root / "VERSION").write_bytes(data)
    with pytest.raises(StoreError, match="its VERSION file is garbled") as refused:
        Store(store.root)
    assert why in refused.value.message
    assert "objects = 1" in refused.value.hint
    assert (store.root / "VERSION").read_bytes() == data


def test_a_version_folder_is_refused(tmp_path):
    (tmp_path / "store" / "VERSION").mkdir(parents=True)
    with pytest.raises(StoreError, match=r"its VERSION file is garbled \(it is a folder\)"):
        Store(tmp_path / "store")
