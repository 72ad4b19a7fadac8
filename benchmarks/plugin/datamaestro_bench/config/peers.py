"""Four gzipped files of MNIST's sizes (benchmarks/peers.py: against pooch and DVC)."""

from experimaestro import Param

from datamaestro.data import Base, File
from datamaestro.definitions import Dataset, dataset
from datamaestro.download.single import FileDownloader
from datamaestro_bench import BASE_URL

#: file name (as served, gzipped) -> the name of its resource
FILES = {
    "train-images.gz": "train_images",
    "train-labels.gz": "train_labels",
    "test-images.gz": "test_images",
    "test-labels.gz": "test_labels",
}


class FourFiles(Base):
    """Four files (the layout of MNIST)."""

    train_images: Param[File]
    train_labels: Param[File]
    test_images: Param[File]
    test_labels: Param[File]


@dataset(url="https://github.com/experimaestro/datamaestro")
class Mnist(Dataset):
    """Four gzipped files of MNIST's sizes

    Each is downloaded, gunzipped and stored, as MNIST is.
    """

    TRAIN_IMAGES = FileDownloader("train_images", BASE_URL + "peers/train-images.gz")
    TRAIN_LABELS = FileDownloader("train_labels", BASE_URL + "peers/train-labels.gz")
    TEST_IMAGES = FileDownloader("test_images", BASE_URL + "peers/test-images.gz")
    TEST_LABELS = FileDownloader("test_labels", BASE_URL + "peers/test-labels.gz")

    def config(self) -> FourFiles:
        return FourFiles.C(
            train_images=File.C(path=self.TRAIN_IMAGES.path),
            train_labels=File.C(path=self.TRAIN_LABELS.path),
            test_images=File.C(path=self.TEST_IMAGES.path),
            test_labels=File.C(path=self.TEST_LABELS.path),
        )
