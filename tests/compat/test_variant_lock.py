"""The lock pins each variant of a family (``id[axis=value]``) on its own entry."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from datamaestro.api import add_datasets, lock_project, prepare_dataset
from datamaestro.context import Context
from datamaestro.registry import Registry

FAMILY = "org.texts.sizes"


@pytest.fixture
def family_context(mnist_server, tmp_path, monkeypatch):
    """A project whose context also sees the family repository (tests/familyplugin)."""
    from importlib.metadata import entry_points

    installed = sorted(entry_points(group="datamaestro.repositories"), key=lambda ep: ep.name)
    family = EntryPoint(name="family", value="familyplugin:FamilyRepository", group="datamaestro.repositories")
    monkeypatch.setattr(Registry, "entry_points", lambda self: [*installed, family])
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text('[project]\nname = "xp"\n')
    with Context(overrides={"data_dir": tmp_path / "data"}, progress=False, project_dir=project) as context:
        yield context


def test_each_variant_has_its_lock_entry(family_context):
    # canonical entries: the selector as data ids write it (sorted, defaults filled in)
    assert add_datasets([f"{FAMILY}[ size = large ]", FAMILY + "[size=small]"]) == [f"{FAMILY}[size=large]", f"{FAMILY}[size=small]"]
    assert add_datasets([f"{FAMILY}[size=large]"]) == []
    report = lock_project()
    lock = family_context.lockfile()
    assert set(lock.datasets) == {f"{FAMILY}[size=large]", f"{FAMILY}[size=small]"} and set(report.resolved) == set(lock.datasets)
    large = lock.datasets[f"{FAMILY}[size=large]"]
    # the variant's config points at the view its entry pins
    config = prepare_dataset(f"{FAMILY}[size=large]")
    assert config.size == "large" and config.id == f"{FAMILY}[size=large]@family"
    assert Path(config.path).parent == family_context.store.views.path_of(large.manifest)
    assert config.is_prepared()
    with pytest.raises(ValueError, match="not in axis domain"):
        add_datasets([f"{FAMILY}[size=huge]"])
    # locking again keeps both entries
    assert set(lock_project().kept) == set(lock.datasets)


def _family_plugin_path(root: Path) -> str:
    """A PYTHONPATH on which the family repository is installed (its entry point in a dist-info), for the console script."""
    info = root / "datamaestro_family-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: datamaestro-family\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[datamaestro.repositories]\nfamily = familyplugin:FamilyRepository\n")
    import os

    return os.pathsep.join([str(root), str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")])


def test_cli_prepare_of_a_variant_uses_its_lock_entry(mnist_server, tmp_path):
    """``datamaestro prepare 'family[axis=value]'`` gives the view the variant's entry pins, and checks its pins (cold and warm)."""
    import json
    import os
    import subprocess

    env = {**os.environ, "PYTHONPATH": _family_plugin_path(tmp_path / "plugin")}
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text('[project]\nname = "xp"\n')
    data = tmp_path / "data"

    def run(*args, status=0):
        done = subprocess.run(["datamaestro", "--data", str(data), *args], cwd=project, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == status, done.stderr
        return done

    large = f"{FAMILY}[size=large]"
    run("add", large)
    run("lock")
    with Context(overrides={"data_dir": data}, progress=False, project_dir=project) as context:
        manifest = context.lockfile().datasets[large].manifest
        view = context.store.views.path_of(manifest)
    for _ in ("cold", "warm"):
        config = json.loads(run("prepare", large).stdout)
        assert config["size"] == "large" and Path(config["path"]).parent == view
    # the variant's pins are checked: other bytes served, a new store, and the lock refuses them
    (mnist_server.root / "example" / "readme.txt").write_bytes(b"other bytes\n")
    refused = run("--store", str(tmp_path / "other-store"), "prepare", large, status=1)
    assert "the lock pins" in refused.stderr


def test_a_request_carries_the_variant_its_entry_and_its_location(family_context):
    """``Context.request`` resolves once: the variant's values, its entry id, the entry that pins it, the pinned view; frozen."""
    import dataclasses

    add_datasets([f"{FAMILY}[size=large]"])
    lock_project()
    request = family_context.request(f"{FAMILY}[ size = large ]")
    entry = family_context.lockfile().datasets[f"{FAMILY}[size=large]"]
    assert (request.definition.id, dict(request.variant), request.entry_id) == (FAMILY, {"size": "large"}, f"{FAMILY}[size=large]")
    assert request.locked == entry and request.pins == entry.pins()
    assert request.location.pinned_view == family_context.store.views.path_of(entry.manifest)
    # the family's default variant has no entry of its own, nor the family one: nothing pins it
    default = family_context.request(FAMILY)
    assert (default.entry_id, default.locked, default.location.pinned_view) == (f"{FAMILY}[size=small]", None, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.locked = None
