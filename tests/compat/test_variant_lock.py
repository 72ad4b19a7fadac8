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
