"""The docs' examples, checked: their Python runs as shown, and their commands work with what the README installs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

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
