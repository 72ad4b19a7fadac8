"""Hugging Face resources and data as datamaestro 1.16 had them, with the ``datasets`` library mocked (never the network).

A fake ``datasets`` module in ``sys.modules`` models what matters: a
builder made without data files resolves one entry per split, as packaged
builders do; one made with data files echoes them.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from unittest.mock import MagicMock

import pytest

from datamaestro.api import prepare_dataset
from datamaestro.data.huggingface import FlattenAndShuffleDataset, HuggingFaceDataset
from datamaestro.definitions import Dataset, dataset
from datamaestro.download.huggingface import HFDownloader, HFSnapshotDownloader, hf_builder
from datamaestro.helpers import EnvHFResolver, get_helpers


@pytest.fixture
def fake_datasets(monkeypatch):
    """A ``datasets`` module recording the builders it hands out."""
    fake = types.ModuleType("datasets")
    fake.SPLITS = ["train", "validation", "test"]
    fake.builders = []
    fake.load_dataset = MagicMock(name="load_dataset")
    fake.load_from_disk = MagicMock(name="load_from_disk")

    def load_dataset_builder(source, name=None, data_files=None, revision=None):
        builder = MagicMock(name="builder")
        builder.config.data_files = {s: [f"hf://{source}/{s}.parquet"] for s in fake.SPLITS} if data_files is None else data_files
        builder.config.name = name
        fake.builders.append(builder)
        return builder

    fake.load_dataset_builder = MagicMock(side_effect=load_dataset_builder)
    monkeypatch.setitem(sys.modules, "datasets", fake)
    return fake


def prepared_builder(fake):
    """The one builder whose ``download_and_prepare`` ran."""
    (builder,) = [b for b in fake.builders if b.download_and_prepare.called]
    return builder


@dataset(id="test.compat.hf.train")
class HubTrain(Dataset):
    """The train split of a Hub dataset"""

    DATA = HFDownloader("data", "user/dataset", split="train")

    def config(self) -> HuggingFaceDataset:
        return HuggingFaceDataset.C(**self.DATA.value())


def test_only_the_requested_split_is_prepared(fake_datasets, dm_context):
    config = prepare_dataset(HubTrain)
    builder = prepared_builder(fake_datasets)
    assert builder.config.data_files == {"train": ["hf://user/dataset/train.parquet"]}
    builder.download_and_prepare.assert_called_once_with(verification_mode="no_checks")
    assert config.split == "train" and config.local_path is None
    # the data is read through a builder restricted the same way (the same cache folder)
    config.data
    reader = fake_datasets.builders[-1]
    assert reader.config.data_files == builder.config.data_files
    reader.as_dataset.assert_called_once_with(split="train")


def test_no_split_prepares_everything_with_checks(fake_datasets):
    HFDownloader("data", "user/dataset").download()
    prepared_builder(fake_datasets).download_and_prepare.assert_called_once_with()
    # a compound split cannot be restricted
    assert hf_builder("user/dataset", split="train+test")[1] is False


def test_offline_fallback_to_the_hashed_config(monkeypatch, tmp_path):
    cache = tmp_path / "hf_cache"
    hashed = cache / "user___dataset" / "quora-ccbd7fec3e15cba7"
    (hashed / "0.0.0" / "abc").mkdir(parents=True)
    info = hashed / "0.0.0" / "abc" / "dataset_info.json"
    info.write_text('{"config_name": "quora"}')
    fake = types.ModuleType("datasets")
    fake.config = types.SimpleNamespace(HF_DATASETS_CACHE=str(cache))

    def load_dataset_builder(source, name=None, data_files=None, revision=None):
        if name == "quora":
            raise ConnectionError("offline")
        builder = MagicMock(name=name)
        builder.config.name = name
        return builder

    fake.load_dataset_builder = load_dataset_builder
    monkeypatch.setitem(sys.modules, "datasets", fake)
    monkeypatch.setitem(sys.modules, "datasets.config", fake.config)
    builder, restricted = hf_builder("user/dataset", name="quora", split="train")
    assert restricted and builder.config.name == "quora-ccbd7fec3e15cba7"
    assert '"config_name": "quora-ccbd7fec3e15cba7"' in info.read_text()


def test_local_mirror_resolver_and_local_path_as_str(fake_datasets, monkeypatch, tmp_path):
    mirror = tmp_path / "mirrors"
    (mirror / "user" / "dataset").mkdir(parents=True)
    resource = HFDownloader("data", "user/dataset", split="train")
    assert resource.value()["local_path"] is None
    monkeypatch.setenv(EnvHFResolver.DATASETS_ENV, str(mirror))
    assert isinstance(get_helpers("hf_resolver")[0], EnvHFResolver)
    assert resource.value()["local_path"] == str(mirror / "user" / "dataset")
    assert resource.download() is True
    assert fake_datasets.builders == []  # nothing asked to the Hub
    assert resource.local_path == mirror / "user" / "dataset"
    check = resource.check()
    assert check.status == "ok" and check.url == str(mirror / "user" / "dataset")
    assert HFDownloader("data", "user/dataset", local_path=tmp_path / "gone").check().status == "failed"


def test_check_asks_the_hub_endpoint(http_server, monkeypatch):
    (http_server.root / "api" / "datasets" / "user").mkdir(parents=True)
    (http_server.root / "api" / "datasets" / "user" / "dataset").write_text("{}")
    monkeypatch.setenv("HF_ENDPOINT", http_server.base_url)
    assert HFDownloader("data", "user/dataset").check().status == "ok"
    assert HFDownloader("data", "user/missing").check().status == "failed"


def test_snapshot_downloader(monkeypatch, tmp_path, dm_context):
    hub = types.ModuleType("huggingface_hub")

    def snapshot_download(repo_id, repo_type, allow_patterns, ignore_patterns, revision, local_dir):
        (Path(local_dir) / "shards").mkdir(parents=True)
        (Path(local_dir) / "shards" / "0.jsonl").write_text(f"{repo_id} {allow_patterns}")
        (Path(local_dir) / ".cache").mkdir()

    hub.snapshot_download = MagicMock(side_effect=snapshot_download)
    monkeypatch.setitem(sys.modules, "huggingface_hub", hub)

    @dataset(id="test.compat.hf.snapshot")
    class Snapshot(Dataset):
        """Raw files of a Hub repository"""

        SHARDS = HFSnapshotDownloader("shards", repo_id="org/repo", allow_patterns=["*.jsonl"])

        def config(self) -> HuggingFaceDataset:
            return HuggingFaceDataset.C(repo_id="org/repo", local_path=self.SHARDS.path)

    config = prepare_dataset(Snapshot)
    assert (Path(config.local_path) / "shards" / "0.jsonl").read_text() == "org/repo ['*.jsonl']"
    assert not (Path(config.local_path) / ".cache").exists()
    prepare_dataset(Snapshot)
    assert hub.snapshot_download.call_count == 1  # in the store since
    # a local copy of the model: its path, and nothing fetched
    models = tmp_path / "models"
    (models / "org" / "model").mkdir(parents=True)
    (models / "org" / "model" / "config.json").write_text("{}")
    monkeypatch.setenv(EnvHFResolver.MODELS_ENV, str(models))
    model = HFSnapshotDownloader("model", repo_id="org/model")
    assert model.path == models / "org" / "model"
    model._download(tmp_path / "unused")
    assert hub.snapshot_download.call_count == 1 and not (tmp_path / "unused").exists()


def test_flatten_and_shuffle(fake_datasets, tmp_path):
    from experimaestro.scheduler import RunMode
    from experimaestro.scheduler.workspace import Workspace
    from experimaestro.settings import Settings, WorkspaceSettings
    from experimaestro.xpmutils import DirectoryContext

    with pytest.raises(ValueError, match="empty list of samples"):
        FlattenAndShuffleDataset.C(samples=[], seed=1).instance(context=DirectoryContext(tmp_path)).execute()
    first = HuggingFaceDataset.C(id="a", repo_id="user/dataset", name="cfg1", streaming=True)
    second = HuggingFaceDataset.C(id="b", repo_id="user/dataset", name="cfg2")
    combined = MagicMock(name="combined")
    fake_datasets.concatenate_datasets = MagicMock(return_value=combined)
    task = FlattenAndShuffleDataset.C(samples=[first, second], seed=42)
    instance = task.instance(context=DirectoryContext(tmp_path))
    instance.execute()
    combined.shuffle.assert_called_once_with(seed=42)
    combined.shuffle.return_value.flatten_indices.return_value.save_to_disk.assert_called_once()

    workspace = Workspace(Settings(), WorkspaceSettings("flatten", path=tmp_path / "xp"), run_mode=RunMode.DRY_RUN)
    result = FlattenAndShuffleDataset.C(samples=[first], seed=42).submit(workspace=workspace)
    assert str(result.local_path).endswith("shuffled_dataset") and result.streaming is False
    assert (result.repo_id, result.name) == ("user/dataset", "cfg1")
