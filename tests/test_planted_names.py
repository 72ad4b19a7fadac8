"""Entries planted among a store's objects by someone else, through the console script (issue 27).

A store's ``objects/`` and ``stamps/`` can be written by others: a member of
a group store, a peer store read by ``sync --from``, a copy of a store. An
entry there that is not what the store writes (a name that is not a digest,
with a space, a line break or bytes that are not UTF-8, a short name, a file
at the top of ``objects/``, a directory, a symbolic link or a fifo where an
object should be) must stop no command: ``store verify`` names it and checks
the rest, ``store gc`` names it and never deletes, opens nor follows it,
``store info`` counts it apart, ``store du`` does not see it, and a peer's is
refused without being followed. Each store is made by the API and planted
with the real file system; every command runs as its own process.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from blake3 import blake3

from datamaestro.store import Store
from test_store_maintenance import add_dataset

#: a name of the shape of an object's (62 hex digits below a fan-out folder) that no content of these tests hashes to
DIGEST_SHAPED = "ab" * 31
NOT_A_DIGEST = "its name is not a digest"


def plant(objects: Path, fan: str, kind: str) -> tuple[str, str]:
    """Plants one entry of ``kind`` below ``objects`` (in the fan-out folder ``fan``); returns its path below ``objects``'s parent and what it is.

    Made with the real file system: a name with bytes that are not UTF-8 is
    made from bytes.
    """
    folder = objects / fan
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "space":
        name, why = "y z", NOT_A_DIGEST
        (folder / name).write_bytes(b"junk")
    elif kind == "newline":
        name, why = "x\nM " + "0" * 64, NOT_A_DIGEST  # the line break of a forged worker event
        (folder / name).write_bytes(b"junk")
    elif kind == "not-utf8":
        name, why = os.fsdecode(b"w\xff"), NOT_A_DIGEST
        with open(os.fsencode(folder) + b"/w\xff", "wb") as out:
            out.write(b"junk")
    elif kind == "short-hex":
        name, why = "abcd", NOT_A_DIGEST
        (folder / name).write_bytes(b"junk")
    elif kind == "top-file":
        (objects / "planted").write_bytes(b"junk")
        return f"{objects.name}/planted", "not a fan-out folder"
    elif kind == "directory":
        name, why = DIGEST_SHAPED, "a directory"
        (folder / name).mkdir()
        (folder / name / "inside").write_bytes(b"junk")
    elif kind == "symlink":
        name, why = DIGEST_SHAPED, "a symbolic link"
        os.symlink("/etc/passwd", folder / name)
    elif kind == "fifo":
        name, why = DIGEST_SHAPED, "a fifo"
        os.mkfifo(folder / name)
    elif kind == "fan-link":
        # a fan-out folder that is a symbolic link to a folder outside the store, holding a file of an object's shape:
        # followed, verify would quarantine (move) that file and gc delete it
        outside = outside_folder(objects)
        outside.mkdir(exist_ok=True)
        (outside / DIGEST_SHAPED).write_bytes(b"junk")
        for index in range(256):
            link = f"{index:02x}"
            if link != fan and (not (objects / link).exists() or not any((objects / link).iterdir())):
                break
        if (objects / link).exists():
            (objects / link).rmdir()
        os.symlink(outside, objects / link)
        return f"{objects.name}/{link}", "not a fan-out folder"
    else:
        raise ValueError(kind)
    return f"{objects.name}/{fan}/{name}", why


KINDS = ["space", "newline", "not-utf8", "short-hex", "top-file", "directory", "symlink", "fifo", "fan-link"]


def outside_folder(objects: Path) -> Path:
    """The folder outside the store that a planted fan-out link points to."""
    return objects.parent.parent / "outside"


def outside_untouched(objects: Path) -> bool:
    """Whether the file outside the store that a fan-out link leads to is still there, as planted (nothing followed the link)."""
    planted = outside_folder(objects) / DIGEST_SHAPED
    return not outside_folder(objects).exists() or planted.read_bytes() == b"junk"


def finding(relative: str, why: str) -> str:
    """The line a command prints for a planted entry (named whole, by ``repr``)."""
    return f"{relative!r}: not an object ({why}), left as it is"


def dm(store: Path, *args: str) -> subprocess.CompletedProcess:
    """Runs ``datamaestro --store STORE ARGS``; its timeout only stops a command that hangs (a fifo opened for reading)."""
    result = subprocess.run(["datamaestro", "--store", str(store), *args], capture_output=True, text=True, timeout=600)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def exists(path: str) -> bool:
    """Whether an entry is there (a link not followed, a fifo not opened)."""
    try:
        os.lstat(path)
    except FileNotFoundError:
        return False
    return True


@pytest.fixture
def lab_store(tmp_path) -> dict:
    """A store with a dataset of a good object and an object corrupted in place (same fan-out folder as the planted names)."""
    store = Store(tmp_path / "store")
    add_dataset(store, tmp_path / "project", "org/a", {"good.bin": b"good " * 10, "bad.bin": b"bad " * 10})
    good, bad = store.ingest_stream([b"good " * 10]), store.ingest_stream([b"bad " * 10])
    store.path_of(bad).chmod(0o644)
    store.path_of(bad).write_bytes(b"changed in place")
    return {"store": store, "good": good, "bad": bad, "fan": good[7:9]}


def plant_every_kind(objects: Path, fan: str) -> list[tuple[str, str]]:
    """Plants one entry of each kind of :data:`KINDS` (those with an object's name in three fan-out folders: ``fan`` and the two after it); returns each one's path and what it is."""
    others = {"symlink": f"{(int(fan, 16) + 1) % 256:02x}", "fifo": f"{(int(fan, 16) + 2) % 256:02x}"}
    return [plant(objects, others.get(kind, fan), kind) for kind in KINDS]  # the fan-out link last: it takes a fan-out folder left empty


def findings_of(output: str) -> list[str]:
    """The lines of a command's output that name an entry as not an object, sorted."""
    return sorted(line for line in output.splitlines() if ": not an object (" in line)


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_store_verify_names_every_planted_entry_and_checks_the_rest(lab_store, jobs):
    """verify, in one process and in worker processes: each planted entry is one line, left where it is; the corrupt object is still found and quarantined, the good one untouched."""
    store: Store = lab_store["store"]
    planted = plant_every_kind(store.layout.objects, lab_store["fan"])
    expected = sorted(finding(relative, why) for relative, why in planted)
    result = dm(store.root, "store", "verify", "-j", jobs)
    assert result.returncode == 1, result.stderr
    assert findings_of(result.stdout) == expected, result.stdout
    assert any(line.startswith(f"CORRUPT {lab_store['bad']}: ") for line in result.stdout.splitlines()), result.stdout
    assert not store.path_of(lab_store["bad"]).exists() and (store.layout.quarantine / lab_store["bad"][7:]).is_file()
    assert store.path_of(lab_store["good"]).read_bytes() == b"good " * 10
    assert all(exists(os.fsencode(store.root / relative)) for relative, _ in planted)
    assert not any(DIGEST_SHAPED in name for name in os.listdir(store.layout.quarantine)), os.listdir(store.layout.quarantine)
    assert outside_untouched(store.layout.objects)
    # the same findings again (left for their owners to remove), and nothing else once the corrupt object is gone
    again = dm(store.root, "store", "verify", "-j", jobs)
    assert again.returncode == 1 and findings_of(again.stdout) == expected and len(again.stdout.splitlines()) == 1 + len(expected), again.stdout


@pytest.mark.parametrize("kind", KINDS + ["stamps-name", "stamps-fifo"])
def test_store_gc_leaves_a_planted_entry_and_collects_the_rest(lab_store, kind):
    """gc names the planted entry (in objects/ or stamps/) and never deletes it; an unreachable object is still collected, the live ones kept."""
    store: Store = lab_store["store"]
    unreachable = store.ingest_stream([b"nothing uses this"])
    if kind.startswith("stamps-"):
        stamps = store.layout.stamps / lab_store["fan"]
        stamps.mkdir(parents=True, exist_ok=True)
        if kind == "stamps-name":
            (stamps / "y z").symlink_to("size=1,mtime=1")
            relative, why = f"stamps/{lab_store['fan']}/y z", NOT_A_DIGEST
        else:
            os.mkfifo(stamps / DIGEST_SHAPED)  # the name of a stamp whose object is not there: an orphan, if it were a stamp
            relative, why = f"stamps/{lab_store['fan']}/{DIGEST_SHAPED}", "a fifo"
    else:
        relative, why = plant(store.layout.objects, lab_store["fan"], kind)
    result = dm(store.root, "store", "gc", "--grace", "0")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("deleted 1 objects") and result.stdout.splitlines().count(finding(relative, why)) == 1, result.stdout
    assert not store.path_of(unreachable).exists()
    assert store.path_of(lab_store["good"]).is_file() and store.path_of(lab_store["bad"]).is_file()
    assert exists(os.fsencode(store.root / relative))
    assert Path("/etc/passwd").is_file() and outside_untouched(store.layout.objects)


def test_store_info_counts_planted_entries_apart_and_du_does_not_see_them(lab_store):
    """info counts objects only (every planted entry apart); du's figures are those of the store without them."""
    import json

    store: Store = lab_store["store"]
    info_before, du_before = dm(store.root, "--json", "store", "info").stdout, dm(store.root, "store", "du").stdout
    plant_every_kind(store.layout.objects, lab_store["fan"])
    before, after = json.loads(info_before), json.loads(dm(store.root, "--json", "store", "info").stdout)
    assert (after["objects"], after["object_bytes"], after["not_objects"]) == (before["objects"], before["object_bytes"], len(KINDS))
    assert f"not objects: {len(KINDS)} entries of objects/" in dm(store.root, "store", "info").stdout
    du = dm(store.root, "store", "du")
    assert du.returncode == 0 and du.stdout == du_before


# -- sync --from a peer store holding planted entries

from support.lockproject import PINNED_FILES, dm as dm_project, lock_project, make_project, readable_files, served  # noqa: E402,F401

BUNDLE = "org.pinned.bundle"


def peer_object(peer: Path, data: bytes) -> Path:
    """Where the object of ``data`` is in a store folder."""
    hexdigest = blake3(data).hexdigest()
    return peer / "objects" / hexdigest[:2] / hexdigest[2:]


@pytest.mark.parametrize("copy", [False, True], ids=["link", "copy"])
def test_sync_from_a_peer_with_planted_entries_refuses_them_and_takes_the_rest(served, tmp_path, copy):
    """A peer store whose objects/ holds planted names, and a symbolic link, a fifo and a directory at the paths of three objects the lock needs: nothing is followed, the three are refused, taken from the next peer, and the rest from the planted peer."""
    locked = lock_project(make_project(tmp_path / "project"), tmp_path / "a", BUNDLE)
    peer = tmp_path / "peer"
    shutil.copytree(locked.data / "store", peer, symlinks=True)
    planted = {}
    for (name, data), kind in zip(sorted(PINNED_FILES.items()), ["symlink", "fifo", "directory"]):
        path = peer_object(peer, data)
        path.chmod(0o644)
        path.unlink()
        {"symlink": lambda: os.symlink("/etc/passwd", path), "fifo": lambda: os.mkfifo(path), "directory": lambda: path.mkdir()}[kind]()
        planted["blake3:" + blake3(data).hexdigest()] = kind
        for other in ("space", "newline", "not-utf8", "short-hex", "top-file"):
            plant(peer / "objects", path.parent.name, other)
    served.stop()
    args = ["sync", "--frozen", "--offline", *(["--copy"] if copy else []), "--from", str(peer), "--from", str(locked.data / "store")]
    result = dm_project(locked, *args, data=tmp_path / "b")
    refused = {match.group(1): match.group(2) for match in re.finditer(r"^refused (blake3:\w+) from .*: (.*)$", result.stderr, re.M)}
    assert refused.keys() == planted.keys(), result.stderr
    for digest, kind in planted.items():
        # never followed: a link to /etc/passwd is refused as what it is, not for the bytes of /etc/passwd
        if kind == "fifo" and copy:
            assert refused[digest].endswith("content hashes to blake3:" + blake3(b"").hexdigest() + f", not {digest}")  # a fifo read without blocking: nothing
        else:
            assert refused[digest].endswith("not a regular file"), refused[digest]
    # the three refused from the next peer, the rest (tree documents, the text) from the planted peer
    assert re.search(r"^took 3 objects from .*/a/store$", result.stdout, re.M) and re.search(r"^took \d+ objects from .*/peer$", result.stdout, re.M), result.stdout
    expected = readable_files(locked.data, "image", BUNDLE)
    assert expected and readable_files(tmp_path / "b", "image", BUNDLE) == expected
    assert dm(tmp_path / "b" / "store", "store", "verify").returncode == 0



VERIFY_DIGESTS = """
import sys
from datamaestro.store import Store
from datamaestro.store.verify import verify
report = verify(Store(sys.argv[1]), jobs=int(sys.argv[2]), digests=sys.argv[3:])
print(report.checked, len(report.corrupt))
print("\\n".join(report.not_objects))
"""


@pytest.mark.parametrize("jobs", ["1", "4"])
@pytest.mark.parametrize("kind", ["fifo", "symlink", "directory"])
def test_verify_of_chosen_digests_names_a_planted_entry_at_their_path(lab_store, kind, jobs):
    """What ``sync --verify full`` runs (the project's digests, on threads): an entry planted at the path of a chosen digest is named, never opened (a fifo hung it) nor followed; the others are checked."""
    store: Store = lab_store["store"]
    planted = "blake3:" + lab_store["fan"] + DIGEST_SHAPED
    relative, why = plant(store.layout.objects, lab_store["fan"], kind)
    chosen = [lab_store["good"], lab_store["bad"], planted]
    result = subprocess.run([sys.executable, "-c", VERIFY_DIGESTS, str(store.root), jobs, *chosen], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["2 1", finding(relative, why)]
    assert exists(os.fsencode(store.root / relative)) and store.path_of(lab_store["good"]).is_file() and not store.path_of(lab_store["bad"]).exists()


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_files_planted_under_names_that_are_no_digests_are_never_read(lab_store, jobs):
    """A member can plant files of any size at no cost (a sparse one by ``truncate -s``): under a name that is not a digest, verify names them without reading them (the bytes and objects it reports are the store's own), and still finds the corrupt object."""
    import json

    store: Store = lab_store["store"]
    real = [entry.stat().st_size for entry in store.layout.objects.glob("*/*") if entry.is_file()]
    fan = store.layout.objects / lab_store["fan"]
    with open(fan / "y z", "wb") as out:
        out.truncate(4 << 30)  # 4 GiB of holes
    (fan / "w").write_bytes(b"junk" * 1024)  # small enough to be read in one go, as an object's would
    result = dm(store.root, "--json", "store", "verify", "-j", jobs)
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert sorted(report["not_objects"]) == sorted(finding(f"objects/{lab_store['fan']}/{name}", NOT_A_DIGEST) for name in ("y z", "w")), report
    assert (report["checked"], report["bytes"]) == (len(real), sum(real)), report
    assert [c["digest"] for c in report["corrupt"]] == [lab_store["bad"]], report
