"""experimaestro's serialized form of a config (``prepare --encoder xpm``)."""

from __future__ import annotations

import json


def config_to_xpm(config) -> list:
    """experimaestro's serialized form of a config: its objects, with types and identifiers."""
    return json.loads(config.__json__())
