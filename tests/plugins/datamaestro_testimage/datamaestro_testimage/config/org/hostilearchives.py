"""Archives and compressed files an attacker controls (``tests/test_hostile_archives.py`` writes them into the test server's folder).

An escape past PATH_MAX (the CVE-2025-4517 class), and decompression bombs
of every format a resource expands: gzip, zip, bzip2 and xz tars.
"""

from datamaestro.data import File, Folder
from datamaestro.definitions import Dataset, dataset
from datamaestro.download.archive import TarDownloader, ZipDownloader
from datamaestro.download.single import FileDownloader
from datamaestro_testimage import BASE_URL


class ExpandedFile(File):
    """A file that was decompressed (a type of its own: searches for data.File list only the example)."""


@dataset(url="http://example.org/hostile")
class Escape(Dataset):
    """A tar archive climbing out of its folder past PATH_MAX"""

    DATA = TarDownloader("data", BASE_URL + "hostile/escape.tar")

    def config(self) -> Folder:
        return Folder.C(path=self.DATA.path)


@dataset(url="http://example.org/hostile")
class Gzbomb(Dataset):
    """A gzipped file that expands far beyond its size"""

    DATA = FileDownloader("bomb.txt", BASE_URL + "hostile/bomb.txt.gz")

    def config(self) -> ExpandedFile:
        return ExpandedFile.C(path=self.DATA.path)


@dataset(url="http://example.org/hostile")
class Zipbomb(Dataset):
    """A zip archive whose member expands far beyond the archive"""

    DATA = ZipDownloader("data", BASE_URL + "hostile/bomb.zip")

    def config(self) -> Folder:
        return Folder.C(path=self.DATA.path)


@dataset(url="http://example.org/hostile")
class Xzbomb(Dataset):
    """An xz tar archive that expands far beyond its size"""

    DATA = TarDownloader("data", BASE_URL + "hostile/bomb.tar.xz")

    def config(self) -> Folder:
        return Folder.C(path=self.DATA.path)


@dataset(url="http://example.org/hostile")
class Bz2bomb(Dataset):
    """A bzip2 tar archive of many files that together expand far beyond its size"""

    DATA = TarDownloader("data", BASE_URL + "hostile/bomb.tar.bz2")

    def config(self) -> Folder:
        return Folder.C(path=self.DATA.path)
