"""The Hugging Face ``datasets`` library: a Hub dataset's builder, restricted to one split, and its preparation.

Used by the resource that prepares a Hub dataset
(:class:`datamaestro.download.huggingface.HFDownloader`) and by the data
class that reads it back (:class:`datamaestro.data.huggingface.HuggingFaceDataset`),
which both sit above it. The library is imported on first use.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from .errors import DatamaestroError

logger = logging.getLogger("datamaestro.download.huggingface")

#: a split expression naming one split: ``train``, or a slice of it (``train[:10%]``); ``train+test`` does not match
_SPLIT_RE = re.compile(r"^([\w.\-]+)(\[.*\])?$")


def _datasets_library():
    try:
        import datasets
    except ModuleNotFoundError:
        raise DatamaestroError(
            "this dataset is loaded with the Hugging Face `datasets` library, which is not installed",
            hint="pip install datasets",
        ) from None
    return datasets


def _base_split(split: str | None) -> str | None:
    """The one split a split expression refers to; None when none, or several."""
    if split is None:
        return None
    match = _SPLIT_RE.match(split.strip())
    return match.group(1) if match else None


def _find_cached_hashed_builder(source: str, name: str):
    """Offline: the builder of a split-restricted build of ``name`` in the ``datasets`` cache, or None.

    Restricting the data files to one split makes ``datasets`` keep the
    build under a hashed config name (``quora-ccbd7fec3e15cba7``), which a
    plain ``load_dataset_builder(source, name)`` cannot find offline. The
    newest such folder is used; its ``dataset_info.json`` gets the hashed
    name as ``config_name``, which ``datasets``' cache lookup requires.
    """
    datasets = _datasets_library()
    try:
        from datasets.config import HF_DATASETS_CACHE
    except ModuleNotFoundError:
        return None
    cache = Path(HF_DATASETS_CACHE)
    repo_dir = next((folder for folder in (cache / source.replace("/", "___"), cache / source.replace("/", "---")) if folder.is_dir()), None)
    if repo_dir is None:
        return None
    matches = sorted((d for d in repo_dir.iterdir() if d.is_dir() and d.name.startswith(f"{name}-")), key=lambda d: d.stat().st_mtime, reverse=True)
    if not matches:
        return None
    target, hashed_name = matches[0], matches[0].name
    for info_file in target.glob("*/*/dataset_info.json"):
        try:
            info = json.loads(info_file.read_text(encoding="utf-8"))
            if info.get("config_name") != hashed_name:
                info["config_name"] = hashed_name
                info_file.write_text(json.dumps(info, indent=2), encoding="utf-8")
        except (OSError, ValueError) as exc:
            logger.warning("[hf] cannot update %s: %s", info_file, exc)
    logger.info("[hf] offline: using the cached split-restricted config %r of %r (asked: %r)", hashed_name, source, name)
    return datasets.load_dataset_builder(source, hashed_name)


def hf_builder(source: str, name: str | None = None, data_files=None, split: str | None = None, revision: str | None = None):
    """A ``datasets`` builder, restricted to ``split`` when it names one split; returns ``(builder, restricted)``.

    ``download_and_prepare`` prepares every split its builder knows; the one
    lever is the data files, so when the builder resolved them per split
    (parquet, json, csv... builders) it is built again over that split's
    files. Script builders, without per-split files, prepare everything.
    When the builder cannot be made (offline), a split-restricted build in
    the cache is used (see :func:`_find_cached_hashed_builder`).
    """
    datasets = _datasets_library()
    try:
        builder = datasets.load_dataset_builder(source, name, data_files=data_files, revision=revision)
    except Exception as exc:
        if name is not None and data_files is None:
            logger.warning("[hf] no builder for %r, config %r (%s): looking for a split-restricted build in the cache", source, name, exc)
            cached = _find_cached_hashed_builder(source, name)
            if cached is not None:
                return cached, True
        raise
    base = _base_split(split)
    if base is None:
        return builder, False
    resolved = builder.config.data_files
    if not isinstance(resolved, dict) or base not in resolved or len(resolved) <= 1:
        return builder, False
    logger.debug("[hf] %s restricted to the split %r (1 of %d)", source, base, len(resolved))
    return datasets.load_dataset_builder(source, name, data_files={base: list(resolved[base])}, revision=revision), True


def hf_download_and_prepare(source: str, name: str | None = None, *, data_files=None, split: str | None = None, revision: str | None = None):
    """Writes a Hub dataset into the ``datasets`` cache (only ``split`` when it names one); returns its builder.

    ``download_and_prepare`` writes the Arrow shards without building a
    ``Dataset`` (usable on a login node for a large dataset), and a warm
    cache makes it nearly free. A restricted build records fewer splits
    than the dataset's metadata declares, hence ``verification_mode="no_checks"``.
    Read the data back through the same builder (``builder.as_dataset``):
    a restricted build lives in another cache folder than a full one.
    """
    builder, restricted = hf_builder(source, name, data_files=data_files, split=split, revision=revision)
    options = {"verification_mode": "no_checks"} if (restricted or data_files is not None or split is not None) else {}
    builder.download_and_prepare(**options)
    return builder
