"""1.x face: ``datamaestro.helpers``, the local-mirror resolvers of Hugging Face repositories (see :mod:`datamaestro.hf_resolvers`)."""

from datamaestro.hf_resolvers import (  # noqa: F401
    ENTRY_POINT_GROUP,
    EnvHFResolver,
    HFResolver,
    _EnvHFResolver,
    get_helpers,
    resolve_hf,
)

__all__ = ["ENTRY_POINT_GROUP", "EnvHFResolver", "HFResolver", "get_helpers", "resolve_hf"]
