"""A test repository: MNIST (class style) and small decorator-style datasets.

Its URLs point at ``http://127.0.0.1:9/`` (the discard port: nothing ever
answers there); tests map that prefix to their own local HTTP server with
the ``[mirrors]`` setting, exactly as a lab would point at its mirror.
"""

import datamaestro

BASE_URL = "http://127.0.0.1:9/"


class Repository(datamaestro.Repository):
    """Test repository of image datasets."""

    NAMESPACE = "image"
    DESCRIPTION = "Image datasets for datamaestro's tests"
    AUTHOR = "datamaestro developers"
