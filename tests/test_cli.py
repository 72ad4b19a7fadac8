"""Every command through the real console script, with its bad inputs."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from support.mnistdata import MNIST_FILES


def run(*args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Runs ``datamaestro ARGS`` (the installed console script)."""
    result = subprocess.run(
        ["datamaestro", *args], capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=120
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_help_imports_nothing_heavy():
    code = (
        "import sys, runpy\n"
        "sys.argv = ['datamaestro', '--help']\n"
        "try:\n    runpy.run_module('datamaestro', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "heavy = [m for m in ('experimaestro', 'numpy', 'requests', 'boto3', 'botocore', 'obstore', 's3fs', 'cryptography') if m in sys.modules]\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "HEAVY []" in result.stderr
    assert "prepare" in result.stdout and "search" in result.stdout


def test_a_command_with_options_imports_no_pydantic(tmp_path):
    # typer 0.29 imports pydantic for every option it parses: 0.2 s on each command (hence typer < 0.29)
    code = (
        "import sys, runpy\n"
        f"sys.argv = ['datamaestro', '--store', {str(tmp_path / 'store')!r}, 'store', 'verify', '-j', '2']\n"
        "try:\n    runpy.run_module('datamaestro', run_name='__main__')\n"
        "except SystemExit as exit:\n    print('EXIT', exit.code, file=sys.stderr)\n"
        "print('PYDANTIC', 'pydantic' in sys.modules, file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "EXIT 0" in result.stderr or "EXIT None" in result.stderr, result.stderr
    assert "PYDANTIC False" in result.stderr


def test_version_and_module_entry():
    assert run("version").stdout.strip() == "2.0.0"
    result = subprocess.run([sys.executable, "-m", "datamaestro", "version"], capture_output=True, text=True)
    assert result.stdout.strip() == "2.0.0"


def test_search_and_repositories():
    assert run("search", "mnist").stdout.split()[0] == "com.lecun.mnist"
    listed = json.loads(run("--json", "search", "tag:digits").stdout)
    assert [e["id"] for e in listed] == ["com.lecun.mnist", "org.example.digits"]
    nothing = run("search", "nothing-like-this", check=False)
    assert (nothing.returncode, nothing.stdout, nothing.stderr) == (1, "", "no dataset matches\n")
    repositories = run("repositories").stdout
    assert repositories.startswith("image  0.1.0")
    assert json.loads(run("--json", "repositories").stdout)[0]["id"] == "image"


def test_info_shows_name_description_tags_resources():
    out = run("info", "com.lecun.mnist").stdout
    assert out.startswith("com.lecun.mnist: The MNIST database")
    assert "handwritten digits" in out
    assert "tags: digits, images" in out
    assert "train_images.idx [FileDownloader, none]" in out
    described = json.loads(run("--json", "info", "com.lecun.mnist").stdout)
    assert [r["name"] for r in described["resources"]] == list(MNIST_FILES)


def test_prepare_prints_config_json(mnist_server, tmp_path):
    data = tmp_path / "dm"
    result = run("--data", str(data), "prepare", "com.lecun.mnist")
    config = json.loads(result.stdout)
    assert config["id"] == "com.lecun.mnist@image"
    path = Path(config["train"]["images"]["path"])
    assert path == data / "data" / "image" / "com" / "lecun" / "mnist" / "train_images.idx"
    assert path.resolve().is_relative_to((data / "store" / "objects").resolve())
    assert "complete" in run("--data", str(data), "info", "com.lecun.mnist").stdout
    # download prints the folder; nothing fetched again
    before = len(mnist_server.requests)
    assert run("--data", str(data), "--quiet", "download", "com.lecun.mnist").stdout == ""
    assert run("--data", str(data), "download", "org.example.digits").stdout.strip().endswith("image/org/example/digits")
    assert len(mnist_server.requests) == before + 1


def test_store_option_moves_the_store(mnist_server, tmp_path):
    run("--data", str(tmp_path / "dm"), "--store", str(tmp_path / "elsewhere"), "download", "org.example")
    assert (tmp_path / "elsewhere" / "VERSION").is_file()
    assert not (tmp_path / "dm" / "store").exists()


@pytest.mark.parametrize(
    "args, status, words",
    [
        (["info", "com.lecun.mnsit"], 2, ["unknown dataset id 'com.lecun.mnsit'", "did you mean com.lecun.mnist?"]),
        (["prepare", "nothing.at.all"], 2, ["unknown dataset id 'nothing.at.all'", "datamaestro search"]),
        (["search", "colour:red"], 2, ["unknown search field 'colour'"]),
        (["--frobnicate", "search"], 2, ["No such option: --frobnicate"]),
        (["info"], 2, ["Missing argument 'ID'"]),
        (["nonsense"], 2, ["No such command 'nonsense'"]),
    ],
)
def test_bad_inputs_give_one_message(args, status, words):
    result = run(*args, check=False)
    assert result.returncode == status
    for word in words:
        assert word in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_settings_file(tmp_path):
    settings = tmp_path / "settings.toml"
    settings.write_text("retries = [\n")
    result = run("search", env={"DATAMAESTRO_CONFIG": str(settings)}, check=False)
    assert result.returncode == 2
    assert f"error: {settings}: invalid TOML" in result.stderr
    assert "Traceback" not in result.stderr
    settings.write_text("retries = 'many'\n")
    result = run("search", env={"DATAMAESTRO_CONFIG": str(settings)}, check=False)
    assert result.returncode == 2 and "'retries' must be a whole number" in result.stderr


def test_traceback_option_shows_the_traceback():
    result = run("--traceback", "info", "no.such.dataset", check=False)
    assert result.returncode == 2
    assert "Traceback" in result.stderr and "unknown dataset id" in result.stderr


def test_offline_cli_lists_missing_urls(mnist_server, tmp_path):
    result = run("--data", str(tmp_path / "dm"), "--offline", "prepare", "com.lecun.mnist", check=False)
    assert result.returncode == 1
    assert "offline mode: 4 download(s) needed" in result.stderr
    assert "http://127.0.0.1:9/mnist/t10k-labels-idx1-ubyte.gz" in result.stderr
    assert mnist_server.requests == []


def test_store_commands(mnist_server, tmp_path):
    data = str(tmp_path / "dm")
    run("--data", data, "download", "com.lecun.mnist")
    info = json.loads(run("--data", data, "--json", "store", "info").stdout)
    assert info["objects"] == 5 and info["roots"]["data"] == 1  # 4 files + the manifest
    assert run("--data", data, "store", "verify").stdout.startswith("checked 5 objects")
    du = run("--data", data, "store", "du").stdout
    assert "com.lecun.mnist  image" in du and "image/com/lecun/mnist" in du and "in 5 objects" in du
    assert run("--data", data, "store", "gc", "--grace", "0").stdout.startswith("deleted 0 objects")

    # corrupt one object: verify reports it, quarantines it, exits 1
    objects = sorted((tmp_path / "dm" / "store" / "objects").rglob("*"))
    victim = [p for p in objects if p.is_file()][0]
    victim.chmod(0o644)
    victim.write_bytes(b"corrupted")
    result = run("--data", data, "store", "verify", check=False)
    assert result.returncode == 1 and "CORRUPT" in result.stdout
    assert not victim.exists()
    # the next prepare repairs it by downloading again (or keeps the manifest, if that was the victim)
    run("--data", data, "download", "com.lecun.mnist")
    assert run("--data", data, "store", "verify").returncode == 0

    # a dataset whose folder is gone is collected
    import shutil

    shutil.rmtree(tmp_path / "dm" / "data" / "image")
    assert "deleted 5 objects" in run("--data", data, "store", "gc", "--grace", "0").stdout


def test_store_init_bad_group(tmp_path):
    result = run("--store", str(tmp_path / "s"), "store", "init", "--group", "no-such-group-here", check=False)
    assert result.returncode == 2
    assert "unknown Unix group 'no-such-group-here'" in result.stderr
    assert not (tmp_path / "s").exists()
