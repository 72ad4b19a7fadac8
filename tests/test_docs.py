"""The docs' examples, checked: their Python runs as shown, and their commands work with what the README installs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from test_plugins import plugin_python  # noqa: F401 (fixture: the published plugins in a virtualenv of their own)

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def python_block_after(path: Path, heading: str) -> str:
    """The first ```python block of ``path`` after ``heading``."""
    section = path.read_text().split(heading, 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_derived_example_runs_as_shown():
    code = python_block_after(DOCS / "writing-definitions.md", "## Your own derivation")
    # as a module of its own: every name it uses must be imported by the example itself
    checked = subprocess.run([sys.executable, "-c", code + "\nprint(Tokens.__name__)"], capture_output=True, text=True, timeout=120, cwd=DOCS)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.strip() == "Tokens"


# -- the docs' commands, with what the README installs

#: the pages a user reads (errors.md is the tests' catalogue, testing.md and benchmarks.md are about the tests)
PAGES = [ROOT / "README.md", *(DOCS / name for name in ("getting-started.md", "reproducible-data.md", "store.md", "remote-cache.md", "configuration.md", "plugins.md", "writing-definitions.md"))]
#: commands whose argument is a dataset id (or an alias)
TAKES_ID = {"add", "remove", "prepare", "info", "rm", "download", "why", "--upgrade"}
#: options of `store push` followed by a value, which is no dataset id
TAKES_VALUE = {"--sign", "--jobs", "-j"}
#: read-only commands, run as the docs show them
READ_ONLY = {"search", "info", "repositories", "--version", "version"}
_ID = re.compile(r"^[a-z0-9][a-z0-9_-]*(\.[a-z0-9_-]+)*(@[a-z0-9_-]+)?$")
#: a word that stands for what the reader gives (ID, FILE, [ID], family.id[axis=value])
_PLACEHOLDER = re.compile(r"^\[|^[A-Z]+$|family\.id")
#: a page says, near a command, that it needs the test plugin or another published plugin than the README's
_TEST_PLUGIN = re.compile(r"test plugin|datamaestro-(text|ml|ir)\b", re.I)


def doc_commands() -> list[tuple[str, list[str], bool]]:
    """Every ``datamaestro ...`` command of the pages, in code blocks and inline code: (where, arguments, needs another plugin).

    A command needs another plugin than the README's when the page says so
    on its line or the two before (``test plugin``, ``datamaestro-text``).
    """""
    import shlex

    found = []
    for page in PAGES:
        lines = page.read_text().splitlines()
        fenced = shell = False
        for number, line in enumerate(lines, 1):
            if line.lstrip().startswith("```"):
                # a shell block holds commands; another (toml, python) holds none
                fenced = not fenced
                shell = fenced and line.strip().strip("`") in ("", "bash", "sh", "console", "shell")
                continue
            if fenced and not shell:
                continue
            texts = [line.split("  #", 1)[0].strip()] if fenced else re.findall(r"`(datamaestro [^`]+)`", line)
            for text in texts:
                if not text.startswith("datamaestro ") or "…" in text or "..." in text:
                    continue
                try:
                    words = shlex.split(text)[1:]
                except ValueError:
                    continue
                nearby = " ".join(lines[max(0, number - 3) : number + 1])
                found.append((f"{page.relative_to(ROOT)}:{number}", words, bool(_TEST_PLUGIN.search(nearby))))
    return found


def named_ids(words: list[str]) -> list[str]:
    """The dataset ids (or aliases) a command's arguments name."""
    ids = []
    for before, word in zip(["", *words], words):
        if before in TAKES_ID and _ID.match(word) and word.upper() != word:
            ids.append(word)
    if words[:2] == ["store", "push"]:
        # store push REMOTE ID... (not the value of an option: --sign FILE, --jobs N)
        ids += [word for before, word in zip(words[2:], words[3:]) if _ID.match(word) and "." in word and before not in TAKES_VALUE]
    return ids


def test_the_docs_show_commands():
    commands = doc_commands()
    assert len(commands) > 40
    assert any(words[:2] == ["add", "com.lecun.mnist"] for _, words, _ in commands)


@pytest.mark.plugins
def test_every_command_of_the_docs_works_with_what_the_readme_installs(plugin_python, tmp_path):  # noqa: F811
    from test_plugins import run_cli

    listed = run_cli(plugin_python, "--json", "search")
    assert listed.returncode == 0, listed.stderr
    # what the README's first line installs: datamaestro-image (the namespace `image`)
    known = {name for entry in json.loads(listed.stdout) if entry["repository"] == "image" for name in (entry["id"], *entry.get("aliases", []), f"{entry['id']}@image")}
    assert "com.lecun.mnist" in known
    unknown = [f"{where}: {name}" for where, words, test_plugin in doc_commands() if not test_plugin for name in named_ids(words) if name not in known]
    assert unknown == [], "ids the published plugins do not provide (name the test plugin next to the command, or use a published id):\n" + "\n".join(unknown)
    # run as shown: the read-only commands, and those that edit a project's list (in a project of the test's)
    from support.lockproject import make_project
    from test_plugins import plugin_environment

    project = make_project(tmp_path / "project")
    failed, ran = [], 0
    for where, words, test_plugin in doc_commands():
        command = [word for word in words if word not in ("--json",)]
        if test_plugin or not command or any(_PLACEHOLDER.search(word) for word in command):
            continue
        if command[0] in READ_ONLY:
            shown = run_cli(plugin_python, *words)
        elif command[0] in ("add", "remove"):
            shown = subprocess.run([str(plugin_python), "-m", "datamaestro", *words], cwd=project, capture_output=True, text=True, timeout=600, env=plugin_environment())
        else:
            continue
        ran += 1
        if shown.returncode != 0:
            failed.append(f"{where}: datamaestro {' '.join(words)}: exit {shown.returncode}: {shown.stderr.strip()[-300:]}")
    assert failed == [], "\n".join(failed)
    assert ran >= 10
