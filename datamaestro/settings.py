"""Settings: user file, project table, environment and command line.

Precedence, highest first: command-line option > environment variable >
project (``[tool.datamaestro]`` in the nearest ``pyproject.toml``) > user
settings file (``$DATAMAESTRO_CONFIG``, else ``<config dir>/settings.toml``)
> default. Mirrors are merged across sources, the higher source's prefixes
tried first.
"""

from __future__ import annotations

import logging
import math
import os
import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .errors import SettingsError

ENV_DATA_DIR = "DATAMAESTRO_DIR"
ENV_STORE_DIR = "DATAMAESTRO_STORE"
ENV_CONFIG = "DATAMAESTRO_CONFIG"
ENV_OFFLINE = "DATAMAESTRO_OFFLINE"
ENV_LEASE_TTL = "DATAMAESTRO_LEASE_TTL"
ENV_TIMEOUT = "DATAMAESTRO_TIMEOUT"
ENV_REMOTES = "DATAMAESTRO_REMOTES"
ENV_MIRRORS = "DATAMAESTRO_MIRRORS"
ENV_CACHE = "DATAMAESTRO_CACHE"

logger = logging.getLogger(__name__)

#: settings of a project's [tool.datamaestro] that say where bytes come from or go, or how much may be
#: written: used only once the user trusts the project (`datamaestro trust`), since a cloned repository is
#: someone else's file (a data folder mapped to ~/.ssh, or bounds lifted so that a bomb fills the disk)
TRUST_KEYS = ("remotes", "mirrors", "store", "data", "agreements", "datafolders", "max_expanded_size", "max_expansion_ratio")
#: the user settings' table of trusted projects: pyproject path -> blake3 digest of its bytes when trusted
TRUSTED_TABLE = "trusted_projects"

TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class Settings:
    """Resolved settings of one datamaestro session.

    :param data_dir: where readable dataset paths live (``data/<repo>/...``)
    :param store_dir: the content-addressed store (``None``: ``<data_dir>/store``)
    :param offline: never touch the network; fail with the missing URLs
    :param mirrors: URL prefix -> replacement prefixes, tried in order before
        the original URL
    :param connect_timeout: seconds to wait for a connection
    :param read_timeout: seconds to wait between two received chunks (one try)
    :param retries: attempts after the first one, on 5xx, timeouts and broken connections
    :param timeout: seconds a source may go without sending a byte, retries
        included, before it is given up (and its host left out for the session)
    :param connections: connections of a parallel (range) download; 1 never splits
    :param parallel_downloads: independent downloads of a dataset run at once (1: one after another)
    :param parallel_min_size: files at least this large (bytes) are
        downloaded in parts when the server serves ranges
    :param lock_timeout: seconds to wait for another process holding a store lock
    :param lease_ttl: seconds without a heartbeat after which a lease held by a
        process on another machine is taken as dead (shared stores)
    :param keep_downloads: keep downloaded archives in the store after extraction
    :param datafolders: name -> folder that a user provides by hand
    :param agreements: user-agreement id -> accepted (``datamaestro`` asks once)
    :param remotes: name -> ``{"url": ..., "endpoint": ..., "trusted_keys": [...], "signing_key": ...}``:
        remote caches looked up before the original URLs (see ``docs/remote-cache.md``)
    :param max_expanded_size: the most bytes one download may expand to
        (decompressed, or an archive's extracted files)
    :param max_expansion_ratio: the most bytes one download may expand to per
        byte downloaded (a download counts as at least 1 MiB)
    """

    data_dir: Path = field(default_factory=lambda: Path.home() / "datamaestro")
    store_dir: Path | None = None
    offline: bool = False
    mirrors: dict[str, list[str]] = field(default_factory=dict)
    connect_timeout: float = 10.0
    read_timeout: float = 20.0
    retries: int = 5
    timeout: float = 60.0
    connections: int = 8
    parallel_downloads: int = 4
    parallel_min_size: int = 64 << 20
    lock_timeout: float = 3600.0
    lease_ttl: float = 30.0
    keep_downloads: bool = False
    datafolders: dict[str, Path] = field(default_factory=dict)
    agreements: dict[str, bool] = field(default_factory=dict)
    remotes: dict[str, dict[str, str]] = field(default_factory=dict)
    max_expanded_size: int = 1 << 40
    max_expansion_ratio: float = 250.0

    @property
    def store_path(self) -> Path:
        """The store folder, defaulting to ``<data_dir>/store``."""
        return self.store_dir if self.store_dir is not None else self.data_dir / "store"


# Keys accepted in a settings file or a [tool.datamaestro] table, with the
# parser of their value. ``datasets`` belongs to the project and is read by
# the lock; it is accepted here so that the table validates as a whole.
def _path(value: Any, key: str, origin: str) -> Path:
    if not isinstance(value, str) or not value:
        raise SettingsError(f"{origin}: {key!r} must be a non-empty string (a path), got {value!r}")
    return Path(value).expanduser()


def _bool(value: Any, key: str, origin: str) -> bool:
    if not isinstance(value, bool):
        raise SettingsError(f"{origin}: {key!r} must be true or false, got {value!r}")
    return value


def _number(value: Any, key: str, origin: str) -> float:
    # nan and inf are refused: a deadline of nan is never reached (a lease never expires), one of inf waits for ever
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise SettingsError(f"{origin}: {key!r} must be a positive number, got {value!r}")
    return float(value)


def _count(value: Any, key: str, origin: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SettingsError(f"{origin}: {key!r} must be a whole number >= 0, got {value!r}")
    return value


def mirror_target(target: str) -> str:
    """A mirror's replacement as a URL: a plain path is a folder of this machine (``file://``).

    ``~`` is expanded and a relative path is taken from the current folder,
    as for ``data`` and ``store``. Example: ``/srv/mirror/`` gives
    ``file:///srv/mirror/``.
    """
    if "://" in target:
        return target
    folder = target.endswith(("/", os.sep))
    url = Path(target).expanduser().absolute().as_uri()
    return url + "/" if folder and not url.endswith("/") else url


def normalise_mirrors(mirrors: dict[str, list[str]]) -> dict[str, list[str]]:
    """Mirrors with plain paths made ``file://`` URLs, and prefix and replacement agreeing on a trailing ``/``.

    A prefix and a replacement of which only one ends with ``/`` name
    folders: both get the ``/``, so that ``"https://a.org/data" =
    "/srv/mirror/"`` maps ``https://a.org/data/x.gz`` to
    ``file:///srv/mirror/x.gz`` (not ``…/mirror//x.gz``, nor
    ``…/mirrorx.gz`` the other way round). Prefixes that become equal are merged, in order.
    """
    result: dict[str, list[str]] = {}
    for prefix, targets in mirrors.items():
        targets = [mirror_target(t) for t in targets]
        folder = prefix.endswith("/") or any(t.endswith("/") for t in targets)
        if folder:
            prefix = prefix if prefix.endswith("/") else prefix + "/"
            targets = [t if t.endswith("/") else t + "/" for t in targets]
        merged = result.setdefault(prefix, [])
        merged.extend(t for t in targets if t not in merged)
    return result


def _positive_count(value: Any, key: str, origin: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SettingsError(f"{origin}: {key!r} must be a whole number >= 1, got {value!r}")
    return value


def _mirrors(value: Any, key: str, origin: str) -> dict[str, list[str]]:
    if not isinstance(value, dict):
        raise SettingsError(f"{origin}: [{key}] must be a table of URL prefix = [replacements]")
    result = {}
    for prefix, targets in value.items():
        if isinstance(targets, str):
            targets = [targets]
        if not isinstance(targets, list) or not all(isinstance(t, str) and t for t in targets):
            raise SettingsError(
                f"{origin}: mirror {prefix!r} must be a URL prefix or a list of them, got {targets!r}"
            )
        if "://" not in prefix:
            raise SettingsError(
                f"{origin}: mirror prefix {prefix!r} is not a URL",
                hint='a mirror maps the start of the original URLs to a copy: "https://example.org/data/" = "/srv/mirror/data/"',
            )
        result[prefix] = list(targets)
    return normalise_mirrors(result)


def _folders(value: Any, key: str, origin: str) -> dict[str, Path]:
    if not isinstance(value, dict):
        raise SettingsError(f"{origin}: [{key}] must be a table of name = path")
    return {name: _path(path, f"{key}.{name}", origin) for name, path in value.items()}


def _agreements(value: Any, key: str, origin: str) -> dict[str, bool]:
    if not isinstance(value, dict) or not all(isinstance(v, bool) for v in value.values()):
        raise SettingsError(f"{origin}: [{key}] must be a table of agreement id = true or false")
    return dict(value)


REMOTE_KEYS = ("url", "endpoint", "trusted_keys", "signing_key")
#: a public key of ``trusted_keys``: NAME:BASE64 of 32 bytes (checked again, with the library, when the remote is opened)
PUBLIC_KEY_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}:[A-Za-z0-9+/]{43}=$")


def _remotes(value: Any, key: str, origin: str) -> dict[str, dict[str, str]]:
    if not isinstance(value, dict):
        raise SettingsError(f"{origin}: [{key}] must be a table of [{key}.NAME] tables", hint='[remotes.lab]\nurl = "s3://lab-datasets/datamaestro"')
    remotes = {}
    for name, table in value.items():
        if not isinstance(table, dict) or not isinstance(table.get("url"), str) or not table["url"]:
            raise SettingsError(f"{origin}: [{key}.{name}] needs url = \"s3://bucket/prefix\" (or file://, http(s)://, gs://, az://)")
        unknown = sorted(set(table) - set(REMOTE_KEYS))
        if unknown:
            raise SettingsError(f"{origin}: [{key}.{name}] has unknown keys {unknown}", hint=f"known keys: {', '.join(REMOTE_KEYS)}")
        if "endpoint" in table and (not isinstance(table["endpoint"], str) or not table["endpoint"].startswith(("http://", "https://"))):
            raise SettingsError(f"{origin}: [{key}.{name}] endpoint must be an http(s):// URL, got {table['endpoint']!r}")
        if "trusted_keys" in table and (
            not isinstance(table["trusted_keys"], list) or not all(isinstance(k, str) and PUBLIC_KEY_PATTERN.match(k) for k in table["trusted_keys"])
        ):
            raise SettingsError(
                f"{origin}: [{key}.{name}] trusted_keys must be a list of public keys NAME:BASE64, got {table['trusted_keys']!r}",
                hint="the last line `datamaestro store key generate NAME` printed, e.g. trusted_keys = [\"lab-ci:...\"]",
            )
        if "signing_key" in table and (not isinstance(table["signing_key"], str) or not table["signing_key"]):
            raise SettingsError(f"{origin}: [{key}.{name}] signing_key must be the path of a secret key file, got {table['signing_key']!r}")
        remotes[name] = {k: table[k] for k in REMOTE_KEYS if k in table}
    return remotes


def _trusted(value: Any, key: str, origin: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise SettingsError(f"{origin}: [{key}] must be a table of pyproject path = digest (written by `datamaestro trust`)")
    return dict(value)


def _datasets(value: Any, key: str, origin: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SettingsError(f"{origin}: {key!r} must be a list of dataset ids")
    return value


PARSERS = {
    "data": ("data_dir", _path),
    "store": ("store_dir", _path),
    "offline": ("offline", _bool),
    "mirrors": ("mirrors", _mirrors),
    "connect_timeout": ("connect_timeout", _number),
    "read_timeout": ("read_timeout", _number),
    "retries": ("retries", _count),
    "timeout": ("timeout", _number),
    "connections": ("connections", _positive_count),
    "parallel_downloads": ("parallel_downloads", _positive_count),
    "parallel_min_size": ("parallel_min_size", _positive_count),
    "lock_timeout": ("lock_timeout", _number),
    "lease_ttl": ("lease_ttl", _number),
    "keep_downloads": ("keep_downloads", _bool),
    "datafolders": ("datafolders", _folders),
    "agreements": ("agreements", _agreements),
    "remotes": ("remotes", _remotes),
    "max_expanded_size": ("max_expanded_size", _positive_count),
    "max_expansion_ratio": ("max_expansion_ratio", _number),
    "datasets": (None, _datasets),
    TRUSTED_TABLE: (None, _trusted),
}


def parse_table(table: dict, origin: str) -> dict[str, Any]:
    """Validates a settings table and returns ``Settings`` field values.

    :param table: the parsed TOML table
    :param origin: where it comes from, for error messages
    :raises SettingsError: on an unknown key or a value of the wrong type
    """
    values: dict[str, Any] = {}
    for key, raw in table.items():
        if key not in PARSERS:
            import difflib

            close = difflib.get_close_matches(key, sorted(PARSERS), n=2, cutoff=0.7)
            hint = f"did you mean {' or '.join(close)}?" if close else f"known settings: {', '.join(sorted(PARSERS))}"
            raise SettingsError(f"{origin}: unknown setting {key!r}", hint=hint)
        field_name, parser = PARSERS[key]
        parsed = parser(raw, key, origin)
        if field_name is not None:
            values[field_name] = parsed
    return values


def read_toml(path: Path) -> dict:
    """Reads a TOML file, turning syntax errors into one clear message."""
    try:
        with path.open("rb") as fp:
            return tomllib.load(fp)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: invalid TOML: {exc}", hint="fix the file's syntax") from None
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read: {exc.strerror}") from None


def user_settings_path() -> Path:
    """The user settings file: ``$DATAMAESTRO_CONFIG``, else the platform's config dir."""
    if env := os.environ.get(ENV_CONFIG):
        return Path(env).expanduser()
    from platformdirs import user_config_dir

    return Path(user_config_dir("datamaestro")) / "settings.toml"


def user_cache_dir() -> Path:
    """Where facts about the installed code are cached for every data dir: ``$DATAMAESTRO_CACHE``, else the platform's cache dir.

    The dataset index and the lock checks depend only on the installed
    plugins and the project's files, not on a data dir: kept per user, a
    new data dir (a new project, a fresh ``sync``) does not import every
    plugin again to learn them.
    """
    if env := os.environ.get(ENV_CACHE):
        return Path(env).expanduser()
    from platformdirs import user_cache_dir as platform_cache_dir

    return Path(platform_cache_dir("datamaestro"))


def _check_named_settings_file(path: Path) -> None:
    """``$DATAMAESTRO_CONFIG`` must name a file: a typo would silently drop every setting (mirrors, remotes).

    :raises SettingsError: it names a folder, or nothing
    """
    named = os.environ[ENV_CONFIG]
    if path.is_dir():
        raise SettingsError(f"{ENV_CONFIG}={named!r} is a folder, not a settings file", hint=f"name the file, e.g. {ENV_CONFIG}={path / 'settings.toml'}")
    if not path.exists():
        raise SettingsError(
            f"{ENV_CONFIG}={named!r}: no such file",
            hint=f"fix the path, create the file (an empty one is fine), or unset {ENV_CONFIG} to use the default settings file",
        )


def find_pyproject(start: Path | None = None) -> Path | None:
    """The nearest ``pyproject.toml`` from ``start`` (default: cwd) upwards."""
    current = (start or Path.cwd()).resolve()
    for folder in (current, *current.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def project_table(pyproject: Path | None) -> dict:
    """The ``[tool.datamaestro]`` table of a pyproject file (empty if none)."""
    if pyproject is None:
        return {}
    table = read_toml(pyproject).get("tool", {}).get("datamaestro", {})
    if not isinstance(table, dict):
        raise SettingsError(f"{pyproject}: [tool.datamaestro] must be a table")
    return table


def _float_of(text: str, name: str) -> float:
    """A number from an environment variable."""
    try:
        return float(text)
    except ValueError:
        raise SettingsError(f"{name}={text!r}: expected a number of seconds") from None


def _env_toml(name: str, text: str, example: str) -> dict:
    """The TOML table an environment variable holds (the body of the setting's table)."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{name}: invalid TOML: {exc}", hint=example) from None


def _env_values() -> dict[str, Any]:
    values: dict[str, Any] = {}
    if env := os.environ.get(ENV_DATA_DIR):
        values["data_dir"] = Path(env).expanduser()
    if env := os.environ.get(ENV_STORE_DIR):
        values["store_dir"] = Path(env).expanduser()
    if env := os.environ.get(ENV_REMOTES):
        table = _env_toml(ENV_REMOTES, env, f"{ENV_REMOTES}='lab = {{ url = \"s3://bucket/prefix\", endpoint = \"https://minio.lab.example\" }}'")
        values["remotes"] = _remotes(table, "remotes", ENV_REMOTES)
    if env := os.environ.get(ENV_MIRRORS):
        table = _env_toml(ENV_MIRRORS, env, f"{ENV_MIRRORS}='\"https://example.org/data/\" = [\"/srv/mirror/data/\"]'")
        values["mirrors"] = _mirrors(table, "mirrors", ENV_MIRRORS)
    if env := os.environ.get(ENV_LEASE_TTL):
        values["lease_ttl"] = _number(_float_of(env, ENV_LEASE_TTL), ENV_LEASE_TTL, "the environment")
    if env := os.environ.get(ENV_TIMEOUT):
        values["timeout"] = _number(_float_of(env, ENV_TIMEOUT), ENV_TIMEOUT, "the environment")
    if (env := os.environ.get(ENV_OFFLINE)) is not None:
        word = env.strip().lower()
        if word not in TRUE_WORDS | FALSE_WORDS:
            raise SettingsError(f"{ENV_OFFLINE}={env!r}: expected 1/0, true/false, yes/no or on/off")
        values["offline"] = word in TRUE_WORDS
    return values


def load_settings(
    overrides: dict[str, Any] | None = None,
    *,
    project_dir: Path | None = None,
    use_user_file: bool = True,
) -> tuple[Settings, Path | None]:
    """Resolves the settings from every source, by precedence.

    :param overrides: ``Settings`` field values from the command line or an
        API call (``None`` values are ignored)
    :param project_dir: where to look for ``pyproject.toml`` (default: cwd)
    :param use_user_file: read the user settings file
    :returns: the settings and the project's ``pyproject.toml`` (or None)
    """
    layers: list[dict[str, Any]] = []
    if use_user_file:
        path = user_settings_path()
        if os.environ.get(ENV_CONFIG):
            _check_named_settings_file(path)
        if path.is_file():
            layers.append(parse_table(read_toml(path), str(path)))
    trusted: dict[str, str] = {}
    if use_user_file and path.is_file():
        trusted = _trusted(read_toml(path).get(TRUSTED_TABLE, {}), TRUSTED_TABLE, str(path))
    pyproject = find_pyproject(project_dir)
    table = project_table(pyproject)
    if table:
        parsed = parse_table(table, f"{pyproject} [tool.datamaestro]")
        # a project cannot trust itself, nor others
        parsed.pop(TRUSTED_TABLE, None)
        if TRUSTED_TABLE in table:
            raise SettingsError(f"{pyproject} [tool.datamaestro]: {TRUSTED_TABLE!r} belongs to the user settings file", hint="remove it; run `datamaestro trust` instead")
        ignored = [key for key in TRUST_KEYS if key in table]
        if ignored and not is_trusted(pyproject, trusted):
            _warn_untrusted(pyproject, ignored)
            for key in ignored:
                parsed.pop(PARSERS[key][0], None)
        layers.append(parsed)
    layers.append(_env_values())
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    for key, (field_name, parser) in PARSERS.items():
        if parser is _number and field_name in given:
            given[field_name] = _number(given[field_name], key, "the command line")
    layers.append(given)

    values: dict[str, Any] = {}
    mirrors: dict[str, list[str]] = {}
    folders: dict[str, Path] = {}
    agreements: dict[str, bool] = {}
    remotes: dict[str, dict[str, str]] = {}
    for layer in layers:
        for prefix, targets in layer.pop("mirrors", {}).items():
            # A higher layer's replacements come first; the lower ones stay as fallbacks
            mirrors[prefix] = targets + [t for t in mirrors.get(prefix, []) if t not in targets]
        folders.update(layer.pop("datafolders", {}))
        agreements.update(layer.pop("agreements", {}))
        remotes.update(layer.pop("remotes", {}))
        values.update(layer)
    names = {f.name for f in fields(Settings)}
    unknown = set(values) - names
    if unknown:
        raise SettingsError(f"unknown settings: {', '.join(sorted(unknown))}")
    settings = replace(Settings(), **values, mirrors=mirrors, datafolders=folders, agreements=agreements, remotes=remotes)
    return settings, pyproject


def project_digest(pyproject: Path) -> str:
    """The blake3 digest of a project file's bytes (what trusting it records)."""
    from blake3 import blake3  # the store's hash (settings sit below the store: no import of it)

    try:
        return "blake3:" + blake3(Path(pyproject).read_bytes()).hexdigest()
    except OSError as exc:
        raise SettingsError(f"{pyproject}: cannot read: {exc.strerror}") from None


def is_trusted(pyproject: Path, trusted: dict[str, str]) -> bool:
    """True when the user trusted this very project file, as it is now (its path and digest recorded)."""
    recorded = trusted.get(str(Path(pyproject).resolve()))
    return recorded is not None and recorded == project_digest(pyproject)


_warned: set[tuple[str, tuple[str, ...]]] = set()


def _warn_untrusted(pyproject: Path, ignored: list[str]) -> None:
    """One warning per project and process: which of its settings are ignored, and how to use them."""
    key = (str(pyproject), tuple(ignored))
    if key in _warned:
        return
    _warned.add(key)
    logger.warning(
        "%s sets %s in [tool.datamaestro]: ignored, since this project is not trusted (or changed since); "
        "read them, then run `datamaestro trust` in its folder to use them",
        pyproject, ", ".join(ignored),
    )


def trust_project(pyproject: Path) -> tuple[Path, str]:
    """Records a project file as trusted, as it is now (``datamaestro trust``); returns the user settings file and the digest.

    Its ``remotes``, ``mirrors``, ``store``, ``data`` and ``agreements`` are
    then used, until the file changes (trust it again then).
    """
    digest = project_digest(pyproject)
    return set_user_setting(TRUSTED_TABLE, str(Path(pyproject).resolve()), digest), digest


def set_user_setting(table: str, key: str, value: Any) -> Path:
    """Writes ``[table] key = value`` in the user settings file (comments and order kept); returns its path.

    ``value=None`` removes the key.

    :raises SettingsError: the file cannot be read, parsed or written
    """
    import tomlkit

    path = user_settings_path()
    try:
        document = tomlkit.parse(path.read_text()) if path.is_file() else tomlkit.document()
    except Exception as exc:
        raise SettingsError(f"{path}: cannot read: {exc}", hint="fix or move the file") from None
    section = document.get(table)
    if section is None:
        section = tomlkit.table()
        document[table] = section
    if value is None:
        section.pop(key, None)
    else:
        section[key] = value
    parse_table(document.unwrap(), str(path))  # never write a file we would refuse to read
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(tomlkit.dumps(document))
        os.replace(tmp, path)
    except OSError as exc:
        raise SettingsError(f"{path}: cannot write: {exc.strerror}", hint="check the folder's permissions") from None
    return path
