"""The original datamaestro's API, as the published plugins use it, on our store and pipeline."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest

from datamaestro.api import get_dataset, prepare_dataset
from datamaestro.context import DatafolderPath
from datamaestro.data import Base, File, Folder
from datamaestro.definitions import Dataset, dataset, datatags, metadataset
from datamaestro.download import FileResource, FilesCopy, FolderResource, Resource
from datamaestro.download.archive import TarDownloader
from datamaestro.download.links import linkfolder
from datamaestro.download.single import FileDownloader
from datamaestro.errors import DatamaestroError
from datamaestro.stream import TransformList
from datamaestro.stream.compress import Gunzip
from datamaestro.stream.lines import Filter, Replace
from datamaestro.utils import HashCheck
from datamaestro.variants import AxesVariants, Axis


class Upper(FileResource):
    """A resource of the original API: ``_download(destination)`` reading an input at its path."""

    def __init__(self, filename, source):
        super().__init__(filename)
        self.source = source
        self._dependencies.append(source)

    def _download(self, destination):
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_text(self.source.path.read_text().upper())


class Fetched(Resource):
    """A resource of the original API: ``download(force)`` writing a folder under the dataset's path."""

    def __init__(self, varname, url):
        super().__init__(varname)
        self.url = url

    def prepare(self):
        return self.definition.datapath / self.name

    def download(self, force=False):
        destination = self.definition.datapath / self.name
        destination.mkdir(parents=True, exist_ok=True)
        with self.context.downloadURL(self.url) as file:
            (destination / "copy.txt").write_bytes(file.path.read_bytes())
        return True


def test_resources_of_the_original_api_run_through_the_store(dm_context, http_server):
    (http_server.root / "a.txt").write_text("hello\n")

    @dataset(id="test.compat.legacy")
    class Legacy(Dataset):
        """Legacy"""

        RAW = FileDownloader("raw.txt", http_server.url("a.txt"))
        UPPER = Upper("upper.txt", RAW)
        FETCHED = Fetched("fetched", http_server.url("a.txt"))

        def config(self) -> Folder:
            return Folder.C(path=self.FETCHED.prepare())

    result = dm_context.pipeline().run(dm_context.request_of(Legacy.__dataset__))
    folder = result.datapath
    assert (folder / "upper.txt").read_text() == "HELLO\n"
    assert (folder / "fetched" / "copy.txt").read_text() == "hello\n"
    assert (folder / "upper.txt").resolve().is_relative_to(dm_context.store_dir.resolve())
    assert Legacy.__dataset__.config().path == folder / "fetched"
    assert list((dm_context.store_dir / "tmp").iterdir()) == []
    # warm: nothing runs again
    assert dm_context.pipeline().run(dm_context.request_of(Legacy.__dataset__)).produced == []


def test_a_failing_legacy_resource_says_which_and_leaves_nothing(dm_context, http_server):
    class Broken(FileResource):
        def _download(self, destination):
            destination.write_text("half")
            raise ValueError("the plugin's bug")

    @dataset(id="test.compat.broken")
    class Bad(Dataset):
        """Bad"""

        OUT = Broken("out.txt")

        def config(self) -> File:
            return File.C(path=self.OUT.path)

    with pytest.raises(DatamaestroError, match="test.compat.broken/out.txt: Broken: ValueError: the plugin's bug"):
        dm_context.pipeline().run(dm_context.request_of(Bad.__dataset__))
    assert list((dm_context.store_dir / "tmp").iterdir()) == []


def test_stream_transforms_and_hash_check(dm_context, http_server):
    (http_server.root / "q.gz").write_bytes(gzip.compress(b"101 a\n250 b\nNumber:  07 c\n"))

    @dataset(id="test.compat.streams")
    class Streams(Dataset):
        """Streams"""

        KEPT = FileDownloader("kept.txt", http_server.url("q.gz"), transforms=TransformList(Gunzip(), Filter(r"^(1\d\d|200)\s")))
        FIXED = FileDownloader("fixed.txt", http_server.url("q.gz"), transforms=TransformList(Gunzip(), Replace(r"Number:(\s+)0", r"Number: \1")))

        def config(self) -> File:
            return File.C(path=self.KEPT.path)

    dm_context.pipeline().run(dm_context.request_of(Streams.__dataset__))
    folder = Streams.__dataset__.datapath
    assert (folder / "kept.txt").read_text() == "101 a\n"
    assert (folder / "fixed.txt").read_text() == "101 a\n250 b\nNumber:   7 c\n"
    # a malformed digest (a plugin's typo) does not stop the module from importing
    check = HashCheck("not a digest")
    with pytest.raises(DatamaestroError, match="not a md5 digest"):
        check.start()


def test_files_copy_and_a_folder_provided_by_hand(dm_context, http_server, tmp_path, monkeypatch):
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in (("data/queries.tsv", b"q1\n"), ("data/qrels/test.tsv", b"q1 d1\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    (http_server.root / "data.tar.gz").write_bytes(buffer.getvalue())
    licensed = tmp_path / "licensed" / "Disk1"
    licensed.mkdir(parents=True)
    (licensed / "doc.txt").write_text("licensed text")

    @dataset(id="test.compat.manual")
    class Manual(Dataset):
        """Manual"""

        ARCHIVE = TarDownloader("archive", http_server.url("data.tar.gz"), transient=True)
        FILES = FilesCopy(ARCHIVE, {"queries.tsv": "queries.tsv", "test.tsv": "qrels/test.tsv"})
        DOCUMENTS = linkfolder("documents", [DatafolderPath("org.example.licensed", "Disk1")])

        def config(self) -> Folder:
            return Folder.C(path=self.DOCUMENTS.path)

    with pytest.raises(DatamaestroError) as error:
        dm_context.pipeline().run(dm_context.request_of(Manual.__dataset__))
    assert "datamaestro datafolders set org.example.licensed" in str(error.value)

    from datamaestro.api import list_datafolders, set_datafolder

    set_datafolder("org.example.licensed", tmp_path / "licensed", context=dm_context)
    assert "[datafolders]" in Path(os.environ["DATAMAESTRO_CONFIG"]).read_text()
    dm_context.pipeline().run(dm_context.request_of(Manual.__dataset__))
    folder = Manual.__dataset__.datapath
    assert (folder / "files" / "test.tsv").read_text() == "q1 d1\n"
    assert (folder / "documents" / "doc.txt").read_text() == "licensed text"
    assert {"id": "org.example.licensed", "path": str((tmp_path / "licensed").resolve()), "datasets": []} in list_datafolders(context=dm_context)


def test_user_agreement_is_asked_before_downloading_never_for_a_config(dm_context, http_server, monkeypatch):
    from datamaestro.annotations.agreement import useragreement

    (http_server.root / "b.txt").write_text("B")
    agreement = useragreement("Do you accept the terms?", id="org.example.terms")

    @agreement
    @dataset(id="test.compat.agreement")
    class Licensed(Dataset):
        """Licensed"""

        DATA = FileDownloader("b.txt", http_server.url("b.txt"))

        def config(self) -> File:
            return File.C(path=self.DATA.path)

    assert Licensed.__dataset__.config().path.name == "b.txt"
    assert Licensed.__dataset__.licence == "Do you accept the terms?"
    monkeypatch.setattr("sys.stdin", None)
    with pytest.raises(DatamaestroError, match="datamaestro agree org.example.terms"):
        dm_context.pipeline().run(dm_context.request_of(Licensed.__dataset__))
    dm_context.settings.agreements["org.example.terms"] = True
    dm_context.pipeline().run(dm_context.request_of(Licensed.__dataset__))


def test_original_style_ids_templates_variants_and_direct_calls(dm_context):
    from datamaestro.definitions import DatasetDefinition, camel_to_dotted

    assert camel_to_dotted("TrainTexttripleFull") == "train.texttriple.full"
    assert camel_to_dotted("ProcessedMNIST") == "processed.mnist"

    @datatags("text")
    @metadataset(File)
    def Template():
        """A template (not a dataset)"""

    assert not hasattr(Template, "__dataset__")

    @dataset(Template, id=".small")
    class FromTemplate(Dataset):
        """From a template"""

        def config(self) -> File:
            # experimaestro 1's way of building a config, as published plugins still do
            return File(path=Path("/x"))

    definition: DatasetDefinition = FromTemplate.__dataset__
    assert definition.id == "test_compat.small"
    assert definition.config_type is File and "text" in definition.tags
    config = definition.config()
    assert config.__xpm__.identifier.all == File.C(id="test_compat.small", path=Path("/x")).__xpm__.identifier.all

    class Sizes(AxesVariants):
        size = Axis(["small", "large"])
        streaming = Axis([False, True], default=False, in_id=False)

    @dataset(id="test.compat.family", variants=Sizes)
    class Family(Dataset):
        """A family"""

        def config(self, size, streaming) -> Base:
            return Base.C()

    family = Family.__dataset__
    assert family.config(size="large").id == "test.compat.family[size=large]"
    values = family.variants.parse_selector("[size=small,streaming=true]")
    assert values == {"size": "small", "streaming": True}
    with pytest.raises(DatamaestroError, match="size"):
        family.config()


def test_plugin_mnist_through_the_compat_names(mnist_server, dm_context):
    # the import paths of the published plugins, on the test plugin's MNIST
    from datamaestro import metadata  # noqa: F401 (datamaestro-image imports it)
    from datamaestro.context import find_dataset

    assert find_dataset("com.lecun.mnist").id == "com.lecun.mnist"
    assert get_dataset("com.lecun.mnist@image").id == "com.lecun.mnist@image"
    assert prepare_dataset("com.lecun.mnist").train.images.data().shape == (600, 28, 28)


def test_cli_orphans_check_and_create_dataset(dm_context, tmp_path, monkeypatch):
    from datamaestro.api import check_repositories, create_definition, find_orphans
    from datamaestro.repository import Repository

    orphan = dm_context.data_dir / "data" / "image" / "org" / "gone"
    orphan.mkdir(parents=True)
    (dm_context.data_dir / "data" / "image" / "com" / "lecun" / "mnist" / "entry").mkdir(parents=True)
    assert [path for path, _ in find_orphans(context=dm_context)] == [orphan]

    [report] = check_repositories(["image"], context=dm_context)
    assert report.ok and report.configs_built == report.datasets > 0

    monkeypatch.setattr(Repository, "basedir", property(lambda self: tmp_path / "plugin"))
    path = create_definition("image", "https://example.org/my-corpus", context=dm_context)
    assert path == tmp_path / "plugin" / "config" / "org" / "example" / "my_corpus.py"
    compile(path.read_text(), str(path), "exec")
    assert 'class MyCorpus(Dataset)' in path.read_text() and '@dataset(id=""' in path.read_text()
    with pytest.raises(DatamaestroError, match="already exists"):
        create_definition("image", "org.example.my-corpus", context=dm_context)
