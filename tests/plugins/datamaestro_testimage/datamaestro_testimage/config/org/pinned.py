"""A dataset for the lock tests: a folder from an archive, a derivation of it, a transient input.

Its files are written by ``tests/test_lock.py`` (``write_pinned``) into the
test server's folder.
"""

from pathlib import Path

from datamaestro.data import Folder
from datamaestro.definitions import Dataset, dataset
from datamaestro.download.archive import TarDownloader
from datamaestro.download.custom import derived
from datamaestro.download.single import FileDownloader
from datamaestro_testimage import BASE_URL


def count_files(inputs: dict, output: Path) -> None:
    """The number of files of the folder."""
    output.write_text(str(sum(1 for path in inputs["files"].rglob("*") if path.is_file())) + "\n")


def upper(inputs: dict, output: Path) -> None:
    """The text in capitals."""
    output.write_text(inputs["text.txt"].read_text().upper())


@dataset(url="http://example.org/pinned")
class Bundle(Dataset):
    """Files, their count and a text in capitals

    A tree (from a tar archive), a file derived from the tree, and a file
    derived from a transient download: every kind of pin a lock records.
    """

    FILES = TarDownloader("files", BASE_URL + "pinned/files.tar.gz")
    COUNT = derived("count.txt", {"files": FILES}, count_files)
    TEXT = FileDownloader("text.txt", BASE_URL + "pinned/text.txt.gz", transient=True)
    UPPER = derived("upper.txt", [TEXT], upper)

    def config(self) -> Folder:
        return Folder.C(path=self.FILES.path)
