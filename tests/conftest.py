"""The test suite's set-up: the test plugin on the path, then the shared fixtures.

The test repository (``tests/plugins/datamaestro_testimage``) is never
installed: its folder, which holds its package and the metadata that
declares its entry point, goes first on ``sys.path`` here and on
``PYTHONPATH`` for the processes the tests start. Running the tests thus
changes nothing in the user's environment, and always uses this checkout's
copy of the plugin.
"""

import os
import sys
from pathlib import Path

TEST_PLUGIN = str(Path(__file__).parent / "plugins" / "datamaestro_testimage")

if TEST_PLUGIN not in sys.path:
    sys.path.insert(0, TEST_PLUGIN)
os.environ["PYTHONPATH"] = os.pathsep.join([TEST_PLUGIN, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])

pytest_plugins = ["support.httpserver", "support.dmfixtures", "support.mnistdata"]
