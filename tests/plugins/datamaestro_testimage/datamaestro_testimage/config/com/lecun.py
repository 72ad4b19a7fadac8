"""MNIST, defined in the class style."""

from datamaestro.data.tensor import IDX
from datamaestro.definitions import Dataset, dataset
from datamaestro.download.single import FileDownloader
from datamaestro_testimage import BASE_URL
from datamaestro_testimage.data import IDXImage, ImageClassification, LabelledImages


@dataset(url="http://yann.lecun.com/exdb/mnist/", tags=["digits"], aliases=["mnist"])
class MNIST(Dataset):
    """The MNIST database

    The MNIST database of handwritten digits has a training set of 60,000
    examples and a test set of 10,000 examples.
    """

    TRAIN_IMAGES = FileDownloader("train_images.idx", BASE_URL + "mnist/train-images-idx3-ubyte.gz")
    TRAIN_LABELS = FileDownloader("train_labels.idx", BASE_URL + "mnist/train-labels-idx1-ubyte.gz")
    TEST_IMAGES = FileDownloader("test_images.idx", BASE_URL + "mnist/t10k-images-idx3-ubyte.gz")
    TEST_LABELS = FileDownloader("test_labels.idx", BASE_URL + "mnist/t10k-labels-idx1-ubyte.gz")

    def config(self) -> ImageClassification:
        return ImageClassification.C(
            train=LabelledImages.C(images=IDXImage.C(path=self.TRAIN_IMAGES.path), labels=IDX.C(path=self.TRAIN_LABELS.path)),
            test=LabelledImages.C(images=IDXImage.C(path=self.TEST_IMAGES.path), labels=IDX.C(path=self.TEST_LABELS.path)),
        )
