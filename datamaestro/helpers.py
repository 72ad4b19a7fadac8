"""1.x face: ``datamaestro.helpers``, the local-mirror resolvers of Hugging Face repositories (see :mod:`datamaestro.hf_resolvers`)."""

from .lazy import face

__all__ = ["ENTRY_POINT_GROUP", "EnvHFResolver", "HFResolver", "get_helpers", "resolve_hf"]

__getattr__, __dir__ = face(__name__, {"datamaestro.hf_resolvers": [*__all__, "_EnvHFResolver"]})
