"""``datamaestro --host HOST ...``: the same command, run on another machine over ssh.

Useful where the data lives on a cluster's shared file system: the
command runs there (with that machine's settings and store) and its output
comes back. ``--pythonpath`` names the Python that has datamaestro there.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess

from .errors import DatamaestroError


def arguments_for_host(argv: list[str]) -> list[str]:
    """The command line without ``--host`` and ``--pythonpath`` (and their values)."""
    result, skip = [], False
    for argument in argv:
        if skip:
            skip = False
            continue
        if argument in ("--host", "--pythonpath"):
            skip = True
            continue
        if argument.startswith(("--host=", "--pythonpath=")):
            continue
        result.append(argument)
    return result


def run_on_host(host: str, python: str, argv: list[str]) -> int:
    """Runs ``python -m datamaestro <argv>`` on ``host`` with ssh; returns its exit code.

    :raises DatamaestroError: ssh is not installed
    """
    ssh = shutil.which("ssh")
    if ssh is None:
        raise DatamaestroError("--host needs ssh, which is not installed", hint="install an ssh client, or run the command on the host")
    command = shlex.join([python, "-m", "datamaestro", *arguments_for_host(argv)])
    return subprocess.run([ssh, host, command]).returncode
