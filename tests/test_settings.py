"""Settings: precedence of sources, mirrors merging, and clear errors."""

from pathlib import Path

import pytest

from datamaestro.errors import SettingsError
from datamaestro.settings import load_settings, trust_project


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def user_file(monkeypatch, tmp_path, text: str) -> Path:
    path = write(tmp_path / "user" / "settings.toml", text)
    monkeypatch.setenv("DATAMAESTRO_CONFIG", str(path))
    return path


def test_defaults_follow_data_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("DATAMAESTRO_DIR")
    monkeypatch.setenv("HOME", str(tmp_path))
    settings, pyproject = load_settings(project_dir=tmp_path)
    assert settings.data_dir == tmp_path / "datamaestro"
    assert settings.store_path == tmp_path / "datamaestro" / "store"
    assert pyproject is None


def test_precedence_option_env_project_user(monkeypatch, tmp_path):
    user_file(monkeypatch, tmp_path, 'data = "/from/user"\nretries = 1\nread_timeout = 5\nstore = "/user/store"\n')
    write(tmp_path / "project" / "pyproject.toml", '[tool.datamaestro]\ndata = "/from/project"\nretries = 2\n')
    monkeypatch.setenv("DATAMAESTRO_DIR", "/from/env")
    project = tmp_path / "project" / "sub"
    project.mkdir()

    settings, pyproject = load_settings(project_dir=project)
    assert pyproject == tmp_path / "project" / "pyproject.toml"
    assert settings.data_dir == Path("/from/env")  # env beats project and user
    assert settings.retries == 2  # project beats user
    assert settings.read_timeout == 5  # user beats default
    assert settings.store_dir == Path("/user/store")

    settings, _ = load_settings({"data_dir": Path("/from/option"), "retries": None}, project_dir=project)
    assert settings.data_dir == Path("/from/option")  # option beats all
    assert settings.retries == 2  # None options do not override


def test_mirrors_merge_higher_first(monkeypatch, tmp_path):
    user_file(monkeypatch, tmp_path, '[mirrors]\n"http://a/" = ["http://user/"]\n"http://b/" = "http://userb/"\n')
    write(tmp_path / "pyproject.toml", '[tool.datamaestro.mirrors]\n"http://a/" = ["http://project/"]\n')
    trust_project(tmp_path / "pyproject.toml")  # a project's mirrors count once it is trusted
    settings, _ = load_settings(project_dir=tmp_path)
    assert settings.mirrors == {"http://a/": ["http://project/", "http://user/"], "http://b/": ["http://userb/"]}


def test_offline_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("DATAMAESTRO_OFFLINE", "yes")
    assert load_settings(project_dir=tmp_path)[0].offline is True
    monkeypatch.setenv("DATAMAESTRO_OFFLINE", "maybe")
    with pytest.raises(SettingsError, match="DATAMAESTRO_OFFLINE"):
        load_settings(project_dir=tmp_path)


@pytest.mark.parametrize(
    "text, message",
    [
        ("data = \n", "invalid TOML.*line 1"),
        ('colour = "blue"\n', "unknown setting 'colour'"),
        ("retries = -1\n", "'retries' must be a whole number"),
        ('read_timeout = "fast"\n', "'read_timeout' must be a positive number"),
        ('offline = "yes"\n', "'offline' must be true or false"),
        ('mirrors = "http://x/"\n', r"\[mirrors\] must be a table"),
        ('[mirrors]\n"http://x/" = [1]\n', "mirror 'http://x/'"),
    ],
)
def test_bad_user_settings(monkeypatch, tmp_path, text, message):
    path = user_file(monkeypatch, tmp_path, text)
    with pytest.raises(SettingsError, match=message) as info:
        load_settings(project_dir=tmp_path)
    assert str(path) in str(info.value)


def test_bad_project_table(tmp_path):
    write(tmp_path / "pyproject.toml", "[tool]\ndatamaestro = 3\n")
    with pytest.raises(SettingsError, match=r"\[tool.datamaestro\] must be a table"):
        load_settings(project_dir=tmp_path)


def test_network_settings_and_the_timeout_variable(tmp_path, monkeypatch):
    from datamaestro.settings import Settings, parse_table

    defaults = Settings()
    assert (defaults.timeout, defaults.read_timeout, defaults.connections, defaults.parallel_min_size, defaults.parallel_downloads) == (60.0, 20.0, 8, 64 << 20, 4)
    values = parse_table({"timeout": 5, "connections": 2, "parallel_min_size": 1024, "parallel_downloads": 1}, "test")
    assert values == {"timeout": 5.0, "connections": 2, "parallel_min_size": 1024, "parallel_downloads": 1}
    with pytest.raises(SettingsError, match="'connections' must be a whole number >= 1, got 0"):
        parse_table({"connections": 0}, "test")
    monkeypatch.setenv("DATAMAESTRO_TIMEOUT", "7.5")
    settings, _ = load_settings(project_dir=tmp_path)
    assert settings.timeout == 7.5
    # the command line beats the environment
    assert load_settings({"timeout": 3.0}, project_dir=tmp_path)[0].timeout == 3.0
