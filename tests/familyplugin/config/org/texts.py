"""A family of variants (``org.texts.sizes[size=...]``)."""

from pathlib import Path

from experimaestro import Meta, Param

from datamaestro.data import Base
from datamaestro.definitions import Dataset, dataset
from datamaestro.download.single import FileDownloader
from datamaestro.variants import AxesVariants, Axis

BASE_URL = "http://127.0.0.1:9/"


class SizedText(Base):
    """A text file read at a given size."""

    size: Param[str]
    """How much of the text is used"""

    path: Meta[Path]
    """The text"""


class SizeAxes(AxesVariants):
    """The sizes of the family"""

    size = Axis(["small", "large"], default="small")


@dataset(variants=SizeAxes)
class Sizes(Dataset):
    """Texts by size

    One file for every variant; the size says how much of it to use.
    """

    TEXT = FileDownloader("readme.txt", BASE_URL + "example/readme.txt")

    def config(self, size) -> SizedText:
        return SizedText.C(size=size, path=self.TEXT.path)
