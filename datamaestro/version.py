"""The version of datamaestro, kept apart from the package's face so that any layer may read it without importing the face."""

__version__ = "2.0.0"
