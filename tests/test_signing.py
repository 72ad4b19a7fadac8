"""Signing keys and trusted keys without a remote: `store key generate`, the settings, the signed bytes.

The signed pushes and their readers are in ``test_signed_records_s3.py``
(a real S3 server).
"""

from __future__ import annotations

import base64
import os
import re
import stat
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from datamaestro.errors import SettingsError
from datamaestro.settings import load_settings

pytest.importorskip("cryptography", reason="pip install 'datamaestro[signing]'")

PUBLIC_LINE = re.compile(r"^lab-ci:[A-Za-z0-9+/]{43}=$")


def dm(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Runs ``datamaestro ARGS`` (the installed console script)."""
    result = subprocess.run(["datamaestro", *args], capture_output=True, text=True, timeout=120)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_key_generate_writes_a_0600_secret_key_in_the_config_folder_and_prints_the_public_key_last():
    result = dm("store", "key", "generate", "lab-ci")

    key_file = Path(os.environ["DATAMAESTRO_CONFIG"]).parent / "keys" / "lab-ci.secret"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert str(key_file) in result.stdout
    assert PUBLIC_LINE.match(result.stdout.strip().splitlines()[-1])
    name, _, seed = key_file.read_text().strip().partition(":")
    assert name == "lab-ci" and len(base64.b64decode(seed)) == 32


def test_key_generate_never_overwrites_a_key_and_checks_the_name(tmp_path):
    out = tmp_path / "ci.secret"
    first = dm("store", "key", "generate", "lab-ci", "--out", str(out)).stdout.strip().splitlines()[-1]
    before = out.read_bytes()

    again = dm("store", "key", "generate", "lab-ci", "--out", str(out), check=False)
    bad_name = dm("store", "key", "generate", "lab:ci", "--out", str(tmp_path / "other"), check=False)

    assert again.returncode == 2 and "already exists" in again.stderr and out.read_bytes() == before
    assert bad_name.returncode == 2 and "cannot name a key" in bad_name.stderr and not (tmp_path / "other").exists()
    assert PUBLIC_LINE.match(first)
    # --quiet prints the public key alone
    quiet = dm("--quiet", "store", "key", "generate", "lab-ci", "--out", str(tmp_path / "quiet.secret")).stdout
    assert PUBLIC_LINE.match(quiet.strip()) and len(quiet.strip().splitlines()) == 1


def test_a_secret_key_others_may_read_is_refused(tmp_path):
    from datamaestro.errors import UsageError
    from datamaestro.remotes.signing import generate_key, load_signing_key

    path, public = generate_key("lab-ci", tmp_path / "ci.secret")
    assert load_signing_key(path).public_key() == public
    for mode in (0o640, 0o604, 0o620):
        os.chmod(path, mode)
        with pytest.raises(UsageError, match=f"may be read or changed by others than its owner \\(mode {mode:04o}\\)"):
            load_signing_key(path)


def test_a_signature_covers_the_key_kind_digest_size_and_source_digest(tmp_path):
    from datamaestro.remotes.signing import RecordTrust, generate_key, load_signing_key
    from datamaestro.store import Output

    path, public = generate_key("lab-ci", tmp_path / "ci.secret")
    signer = load_signing_key(path)
    key, other_key = "blake3:" + "1" * 64, "blake3:" + "2" * 64
    output = Output("file", digest="blake3:" + "a" * 64, source_digest="blake3:" + "c" * 64, url="http://example.org/a", size=10)
    signature = signer.sign(key, output)
    trust = RecordTrust("lab", [public])

    assert trust.verified(key, output, [signature])
    assert not trust.verified(other_key, output, [signature])  # a record moved to another recipe
    for field, value in (("kind", "tree"), ("digest", "blake3:" + "b" * 64), ("size", 11), ("source_digest", "blake3:" + "d" * 64)):
        assert not trust.verified(key, replace(output, **{field: value}), [signature]), field
    assert trust.verified(key, replace(output, url="http://mirror.example.org/a"), [signature])  # the URL is only shown
    assert not RecordTrust("lab", [public.replace("lab-ci:", "other:")]).verified(key, output, [signature])


@pytest.mark.parametrize("keys", ['["lab-ci"]', '["lab-ci:abc="]', '"lab-ci:' + "A" * 43 + '="', "[1]"])
def test_trusted_keys_that_are_not_public_keys_are_a_settings_error(monkeypatch, tmp_path, keys):
    monkeypatch.setenv("DATAMAESTRO_REMOTES", f'lab = {{ url = "s3://bucket/prefix", trusted_keys = {keys} }}')
    with pytest.raises(SettingsError, match="trusted_keys must be a list of public keys"):
        load_settings(project_dir=tmp_path)


def test_trusted_keys_without_the_library_say_what_to_install(tmp_path):
    public = "lab-ci:" + base64.b64encode(bytes(32)).decode()
    (tmp_path / "store" / "objects").mkdir(parents=True)
    script = (
        "import sys; sys.modules['cryptography'] = None\n"
        "from datamaestro.context import Context\n"
        "from datamaestro.errors import UsageError\n"
        "try:\n    Context().remotes()\nexcept UsageError as error:\n    print('REFUSED', error)\n"
    )
    env = {**os.environ, "DATAMAESTRO_REMOTES": f'lab = {{ url = "{tmp_path / "store"}", trusted_keys = ["{public}"] }}'}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert "REFUSED" in result.stdout and "datamaestro[signing]" in result.stdout, result.stdout + result.stderr


def test_malformed_records_and_signatures_are_ignored_not_errors(tmp_path):
    import json

    from datamaestro.remotes.signing import RecordTrust, generate_key, load_signing_key
    from datamaestro.store import Output

    path, public = generate_key("lab-ci", tmp_path / "ci.secret")
    key = "blake3:" + "1" * 64
    output = Output("file", digest="blake3:" + "a" * 64, size=10)
    good = load_signing_key(path).sign(key, output)
    trust = RecordTrust("lab", [public])
    record = {"key": key, "output": output.to_json()}
    for document in (
        b"not json",
        json.dumps([1, 2]).encode(),
        json.dumps({**record, "signatures": "lab-ci:abc"}).encode(),
        json.dumps({**record, "signatures": [None, 3, "lab-ci", "lab-ci:!!!", "x" * 10_000]}).encode(),
        json.dumps({**record, "output": {"kind": "nonsense"}, "signatures": [good]}).encode(),
    ):
        assert not trust.admits(key, document)
    assert trust.ignored == 5
    assert trust.admits(key, json.dumps({**record, "signatures": ["lab-ci:" + "A" * 86 + "==", good]}).encode())


def test_a_push_keeps_the_remote_s_signatures_only_when_its_record_says_the_same(tmp_path):
    import json

    from datamaestro.remotes.signing import generate_key, load_signing_key, merge_signatures
    from datamaestro.store import Output

    first = load_signing_key(generate_key("lab-ci", tmp_path / "a.secret")[0])
    second = load_signing_key(generate_key("gpu-ci", tmp_path / "b.secret")[0])
    key = "blake3:" + "1" * 64
    output = Output("file", digest="blake3:" + "a" * 64, size=10)
    remote = json.dumps({"key": key, "output": output.to_json(), "signatures": [first.sign(key, output)]}).encode()
    other = Output("file", digest="blake3:" + "b" * 64, size=10)

    assert [s.partition(":")[0] for s in merge_signatures(remote, key, output, second.sign(key, output))] == ["lab-ci", "gpu-ci"]
    assert merge_signatures(remote, key, output, None) == [first.sign(key, output)]  # an unsigned push keeps them
    assert merge_signatures(remote, key, other, None) == []  # they signed something else
    assert merge_signatures(remote, key, output, first.sign(key, output)) == [first.sign(key, output)]  # no duplicate
