"""Ctrl-C and SIGTERM never land inside Python's import machinery.

A busy run of the suite hung a ``prepare`` that got SIGINT during its
start-up: the ``KeyboardInterrupt`` was raised in importlib's callback that
drops a module lock ("Exception ignored in ... _get_module_lock"), where it
is swallowed and can leave the global import lock held, so the download
threads' next import waited forever. The console script's handlers send
such a signal again a moment later, once the main thread is out of every
import.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, sys.argv[1])
    from datamaestro.cli import install_signal_handlers
    install_signal_handlers()
    try:
        import signalled_while_imported  # signals this process in its body, then goes on for a while
        print("imported", flush=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            time.sleep(0.01)
        print("never stopped", flush=True)
    except (KeyboardInterrupt, SystemExit) as stop:
        print("stopped", type(stop).__name__, "signalled_while_imported" in sys.modules, flush=True)
    """
)

MODULE = textwrap.dedent(
    """
    import os, signal, time
    os.kill(os.getpid(), signal.{name})
    for _ in range(30):  # bytecodes run while the signal is pending: the handler runs here, inside the import
        time.sleep(0.01)
    COMPLETE = True
    """
)


def ctrl_c_live() -> None:
    """In the child: Ctrl-C as on a terminal (a suite started in the background ignores SIGINT, and a child inherits that: Python then installs no Ctrl-C handler)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("signum, stopped_by", [(signal.SIGINT, "KeyboardInterrupt"), (signal.SIGTERM, "Terminated")])
def test_a_signal_during_an_import_stops_the_process_after_the_import(tmp_path, signum, stopped_by):
    (tmp_path / "signalled_while_imported.py").write_text(MODULE.format(name=signal.Signals(signum).name))
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, timeout=120, preexec_fn=ctrl_c_live)
    # the import completed (no half-imported module), then the signal stopped the process as usual
    assert done.stdout.split("\n")[:2] == ["imported", f"stopped {stopped_by} True"], (done.stdout, done.stderr)
    assert "Exception ignored" not in done.stderr
