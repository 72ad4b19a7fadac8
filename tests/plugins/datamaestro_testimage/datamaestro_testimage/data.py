"""Data types of the test repository (as the published image plugin declares them)."""

from experimaestro import Param

from datamaestro.data import Base
from datamaestro.data.ml import Supervised
from datamaestro.data.tensor import IDX
from datamaestro.definitions import datatags, datatasks


class Images(Base):
    """Images."""


class IDXImage(IDX, Images):
    """Images stored in an IDX file."""


@datatasks("image classification")
@datatags("images")
class LabelledImages(Base):
    """Images and their labels.

    Attributes:
        images: The images
        labels: The label of each image
    """

    images: Param[Images]
    labels: Param[Base]


@datatasks("image classification")
@datatags("images")
class ImageClassification(Supervised):
    """An image classification dataset."""
