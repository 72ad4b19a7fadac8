import os, re
from pathlib import Path
import pytest
from support.lockproject import dm, lock_project, make_project, served  # noqa

MNIST = "com.lecun.mnist"
BUNDLE = "org.pinned.bundle"

def cuts(text):
    last_ds = text.rindex("[[dataset]]")
    return {
        
        
        
        
        "lines-lost": text[: text.rindex('digest = "')],
        "size-digits": re.sub(r"(size = \d+)\d\d\n(?![\s\S]*size = )", r"\1\n", text),
    }

def test_probe(served, tmp_path):
    project = lock_project(make_project(tmp_path / "project"), tmp_path / "a", MNIST, BUNDLE)
    lock_file = project / "datamaestro.lock"
    original = lock_file.read_text()
    print(original[-700:])
    for name, text in cuts(original).items():
        lock_file.write_text(text)
        for cmd in (["lock", "--check"], ["sync", "--frozen"], ["prepare", BUNDLE], ["prepare", MNIST]):
            fresh = tmp_path / (name + "_".join(cmd).replace("-", ""))
            r = dm(project, *cmd, data=fresh, check=False)
            print(f"== {name} {' '.join(cmd)} rc={r.returncode} :: {(r.stderr.strip().splitlines() or [''])[0][:200]} | {'TRACEBACK' if 'Traceback' in r.stderr else ''}")
    lock_file.write_text(original)
