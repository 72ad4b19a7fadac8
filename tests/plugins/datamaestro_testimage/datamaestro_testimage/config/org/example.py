"""Small datasets in the older decorator style of the published plugins."""

from datamaestro.data import File
from datamaestro.data.csv import Generic as CSV
from datamaestro.definitions import dataset, datatags, datatasks
from datamaestro.download.single import filedownloader
from datamaestro_testimage import BASE_URL


@filedownloader("digits.csv", BASE_URL + "example/digits.csv.gz")
@datatags("tabular", "digits")
@datatasks("classification")
@dataset(CSV, url="http://example.org/digits")
def digits(digits):
    """Digits as CSV

    A tiny table of digits, decorator style.
    """
    return {"path": digits}


@filedownloader("readme.txt", BASE_URL + "example/readme.txt")
@dataset(File, id="")
def example(readme):
    """The example repository's read-me

    A dataset whose id is its module path (``id=""``).
    """
    return {"path": readme}
