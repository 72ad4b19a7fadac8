"""Fixtures for tests that run datamaestro: an isolated data dir, store and context."""

from __future__ import annotations

import pytest

from datamaestro.context import Context


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path_factory, monkeypatch):
    """No test reads the user's settings or data: every location points into tmp."""
    home = tmp_path_factory.mktemp("home")
    (home / "settings.toml").touch()  # DATAMAESTRO_CONFIG must name a file that exists
    monkeypatch.setenv("DATAMAESTRO_CONFIG", str(home / "settings.toml"))
    monkeypatch.setenv("DATAMAESTRO_DIR", str(home / "datamaestro"))
    monkeypatch.setenv("DATAMAESTRO_CACHE", str(home / "cache"))
    monkeypatch.delenv("DATAMAESTRO_STORE", raising=False)
    monkeypatch.delenv("DATAMAESTRO_OFFLINE", raising=False)
    # the test plugin (on the path, see tests/conftest.py) declares the namespace
    # `image`, as the published datamaestro-image does: where both are seen, the tests use theirs
    monkeypatch.setenv("DATAMAESTRO_REPOSITORIES", "image=datamaestro-testimage")
    Context.set_instance(None)
    yield
    Context.set_instance(None)


@pytest.fixture
def dm_context(tmp_path):
    """A current Context on a fresh data dir (``tmp_path/data``), no progress bars."""
    with Context(overrides={"data_dir": tmp_path / "data"}, progress=False, project_dir=tmp_path) as context:
        yield context
