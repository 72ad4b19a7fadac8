"""The datasets of the prepare benchmarks, as a datamaestro repository (namespace ``bench``).

It is not installed: the benchmarks put ``benchmarks/plugin`` and a
generated ``.dist-info`` holding its entry point on ``PYTHONPATH`` (see
:func:`benchmarks._common.plugin_path`). Its URLs start with
``http://127.0.0.1:9/bench/`` (nothing answers there); each benchmark maps
that prefix to its local server with a ``[mirrors]`` setting.
"""

import datamaestro

BASE_URL = "http://127.0.0.1:9/bench/"


class Repository(datamaestro.Repository):
    """Datasets served by the benchmarks' local HTTP server."""

    NAMESPACE = "bench"
    DESCRIPTION = "Datasets of datamaestro's benchmarks"
    AUTHOR = "datamaestro developers"
