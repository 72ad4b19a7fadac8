"""The files the suite's server serves, and what each dataset's readable folder must then hold.

Five datasets of the test plugin (``tests/plugins/datamaestro_testimage``)
make the mix: ``com.lecun.mnist`` (four gzipped IDX files),
``org.example`` (a plain file), ``org.example.digits`` (a gzipped CSV),
``org.samples.corpus`` (a gzipped tar archive, stored as a tree) and
``org.samples.tokens`` (a transient gzipped text, a derivation from it, and
MNIST's training labels again, from the same URL). Files are made of random
bytes where it matters, so that they are big enough (hundreds of KiB) for a
throttled transfer to be killed in its middle.
"""

from __future__ import annotations

import functools
import gzip
import io
import random
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from support.idxwriter import idx_bytes

#: URL paths of the plugin's files (below the mirrored prefix), by dataset
SERVED = {
    "com.lecun.mnist": [
        "mnist/train-images-idx3-ubyte.gz",
        "mnist/train-labels-idx1-ubyte.gz",
        "mnist/t10k-images-idx3-ubyte.gz",
        "mnist/t10k-labels-idx1-ubyte.gz",
    ],
    "org.example": ["example/readme.txt"],
    "org.example.digits": ["example/digits.csv.gz"],
    "org.samples.corpus": ["samples/corpus.tar.gz"],
    "org.samples.tokens": ["samples/text.txt.gz", "mnist/train-labels-idx1-ubyte.gz"],
}
DATASETS = list(SERVED)
#: files whose corruption the pipeline detects (gzip or tar framing), so
#: that serving wrong bytes for them must fail rather than store garbage
VALIDATED = sorted({path for paths in SERVED.values() for path in paths if path.endswith(".gz")})


@dataclass
class Expected:
    """What a prepared dataset's readable folder holds.

    :param folder: the folder, relative to the data dir
    :param files: path relative to ``folder`` -> bytes, for every file
        reachable through it (tree entries included)
    """

    folder: str
    files: dict[str, bytes]

    @property
    def entries(self) -> set[str]:
        """The top-level names of the folder (one per resource)."""
        return {name.split("/")[0] for name in self.files}


def _gzip(data: bytes) -> bytes:
    # mtime=0: the same bytes at every run, so that digests are reproducible
    return gzip.compress(data, mtime=0)


def tar_gz(*members: tarfile.TarInfo | tuple[str, bytes]) -> bytes:
    """A gzipped tar of files ``(name, bytes)`` and members without data (``TarInfo``: links, devices)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                archive.addfile(member)
            else:
                info = tarfile.TarInfo(member[0])
                info.size = len(member[1])
                archive.addfile(info, io.BytesIO(member[1]))
    return buffer.getvalue()


def write_samples(root: Path, seed: int = 0) -> dict[str, Expected]:
    """Writes every served file under ``root``; returns the expected folders by dataset id.

    A copy of every file also goes under ``root/moved/`` (the target of
    redirect faults: a file that moved, same bytes).
    """
    served, expected = _samples(seed)
    for path, data in served.items():
        for target in (root / path, root / "moved" / path):
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
    return {dataset_id: Expected(found.folder, dict(found.files)) for dataset_id, found in expected.items()}


@functools.cache
def _samples(seed: int) -> tuple[dict[str, bytes], dict[str, Expected]]:
    """The served files by URL path and the expected folders, made once per process and seed (a tenth of a second each)."""
    rng = np.random.default_rng(seed)
    noise = random.Random(seed)
    raw: dict[str, bytes] = {
        # random pixels do not compress: the gzipped files stay big
        "mnist/train-images-idx3-ubyte.gz": idx_bytes(rng.integers(0, 256, size=(800, 28, 28), dtype=np.uint8)),
        "mnist/train-labels-idx1-ubyte.gz": idx_bytes(rng.integers(0, 10, size=800, dtype=np.uint8)),
        "mnist/t10k-images-idx3-ubyte.gz": idx_bytes(rng.integers(0, 256, size=200, dtype=np.uint8).repeat(784).reshape(200, 28, 28)),
        "mnist/t10k-labels-idx1-ubyte.gz": idx_bytes(rng.integers(0, 10, size=200, dtype=np.uint8)),
        "example/digits.csv.gz": b"a,b\n" + b"".join(b"%d,%d\n" % (i, i * i) for i in range(2000)),
    }
    text = " ".join(noise.choice(["Alpha", "beta", "GAMMA", "delta", "Epsilon"]) + str(noise.randrange(1000)) for _ in range(40_000))
    raw["samples/text.txt.gz"] = text.encode()
    corpus = {"corpus/a.txt": noise.randbytes(200_000), "corpus/sub/b.txt": noise.randbytes(50_000), "corpus/sub/c.txt": b"gamma\n"}
    served = {path: _gzip(data) for path, data in raw.items()}
    served["example/readme.txt"] = b"read me\n" * 1000
    served["samples/corpus.tar.gz"] = tar_gz(*corpus.items())

    tokens = "".join(token.lower() + "\n" for token in text.split()).encode()
    mnist_names = ["train_images.idx", "train_labels.idx", "test_images.idx", "test_labels.idx"]
    return served, {
        "com.lecun.mnist": Expected(
            "data/image/com/lecun/mnist", {name: raw[path] for name, path in zip(mnist_names, SERVED["com.lecun.mnist"])}
        ),
        "org.example": Expected("data/image/org/example", {"readme.txt": served["example/readme.txt"]}),
        "org.example.digits": Expected("data/image/org/example/digits", {"digits.csv": raw["example/digits.csv.gz"]}),
        "org.samples.corpus": Expected(
            "data/image/org/samples/corpus", {"files/" + name.removeprefix("corpus/"): data for name, data in corpus.items()}
        ),
        "org.samples.tokens": Expected(
            "data/image/org/samples/tokens", {"tokens.txt": tokens, "labels.idx": raw["mnist/train-labels-idx1-ubyte.gz"]}
        ),
    }
