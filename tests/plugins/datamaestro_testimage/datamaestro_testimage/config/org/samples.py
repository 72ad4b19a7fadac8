"""Two more datasets for the reliability suite: an archive and a derivation.

With MNIST and the two ``org.example`` datasets they make the mix of five
that ``tests/reliability`` prepares from many processes at once. The files
are written by ``tests/reliability/samples.py`` into the test server's folder.
"""

from pathlib import Path

from datamaestro.data import File, Folder
from datamaestro.definitions import Dataset, dataset
from datamaestro.download.archive import TarDownloader
from datamaestro.download.custom import derived
from datamaestro.download.single import FileDownloader
from datamaestro_testimage import BASE_URL


class TokenFile(File):
    """A file of tokens, one per line."""


def tokenize(inputs: dict, output: Path) -> None:
    """One lower-cased token per line of the input text."""
    with inputs["text.txt"].open() as text, output.open("w") as tokens:
        for line in text:
            for token in line.split():
                tokens.write(token.lower() + "\n")


@dataset(url="http://example.org/corpus")
class Corpus(Dataset):
    """A small corpus

    A folder of text files, downloaded as a gzipped tar archive.
    """

    FILES = TarDownloader("files", BASE_URL + "samples/corpus.tar.gz")

    def config(self) -> Folder:
        return Folder.C(path=self.FILES.path)


@dataset(url="http://example.org/tokens")
class Tokens(Dataset):
    """Tokens of a text

    A text (transient, gzipped) turned into tokens by a derivation, and the
    training labels of another dataset of this repository, from the very
    same URL (one download for both datasets).
    """

    TEXT = FileDownloader("text.txt", BASE_URL + "samples/text.txt.gz", transient=True)
    TOKENS = derived("tokens.txt", [TEXT], tokenize)
    LABELS = FileDownloader("labels.idx", BASE_URL + "mnist/train-labels-idx1-ubyte.gz")

    def config(self) -> TokenFile:
        return TokenFile.C(path=self.TOKENS.path)
