"""The published plugins (datamaestro-image, -ml, -text, -ir), installed from the package registry.

They are installed in a virtualenv of their own, so that they are not added to
the test environment, and that virtualenv uses the datamaestro of this
checkout, the one that pytest imports, whatever the test environment is (the
system interpreter, a virtualenv, uv's): it is created without the system
site-packages, and a ``.pth`` file adds the site directories of the test
interpreter (in the order of its ``sys.path``, after the virtualenv's own).
pip, run in that virtualenv, thus finds this datamaestro installed and is
asked for exactly its version, so that it never brings a datamaestro 1.x from
the registry as a dependency of the plugins (they declare
``datamaestro>=1.x`` with no upper bound). Before use, the virtualenv is asked
which datamaestro it imports: a cached one that does not import this one is
built again.

The plugins and what they require are installed by ``uv`` (of the test
extra), told to leave out every distribution the test interpreter already
has (``--excludes``): the virtualenv sees those through its ``.pth``, and
holds only what the plugins add (9 distributions, about 5 s, where pip took
about three minutes on a loaded machine). Then the virtualenv is asked
whether every requirement of the plugins, all the way down, is met by what
it sees; where one is not (the test environment holds a version a plugin
does not accept), or where there is no ``uv``, pip builds it as before.

The virtualenv is kept in ``~/.cache/datamaestro-tests/`` (or
``$DATAMAESTRO_TESTS_CACHE``) and reused by later runs; its name is a hash of
how it is built (``RECIPE``, the interpreter, its site directories, the
plugins). The test plugin of this repository also declares the namespace
``image``: there, the published ``datamaestro-image`` is used and the test
plugin is reported as shadowed.

Everything runs in subprocesses with that virtualenv's Python
(``tests/support/pluginprobe.py``), with the isolated settings and data dir of
the test.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import site
import subprocess
import sys
import time
from pathlib import Path

import pytest
from filelock import FileLock

import datamaestro
from support.mnistdata import write_mnist
from support.users import uv_command

pytestmark = pytest.mark.plugins

PLUGINS = ["datamaestro-image", "datamaestro-ml", "datamaestro-text", "datamaestro-ir"]
#: datamaestro-text's fr.granddebat module imports ijson without declaring it
EXTRAS = ["ijson"]
PROBE = Path(__file__).parent / "support" / "pluginprobe.py"
#: How the plugin virtualenv is built: part of its cache key, to change with
#: the way ``build_plugin_venv`` builds it (a virtualenv built otherwise is not reused)
RECIPE = "3: no system site-packages; a .pth adds the test interpreter's site dirs; uv leaving out what they hold, else pip with datamaestro pinned"

#: What the original datamaestro 1.16.1 lists (``datamaestro search``, with
#: datamaestro-image 2025.9.21.1, datamaestro-text 2026.4.22 and
#: ir_datasets 0.6.3): every dataset it declares must be listed here too.
ORIGINAL_COUNTS = {"image": 2, "text": 119, "irds": 2121}

#: Experimaestro identifiers of configs built by the original datamaestro.
#: Computed with datamaestro 1.16.1 in a virtualenv of its own
#: (``pip install datamaestro==1.16.1 datamaestro-image datamaestro-text``,
#: which brought experimaestro 2.7.0), by running::
#:
#:     import json, sys
#:     import datamaestro.definitions
#:     # datamaestro-image imports `argument`, which 1.16.1 no longer has (unused)
#:     if not hasattr(datamaestro.definitions, "argument"):
#:         datamaestro.definitions.argument = lambda *a, **k: (lambda cls: cls)
#:     from datamaestro import get_dataset
#:     print(json.dumps({i: {"identifier": get_dataset(i).__xpm__.identifier.all.hex(),
#:                           "id": get_dataset(i).id} for i in sys.argv[1:]}))
#:
#: with the four ids below as arguments. ``gov.nist.trec.adhoc.1`` is also
#: defined by datamaestro-ir here, hence the ``@text`` that names the
#: repository (the original had only datamaestro-text installed).
REFERENCE_IDENTIFIERS = {
    "com.lecun.mnist": ("239b864ac3293aa1f3dd14cd958784f9ff1e794525e8794794bc673adb873cf3", "com.lecun.mnist@image"),
    "edu.stanford.aclimdb": ("6da967bb42c8363a23743ced87903582d57dac1390b85ad69c7dce0e74c99302", "edu.stanford.aclimdb@text"),
    "com.microsoft.msmarco.passage.train.texttriple.full": (
        "e77e945069051958e879477b8174171f8c41dd68b481c3287d12ac5655375a7e",
        "com.microsoft.msmarco.passage.train.texttriple.full@text",
    ),
    "gov.nist.trec.adhoc.1@text": ("104c8a82b632554da9312ec2a079987c014a6c2fa735fd699ee081af5a1b56d3", "gov.nist.trec.adhoc.1@text"),
}


def cache_root() -> Path:
    """Where the virtualenv is kept between runs."""
    return Path(os.environ.get("DATAMAESTRO_TESTS_CACHE") or Path.home() / ".cache" / "datamaestro-tests")


def interpreter_site_dirs() -> list[str]:
    """The site directories of the test interpreter, in the order of its ``sys.path``.

    Those of a virtualenv (and the system's, where it sees them), the user's
    where it is enabled: where pip (or uv) installed this datamaestro and its
    dependencies. Their ``.pth`` files (an editable install's) are processed
    in the plugin virtualenv too.
    """
    candidates = [*site.getsitepackages()]
    if site.ENABLE_USER_SITE:
        candidates.append(site.getusersitepackages())
    found = [entry for entry in dict.fromkeys(sys.path) if entry in candidates]
    return found or [entry for entry in candidates if os.path.isdir(entry)]


def checkout_datamaestro() -> dict[str, str]:
    """The datamaestro that pytest imports: its package file and its installed version."""
    try:
        version = importlib.metadata.version("datamaestro")
    except importlib.metadata.PackageNotFoundError:
        pytest.fail("datamaestro is not installed in the test environment: run the README's `pip install -e .[test] ...` first")
    return {"file": str(Path(datamaestro.__file__).resolve()), "version": version}


def probe_environment(python: Path) -> dict | None:
    """What the plugin virtualenv imports (``None`` if its Python does not run)."""
    if not python.exists():
        return None
    try:
        result = subprocess.run(
            [str(python), str(PROBE), "environment", *PLUGINS],
            capture_output=True,
            text=True,
            timeout=120,
            env=plugin_environment(),
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    try:
        return json.loads(result.stdout.strip().splitlines()[-1]) if result.returncode == 0 else None
    except (ValueError, IndexError):
        return None


def venv_problem(found: dict | None, expected: dict[str, str]) -> str | None:
    """Why a plugin virtualenv is not the one to use (``None`` if it is)."""
    if found is None:
        return "its Python does not run"
    imported = found["datamaestro"]
    if imported["file"] is None:
        return f"it cannot import datamaestro ({imported['error']})"
    if str(Path(imported["file"]).resolve()) != expected["file"] or imported["version"] != expected["version"]:
        return f"it imports datamaestro {imported['version']} from {imported['file']}, not {expected['version']} from {expected['file']}"
    missing = [name for name, version in found["distributions"].items() if version is None]
    if missing:
        return f"it lacks {', '.join(missing)}"
    if found.get("unmet"):
        return f"its requirements are not met: {'; '.join(found['unmet'][:5])}"
    return None


def build_plugin_venv(folder: Path, site_dirs: list[str], expected: dict[str, str]) -> None:
    """Creates the virtualenv in ``folder`` and installs the published plugins there: with uv when it can, else with pip."""
    uv = uv_command()
    if uv is not None:
        _make_plugin_venv(folder, site_dirs, uv)
        excludes = folder / "installed-in-the-test-environment.txt"
        names = sorted({dist.metadata["Name"] for dist in importlib.metadata.distributions(path=site_dirs) if dist.metadata["Name"]})
        excludes.write_text("".join(f"{name}\n" for name in names))
        install = subprocess.run(
            [uv, "pip", "install", "--quiet", "--python", str(folder / "bin" / "python"), "--excludes", str(excludes), *PLUGINS, *EXTRAS],
            capture_output=True,
            text=True,
            timeout=1200,
        )
        problem = venv_problem(probe_environment(folder / "bin" / "python"), expected) if install.returncode == 0 else install.stderr[-3000:]
        if problem is None:
            return
        print(f"\nuv could not build the plugin virtualenv ({problem}): pip builds it")
    _make_plugin_venv(folder, site_dirs, None)
    _pip_install_plugins(folder, expected)


def _make_plugin_venv(folder: Path, site_dirs: list[str], uv: str | None) -> None:
    """A new virtualenv in ``folder`` (with pip unless ``uv`` makes it) whose ``.pth`` adds the test interpreter's site dirs."""
    shutil.rmtree(folder, ignore_errors=True)
    make = [uv, "venv", "--quiet", "--python", sys.executable, str(folder)] if uv else [sys.executable, "-m", "venv", str(folder)]
    subprocess.run(make, check=True)
    python = folder / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], capture_output=True, text=True, check=True
    ).stdout.strip()
    # one line, run at start-up: the test interpreter's site dirs, with their .pth files, after the
    # virtualenv's own (executed by `site` in a function's namespace: no comprehension, that would not see `site`)
    (Path(purelib) / "_datamaestro_tests_site.pth").write_text(f"import site; list(map(site.addsitedir, {site_dirs!r}))\n")


def _pip_install_plugins(folder: Path, expected: dict[str, str]) -> None:
    """Installs the plugins with the virtualenv's pip, which sees the test interpreter's distributions as installed."""
    python = folder / "bin" / "python"
    # the datamaestro of the test environment is installed there (pip sees it through the .pth): it
    # satisfies the plugins' requirement; were it not seen, pip fails (no such version in the registry)
    # rather than install a datamaestro 1.x beside the plugins
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", f"datamaestro=={expected['version']}", *PLUGINS, *EXTRAS],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    if install.returncode != 0:
        pytest.fail(f"cannot install the published plugins from the package registry:\n{install.stderr[-3000:]}")


@pytest.fixture(scope="session")
def plugin_python() -> Path:
    """The Python of a virtualenv with the published plugins and this datamaestro (created once, then reused)."""
    site_dirs = interpreter_site_dirs()
    expected = checkout_datamaestro()
    recipe = {"recipe": RECIPE, "python": sys.version, "prefix": sys.prefix, "site_dirs": site_dirs, "plugins": PLUGINS, "extras": EXTRAS}
    key = hashlib.sha256(json.dumps(recipe).encode()).hexdigest()[:12]
    folder = cache_root() / f"plugins-{key}"
    python = folder / "bin" / "python"
    ready = folder / "ready"
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        problem = "it does not exist"
        if ready.is_file():
            try:
                built = json.loads(ready.read_text())
            except ValueError:
                built = None
            problem = venv_problem(probe_environment(python), expected) if built == recipe else "it was built otherwise"
        if problem is not None:
            if folder.exists():
                print(f"\nrebuilding the plugin virtualenv {folder}: {problem}")
            build_plugin_venv(folder, site_dirs, expected)
            problem = venv_problem(probe_environment(python), expected)
            if problem is not None:
                pytest.fail(f"the plugin virtualenv {folder} is not usable: {problem}")
            ready.write_text(json.dumps(recipe))
    return python


def plugin_environment() -> dict[str, str]:
    """The test's environment, where the published datamaestro-image provides the namespace `image`.

    The test plugin, which the test session puts on ``PYTHONPATH``, is left
    out: this virtualenv holds the published plugins only.
    """
    from conftest import TEST_PLUGIN

    path = [entry for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep) if entry and entry != TEST_PLUGIN]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path), "DATAMAESTRO_REPOSITORIES": "image=datamaestro-image"}


def run_probe(python: Path, *arguments: str, timeout: float = 900) -> dict:
    """Runs tests/support/pluginprobe.py in the plugin virtualenv; returns its JSON output."""
    result = subprocess.run([str(python), str(PROBE), *arguments], capture_output=True, text=True, timeout=timeout, env=plugin_environment())
    assert result.returncode == 0, f"probe {arguments} failed:\n{result.stderr[-5000:]}"
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_cli(python: Path, *arguments: str) -> subprocess.CompletedProcess:
    """Runs ``datamaestro`` in the plugin virtualenv."""
    return subprocess.run([str(python), "-m", "datamaestro", *arguments], capture_output=True, text=True, timeout=600, env=plugin_environment())


def test_every_dataset_is_listed_described_and_builds_without_network(plugin_python):
    report = run_probe(plugin_python, "survey")
    repositories = report["repositories"]
    print(f"\nindex built in {report['index_seconds']:.1f}s")
    total = built = 0
    for name, stats in sorted(repositories.items()):
        if stats.get("error"):
            print(f"{name} ({stats['entry_point']}): {stats['error']}")
            continue
        total += stats["datasets"]
        built += stats["configs"]
        print(f"{name}: {stats['datasets']} datasets, info {stats['info']}, configs built {stats['configs']}")
        for failure in stats["failures"]:
            print(f"  FAILED {failure['id']}: {failure['reason']}")
    # the published image plugin is used; the test plugin (same namespace) is reported as shadowed
    assert repositories["image"]["entry_point"] == "datamaestro_image:Repository"
    shown = run_cli(plugin_python, "repositories")
    assert "datamaestro_testimage:Repository" not in shown.stdout or "shadowed" in shown.stdout, shown.stdout
    for name in ("image", "ml", "text", "irds", "ir"):
        assert repositories[name].get("datasets", 0) > 0, f"repository {name} lists no dataset"
    for name, count in ORIGINAL_COUNTS.items():
        assert repositories[name]["datasets"] >= count, f"{name}: the original lists {count} datasets"
    # `search` lists every one of them (through the CLI), from the index the survey built: a warm
    # search reads the index only, no dataset module, nor experimaestro or numpy, is imported
    # (how long it takes is the benchmarks' business: ``cli_startup`` measures it)
    command = [str(plugin_python), "-X", "importtime", "-m", "datamaestro", "--json", "search"]
    listed = subprocess.run(command, capture_output=True, text=True, timeout=600, env=plugin_environment())
    assert listed.returncode == 0, listed.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in listed.stderr.splitlines() if line.startswith("import time:")}
    heavy = sorted(m for m in imported if m.split(".")[0] in ("experimaestro", "numpy") or (m.startswith("datamaestro_") and ".config" in m))
    assert "datamaestro.registry" in imported and heavy == []
    by_repository: dict[str, int] = {}
    for entry in json.loads(listed.stdout):
        by_repository[entry["repository"]] = by_repository.get(entry["repository"], 0) + 1
    assert by_repository == {name: stats["datasets"] for name, stats in repositories.items() if stats.get("datasets")}
    # `info` through the CLI, on one dataset of each repository (the probe described all of them in-process)
    for entry_id in ("com.lecun.mnist", "edu.uci.boston", "edu.stanford.aclimdb@text", "gov.nist.trec.adhoc.1@ir", "irds.antique.train"):
        shown = run_cli(plugin_python, "info", entry_id)
        assert shown.returncode == 0 and "resources:" in shown.stdout, shown.stderr
    ratio = built / total
    print(f"configs built without network: {built}/{total} ({ratio:.2%})")
    assert ratio >= 0.98
    for name, stats in repositories.items():
        if stats.get("datasets"):
            assert stats["configs"] / stats["datasets"] >= 0.98, f"{name}: {stats['failures'][:5]}"


def test_identifiers_equal_the_original(plugin_python):
    found = run_probe(plugin_python, "identifiers", *REFERENCE_IDENTIFIERS)
    for dataset_id, (identifier, data_id) in REFERENCE_IDENTIFIERS.items():
        assert found[dataset_id]["id"] == data_id
        assert found[dataset_id]["identifier"] == identifier, dataset_id


def test_published_mnist_prepares_through_a_mirror(plugin_python, http_server):
    # MNIST-format files (full size) on the local server; the published URLs are mirrored to it
    write_mnist(http_server.root, 60000, 10000)
    settings = Path(os.environ["DATAMAESTRO_CONFIG"])
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(f'[mirrors]\n"https://ossci-datasets.s3.amazonaws.com/mnist/" = ["{http_server.base_url.rstrip("/")}/mnist/"]\n')
    result = run_probe(plugin_python, "mnist")
    assert result["shape"] == [60000, 28, 28]
    assert result["test_shape"] == [10000, 28, 28]
    assert result["module"].startswith("datamaestro_image.")
    data_dir = Path(os.environ["DATAMAESTRO_DIR"])
    assert Path(result["path"]) == data_dir / "data" / "image" / "com" / "lecun" / "mnist" / "train_images.idx"
    assert Path(result["resolved"]).is_relative_to((data_dir / "store" / "objects").resolve())
    assert any(path.startswith("/mnist/train-images") for _, path, _ in http_server.requests)
