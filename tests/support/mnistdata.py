"""MNIST-format files served by the test HTTP server, and the mirror that points at it.

The test plugin's URLs start with ``http://127.0.0.1:9/`` (nothing answers
there); :func:`mirror_settings` maps that prefix to the local server in the
user settings file, as a lab maps a dead URL to its own mirror.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from support.idxwriter import write_idx

PLUGIN_PREFIX = "http://127.0.0.1:9/"
MNIST_FILES = {
    "train_images.idx": "mnist/train-images-idx3-ubyte.gz",
    "train_labels.idx": "mnist/train-labels-idx1-ubyte.gz",
    "test_images.idx": "mnist/t10k-images-idx3-ubyte.gz",
    "test_labels.idx": "mnist/t10k-labels-idx1-ubyte.gz",
}


def mnist_arrays(n_train: int, n_test: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministic MNIST-shaped arrays (images compress, as real digits do)."""
    rng = np.random.default_rng(seed)

    def images(n):
        array = np.zeros((n, 28, 28), dtype=np.uint8)
        array[:, 8:20, 8:20] = rng.integers(0, 255, size=(n, 1, 1), dtype=np.uint8)
        return array

    return {
        "train_images.idx": images(n_train),
        "train_labels.idx": rng.integers(0, 10, size=n_train, dtype=np.uint8),
        "test_images.idx": images(n_test),
        "test_labels.idx": rng.integers(0, 10, size=n_test, dtype=np.uint8),
    }


def write_mnist(root: Path, n_train: int = 600, n_test: int = 100) -> dict[str, np.ndarray]:
    """Writes the four gzipped IDX files under ``root/mnist``; returns the arrays."""
    arrays = mnist_arrays(n_train, n_test)
    for name, relative in MNIST_FILES.items():
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        write_idx(target, arrays[name], gzip=True)
    return arrays


def write_examples(root: Path) -> None:
    """The files of the decorator-style datasets of the test plugin."""
    import gzip

    (root / "example").mkdir(parents=True, exist_ok=True)
    (root / "example" / "digits.csv.gz").write_bytes(gzip.compress(b"a,b\n1,2\n3,4\n"))
    (root / "example" / "readme.txt").write_bytes(b"read me\n")


def mirror_settings(base_url: str, extra: str = "") -> Path:
    """Writes the user settings file with a mirror from the plugin's prefix to ``base_url``."""
    path = Path(os.environ["DATAMAESTRO_CONFIG"])
    path.parent.mkdir(parents=True, exist_ok=True)
    base_url = base_url.rstrip("/") + "/"
    path.write_text(f"[mirrors]\n\"{PLUGIN_PREFIX}\" = [\"{base_url}\"]\n{extra}")
    return path


@pytest.fixture
def mnist_server(http_server):
    """The HTTP server serving small MNIST files (600/100 images), mirrored from the plugin's URLs."""
    http_server.mnist = write_mnist(http_server.root)
    write_examples(http_server.root)
    mirror_settings(http_server.base_url)
    return http_server
