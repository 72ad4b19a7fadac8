"""reference and links: datasets built on other datasets."""

from datamaestro.data import File, Folder
from datamaestro.definitions import Dataset, dataset
from datamaestro.download.links import links, reference
from datamaestro.download.single import FileDownloader


def make_datasets(server):
    (server.root / "a.txt").write_bytes(b"A")
    (server.root / "b.txt").write_bytes(b"B")

    @dataset(id="test.links.a")
    class A(Dataset):
        """A"""

        DATA = FileDownloader("a.txt", server.url("a.txt"))

        def config(self) -> File:
            return File.C(path=self.DATA.path)

    @dataset(id="test.links.b")
    class B(Dataset):
        """B"""

        DATA = FileDownloader("b.txt", server.url("b.txt"))

        def config(self) -> File:
            return File.C(path=self.DATA.path)

    @dataset(id="test.links.both")
    class Both(Dataset):
        """Both"""

        ALL = links("all", a=A, b=B)
        FIRST = reference("first", A)

        def config(self) -> Folder:
            assert self.FIRST.value().path.name == "a.txt"
            return Folder.C(path=self.ALL.path)

    return A, B, Both


def test_links_gather_other_datasets(dm_context, http_server):
    A, B, Both = make_datasets(http_server)
    result = dm_context.pipeline().run(dm_context.request_of(Both.__dataset__))
    folder = result.datapath / "all"
    assert (folder / "a" / "a.txt").read_bytes() == b"A"
    assert (folder / "b" / "b.txt").read_bytes() == b"B"
    # the referenced datasets are prepared too, and their files are the same objects
    assert (A.__dataset__.datapath / "a.txt").resolve().samefile((folder / "a" / "a.txt").resolve())
    assert Both.__dataset__.config().path == folder
    # warm: nothing downloaded again
    count = len(http_server.requests)
    assert sorted(dm_context.pipeline().run(dm_context.request_of(Both.__dataset__)).produced) == ["all.a", "all.b", "first"]  # references only
    assert len(http_server.requests) == count


def test_links_follow_a_change_of_the_referenced_data(dm_context, http_server):
    A, B, Both = make_datasets(http_server)
    first = dm_context.pipeline().run(dm_context.request_of(Both.__dataset__))
    (http_server.root / "a2.txt").write_bytes(b"A2")
    A.DATA.url = http_server.url("a2.txt")  # the definition of A changes
    second = dm_context.pipeline().run(dm_context.request_of(Both.__dataset__))
    assert second.manifest != first.manifest
    assert (second.datapath / "all" / "a" / "a.txt").read_bytes() == b"A2"



def test_a_failed_dataset_is_not_shown_and_the_datasets_it_referenced_are(dm_context, http_server):
    """A 404 on the dataset's own file, after its references were prepared: no view, no readable folder of it.

    The referenced datasets are whole: they are shown as soon as they are
    complete, so that the dataset's resources may read them through their folders.
    """
    import pytest

    from datamaestro.errors import DatamaestroError

    A, B, Both = make_datasets(http_server)
    Both.__dataset__.add_resource("missing", FileDownloader("missing.txt", http_server.url("missing.txt")))
    with pytest.raises(DatamaestroError, match="404"):
        dm_context.pipeline().run(dm_context.request_of(Both.__dataset__))
    assert not Both.__dataset__.datapath.exists()
    assert (A.__dataset__.datapath / "a.txt").read_bytes() == b"A" and (B.__dataset__.datapath / "b.txt").read_bytes() == b"B"
    assert len(list((dm_context.store.root / "views").iterdir())) == 2  # A's and B's
    # once the file is there, nothing else is downloaded again
    (http_server.root / "missing.txt").write_bytes(b"M")
    asked = len(http_server.requests)
    dm_context.pipeline().run(dm_context.request_of(Both.__dataset__))
    assert (Both.__dataset__.datapath / "missing.txt").read_bytes() == b"M"
    assert [path for _, path, _ in http_server.requests[asked:]] == ["/missing.txt"]
