"""Class-style datasets of one file each, whose content each benchmark chooses.

The file behind a URL is whatever the benchmark serves (its size depends on
``--quick``; ``ingest_memory`` serves zeros as ``gzipped.bin.gz``), so each
benchmark uses a data dir of its own per content: the action cache of a
store knows a download by its URL.
"""

from datamaestro.data import File
from datamaestro.definitions import Dataset, dataset
from datamaestro.download.single import FileDownloader
from datamaestro_bench import BASE_URL


class OneFile(Dataset):
    """A dataset of one file, the resource ``DATA`` of each subclass (not a dataset itself)."""

    DATA: FileDownloader

    def config(self) -> File:
        return File.C(path=self.DATA.path)


def one_file(name: str, filename: str, doc: str) -> type:
    """Declares the dataset ``bench.<name lower-cased>``: ``filename`` downloaded from ``BASE_URL + filename``.

    The class is made here rather than written out once per dataset: only
    its name, file and docstring differ. Its module is this one, as if it
    had been written at the top level.
    """
    namespace = {
        "__module__": __name__,
        "__qualname__": name,
        "__doc__": doc,
        # a .gz URL is gunzipped on the way (inferred from the URL); the file keeps the name without it
        "DATA": FileDownloader(filename.removesuffix(".gz"), BASE_URL + filename),
    }
    return dataset(url="https://github.com/experimaestro/datamaestro")(type(name, (OneFile,), namespace))


Gzipped = one_file("Gzipped", "gzipped.bin.gz", "A gzipped file\n\nDownloaded, gunzipped, hashed and stored in one pass (prepare_cold, ingest_memory).")
Big = one_file("Big", "big.bin", "A large plain file (prepare_warm, ingest_memory)")
Small = one_file("Small", "small.bin", "A small plain file (prepare_warm)")
