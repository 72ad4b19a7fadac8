"""A dataset of many small files (benchmarks/sync.py, benchmarks/scaling.py): one tar archive, stored as one tree."""

from datamaestro.data import Folder
from datamaestro.definitions import Dataset, dataset
from datamaestro.download.archive import TarDownloader
from datamaestro_bench import BASE_URL


@dataset(url="https://github.com/experimaestro/datamaestro")
class Files(Dataset):
    """Many small files (sync)

    A plain tar archive of small files in a hundred folders, extracted into the store.
    """

    FILES = TarDownloader("files", BASE_URL + "files.tar")

    def config(self) -> Folder:
        return Folder.C(path=self.FILES.path)


@dataset(url="https://github.com/experimaestro/datamaestro")
class Archive(Dataset):
    """Many small files in a gzipped tar archive (per_file: cold extraction)

    A ``.tar.gz`` of small files in a hundred folders: downloaded, gunzipped,
    extracted, each file hashed and stored, the tree materialized.
    """

    FILES = TarDownloader("files", BASE_URL + "files.tar.gz")

    def config(self) -> Folder:
        return Folder.C(path=self.FILES.path)
