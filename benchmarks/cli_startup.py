"""CLI start-up: ``datamaestro --help`` and ``datamaestro search mnist``, against datamaestro 1.16.1.

Each side runs in a virtualenv of its own under the work folder, so that
both pay the same interpreter and site-packages start-up: the original from
PyPI (``venv-original``: ``pip install datamaestro==1.16.1``), this one from
the working tree (``venv-new``: ``pip install -e <repo>``). Both are created
on the first run, the only time the network is used.

Then both search again with 1,000 generated decorator-style datasets in
~50 modules installed (``gen_plugin``, distribution ``datamaestro-benchgen``,
written so that both versions load it). This datamaestro searches a cached
index: warm runs are measured after one priming run for both tools, and
the cold run (no index yet: every module imported) is reported apart.

Every run gets its own data dir, settings file and ``HOME`` under the work
folder, and proxies to a closed port: nothing reads the user's data and the
searches cannot use the network.

With ``--offline`` and the virtualenvs not made yet (they need PyPI), only
this datamaestro is timed, as ``python -m datamaestro`` of the running
interpreter (with whatever plugins it has); the original's figures and the
1,000-dataset search (installed with pip) are reported as skipped.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from benchmarks._common import REPO_ROOT, Row, compare, fresh_dir, isolated_env, median, run_checked, skipped, time_command

NAME = "cli_startup"
ORIGINAL = "datamaestro==1.16.1"
GEN_DISTRIBUTION = "datamaestro-benchgen"
GEN_PACKAGE = "datamaestro_benchgen"
#: groups x modules per group x datasets per module = 1,000 datasets in 50 modules
GROUPS, MODULES, PER_MODULE = 5, 10, 20
#: bump when the generated plugin changes, so that an old copy is rewritten
GEN_FORMAT = "1"


# -- virtualenvs


def venv_python(venv: Path) -> Path:
    """The interpreter of a virtualenv."""
    return venv / "bin" / "python"


def _venv_requirement(requirement: list[str]) -> list[str]:
    # wheel: the venv's setuptools builds the generated plugin with it (see set_plugin), in both venvs alike
    return [*requirement, "wheel"]


def venv_ready(venv: Path, requirement: list[str]) -> bool:
    """True when :func:`ensure_venv` has nothing to install (no network needed)."""
    marker = venv / ".bench-ready"
    return marker.is_file() and marker.read_text() == " ".join(_venv_requirement(requirement)) and venv_python(venv).exists()


def ensure_venv(venv: Path, requirement: list[str]) -> Path:
    """A virtualenv with ``pip install <requirement>`` done (created once, kept while the requirement is the same)."""
    if venv_ready(venv, requirement):
        return venv
    marker = venv / ".bench-ready"
    requirement = _venv_requirement(requirement)
    fresh_dir(venv)
    env = isolated_env(venv.parent / "home-pip")
    # pip needs the network (PyPI): no dead proxy for it
    for name in [k for k in env if k.lower().endswith("_proxy")]:
        del env[name]
    env["HOME"] = str(Path.home())  # pip's own cache and configuration
    run_checked([sys.executable, "-m", "venv", str(venv)], env=env)
    run_checked([str(venv_python(venv)), "-m", "pip", "install", "-q", "--disable-pip-version-check", *requirement], env=env)
    marker.write_text(" ".join(requirement))
    return venv


def set_plugin(venv: Path, plugin: Path, installed: bool) -> None:
    """Installs (editable, no dependencies) or removes the generated plugin in a virtualenv."""
    python = str(venv_python(venv))
    present = any(venv.glob(f"lib/python*/site-packages/{GEN_PACKAGE}-*.dist-info"))
    if present == installed:
        return
    pip = [python, "-m", "pip", "-q", "--disable-pip-version-check"]
    if installed:
        # no build isolation: the venv's setuptools builds it, without the network
        run_checked([*pip, "install", "--no-deps", "--no-build-isolation", "-e", str(plugin)])
    else:
        run_checked([*pip, "uninstall", "-y", GEN_DISTRIBUTION])


# -- the generated plugin


def _dataset_source(number: int) -> str:
    name = f"ds{number:04d}"
    return f'''
@filedownloader("f.txt", "http://127.0.0.1:9/x/f.txt")
@dataset(File, url="http://example.org/{name}")
def {name}(f):
    """Generated dataset {number:04d}

    Dataset number {number} of the search benchmark: one text file, which is
    never downloaded. Its words are not those anybody searches for.
    """
    return {{"path": f}}
'''


def generate_plugin(root: Path) -> Path:
    """Writes the ``datamaestro-benchgen`` project (1,000 datasets), unless already there."""
    marker = root / ".bench-format"
    if marker.is_file() and marker.read_text() == GEN_FORMAT:
        return root
    fresh_dir(root)
    (root / "pyproject.toml").write_text(
        f"""[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "{GEN_DISTRIBUTION}"
version = "1.0.0"
description = "1,000 generated datasets for datamaestro's CLI benchmark"

[project.entry-points."datamaestro.repositories"]
benchgen = "{GEN_PACKAGE}:Repository"

[tool.setuptools.packages.find]
include = ["{GEN_PACKAGE}*"]
"""
    )
    package = root / GEN_PACKAGE
    package.mkdir()
    (package / "__init__.py").write_text(
        '"""Generated repository: 1,000 datasets in the decorator style of the published plugins."""\n\n'
        "import datamaestro\n\n\n"
        "class Repository(datamaestro.Repository):\n"
        '    """1,000 generated datasets."""\n\n'
        '    NAMESPACE = "benchgen"\n'
        '    DESCRIPTION = "Generated datasets for benchmarks"\n'
    )
    header = (
        '"""Generated datasets."""\n\n'
        "from datamaestro.data import File\n"
        "from datamaestro.definitions import dataset\n"
        "from datamaestro.download.single import filedownloader\n"
    )
    base = package / "config" / "org" / "benchgen"
    for folder in (package / "config", package / "config" / "org", base):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "__init__.py").write_text("")
    number = 0
    for group in range(GROUPS):
        folder = base / f"g{group}"
        folder.mkdir()
        (folder / "__init__.py").write_text("")
        for module in range(MODULES):
            sources = []
            for _ in range(PER_MODULE):
                sources.append(_dataset_source(number))
                number += 1
            (folder / f"m{module}.py").write_text(header + "\n".join(sources))
    marker.write_text(GEN_FORMAT)
    return root


# -- measuring


class Side:
    """One datamaestro (original or new): its console script and an isolated environment."""

    def __init__(self, label: str, venv: Path | None, home: Path):
        self.label = label
        # no virtualenv: the running interpreter's datamaestro (--offline)
        self.command = [str(venv / "bin" / "datamaestro")] if venv else [sys.executable, "-m", "datamaestro"]
        self.home = fresh_dir(home)
        self.env = isolated_env(home)

    def time(self, args: list[str]) -> float:
        """Wall time of one run of the CLI (a search that matches nothing exits 1: it is timed all the same)."""
        return time_command([*self.command, *args], env=self.env, cwd=self.home, ok=(0, 1) if args[:1] == ["search"] else (0,))

    def output(self, args: list[str]) -> str:
        """The standard output of one run."""
        return run_checked([*self.command, *args], env=self.env, cwd=self.home).stdout

    def drop_index(self) -> None:
        """Removes this datamaestro's dataset index and all it caches of the installed code (the next search rebuilds them)."""
        shutil.rmtree(self.home / "datamaestro" / "cache", ignore_errors=True)
        shutil.rmtree(Path(self.env["XDG_CACHE_HOME"]) / "datamaestro", ignore_errors=True)


def alternate(new: Side, original: Side, args: list[str], runs: int) -> tuple[list[float], list[float]]:
    """Wall times of ``runs`` runs of each side, taken in turns so that a busy moment hits both alike."""
    times = [(new.time(args), original.time(args)) for _ in range(runs)]
    return [t[0] for t in times], [t[1] for t in times]


def _compare(measure: str, times: tuple[list[float], list[float]], limit: float, target: str, note: str) -> Row:
    new, original = times
    return compare(NAME, measure, median(new), median(original), "s", note, target=target, met=lambda ratio: ratio <= limit)


#: the measures, with their targets (None: context, no target)
HELP = ("`datamaestro --help`", "≤ 0.33")
SEARCH = ("`datamaestro search mnist`, no dataset installed", "≤ 0.5")
SEARCH_MANY = ("`datamaestro search mnist`, 1,000 datasets installed (warm)", "≤ 0.5")
SEARCH_COLD = ("`datamaestro search mnist`, 1,000 datasets, cold index", "")


def run_offline(work: Path, runs: int) -> list[Row]:
    """This datamaestro alone, from the running interpreter; what needs PyPI is reported as skipped."""
    new = Side("new", None, work / "home-cli" / "offline")
    reason = f"--offline: the virtualenv of {ORIGINAL} needs PyPI"
    how = f"median of {runs} runs of `python -m datamaestro` (the running interpreter and its plugins)"
    rows = []
    for (measure, target), args in ((HELP, ["--help"]), (SEARCH, ["search", "mnist"])):
        new.time(args)  # bytecode compiled, files in the page cache
        value = median([new.time(args) for _ in range(runs)])
        rows.append(Row(NAME, measure.replace(", no dataset installed", ""), value, target=target, unit="s", note=f"{how}; reference skipped: {reason}", skipped=reason))
    reason = "--offline: installing the 1,000 generated datasets into the virtualenvs needs pip and PyPI"
    return rows + [skipped(NAME, measure, reason, target=target) for measure, target in (SEARCH_MANY, SEARCH_COLD)]


def run(work: Path, quick: bool, offline: bool = False) -> list[Row]:
    """Measures --help and search for both versions, without and with 1,000 datasets.

    :param offline: without the virtualenvs already made, time only this
        datamaestro and skip what needs PyPI
    """
    runs = 3 if quick else 10
    if offline and not (venv_ready(work / "venv-original", [ORIGINAL]) and venv_ready(work / "venv-new", ["-e", str(REPO_ROOT)])):
        return run_offline(work, runs)
    original_venv = ensure_venv(work / "venv-original", [ORIGINAL])
    new_venv = ensure_venv(work / "venv-new", ["-e", str(REPO_ROOT)])
    plugin = generate_plugin(work / "gen_plugin")
    for venv in (original_venv, new_venv):
        set_plugin(venv, plugin, installed=False)

    new = Side("new", new_venv, work / "home-cli" / "new")
    original = Side("original", original_venv, work / "home-cli" / "original")
    how = f"median of {runs} runs, alternating, each version in its own virtualenv (console script `datamaestro`)"
    help_args, search_args = ["--help"], ["search", "mnist"]
    alternate(new, original, help_args, 1)  # bytecode compiled, files in the page cache
    rows = [_compare(HELP[0], alternate(new, original, help_args, runs), 1 / 3, HELP[1], how)]
    alternate(new, original, search_args, 1)
    note = how + "; no repository installed in either virtualenv"
    rows.append(_compare(SEARCH[0], alternate(new, original, search_args, runs), 1 / 2, SEARCH[1], note))

    for venv in (original_venv, new_venv):
        set_plugin(venv, plugin, installed=True)
    # priming: bytecode of the 50 modules for both, and this datamaestro's index
    original_found = original.output(["search", "org.benchgen"]).count("org.benchgen")
    new_found = new.output(["search", "org.benchgen"]).count("org.benchgen")
    if original_found != GROUPS * MODULES * PER_MODULE or new_found != original_found:
        raise RuntimeError(f"the generated datasets are not all found: original {original_found}, new {new_found}")
    warm = alternate(new, original, search_args, runs)
    note = how + f"; after a priming run (both found all {new_found} datasets); this datamaestro reads its cached index"
    rows.append(_compare(SEARCH_MANY[0], warm, 1 / 2, SEARCH_MANY[1], note))
    cold = []
    for _ in range(1 if quick else 3):
        new.drop_index()
        cold.append(new.time(search_args))
    new.output(["search", "org.benchgen"])  # the index again (a search that matches: no match exits 1)
    rows.append(
        compare(
            NAME,
            SEARCH_COLD[0],
            median(cold),
            median(warm[1]),
            "s",
            f"median of {len(cold)} runs with the index cache removed before each (every module imported, the index "
            "rebuilt); reference: the original's warm search, which imports every module on every run",
        )
    )
    return rows
