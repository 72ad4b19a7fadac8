"""Generic data types for machine learning.

Example::

    from datamaestro.data.ml import Supervised

    mnist = Supervised.C(id="com.lecun.mnist", train=train, test=test)
    mnist.validation  # None: this dataset has no validation split
"""

from __future__ import annotations

from pathlib import Path
from typing import Generic, Optional, TypeVar

from experimaestro import Meta, Param, field

from . import Base

Train = TypeVar("Train", bound=Base)
Validation = TypeVar("Validation", bound=Base)
Test = TypeVar("Test", bound=Base)


class Supervised(Base, Generic[Train, Validation, Test]):
    """A supervised learning dataset: a training split and optional others.

    The type parameters let code say which data type each split holds, for
    instance ``Supervised[ImageClassification, None, ImageClassification]``.

    :param train: the training split
    :param validation: the validation split (None when there is none)
    :param test: the test split (None when there is none)
    """

    train: Param[Base]
    """The training split"""

    validation: Param[Optional[Base]] = field(default=None, ignore_default=True)
    """The validation split (optional)"""

    test: Param[Optional[Base]] = field(default=None, ignore_default=True)
    """The test split (optional)"""


class FolderBased(Base):
    """A classification dataset where each class is one sub-folder.

    :param classes: the class names, which are also the sub-folder names
    :param path: the folder that holds one sub-folder per class
    """

    classes: Param[list[str]]
    """The class names (= sub-folder names)"""

    path: Meta[Path]
    """The folder that holds the class sub-folders"""
