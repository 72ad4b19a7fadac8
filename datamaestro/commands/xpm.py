"""The printed forms of a config: plain JSON, or experimaestro's serialized form (``prepare --encoder json|xpm``)."""

from __future__ import annotations

import json


def config_to_xpm(config) -> list:
    """experimaestro's serialized form of a config: its objects, with types and identifiers."""
    return json.loads(config.__json__())


def config_to_json(config) -> dict:
    """A data config as plain JSON: every value (paths as strings), nested configs as objects.

    Example: ``{"train": {"images": {"path": ".../train_images.idx", "id": ...}}, "id": "com.lecun.mnist@image"}``
    """
    from pathlib import Path

    from experimaestro import Config

    def encode(value):
        if isinstance(value, Config):
            return {key: encode(child) for key, child in value.__xpm__.values.items() if child is not None}
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, (list, tuple)):
            return [encode(v) for v in value]
        if isinstance(value, dict):
            return {str(k): encode(v) for k, v in value.items()}
        if value is None or isinstance(value, (str, int, float, bool)):
            return value
        return str(value)

    return encode(config)


#: the printed forms ``prepare --encoder`` offers, by name
ENCODERS = {"json": config_to_json, "xpm": config_to_xpm}
