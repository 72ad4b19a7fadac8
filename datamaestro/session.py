"""The session in scope: which :class:`~datamaestro.context.Context` model objects read.

Data configs and dataset definitions sometimes need the session that made
them (a config's ``prepare()`` run by experimaestro in another process, a
definition's readable folder). They read it here, from one ``ContextVar``,
instead of importing the context module: this module imports nothing of
datamaestro, so every layer may use it.

``Context.__enter__`` sets it, ``__exit__`` restores the previous one; the
API passes its context explicitly down the main path and sets it only for
the code of plugins that reads it back. Outside any ``with``, the first
reader gets a default context from the environment, made by the factory the
package registers (``datamaestro/__init__.py``), so that this module never
names the class.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from typing import Any, Callable

_current: ContextVar[Any] = ContextVar("datamaestro_session", default=None)
#: the context used outside any ``with Context()``, made on first use
_default: Any = None
_factory: Callable[[], Any] | None = None


def set_default_factory(factory: Callable[[], Any]) -> None:
    """Registers what makes the default session (called once by the package)."""
    global _factory
    _factory = factory


def current() -> Any:
    """The session in scope: the innermost ``with Context()``, else the default one."""
    context = _current.get()
    if context is not None:
        return context
    return default()


def default() -> Any:
    """The default session, made from the environment on first use."""
    global _default
    if _default is None:
        if _factory is None:
            raise RuntimeError("datamaestro.session: no default context factory is registered")
        _default = _factory()
    return _default


def set_default(context: Any) -> None:
    """Replaces the default session (None: make a new one on next use)."""
    global _default
    _default = context


def enter(context: Any) -> Token:
    """Makes ``context`` the session in scope; returns the token :func:`leave` takes."""
    return _current.set(context)


def leave(token: Token) -> None:
    """Restores the session that was in scope before :func:`enter`."""
    _current.reset(token)


def in_scope() -> Any:
    """The session of the innermost ``with Context()``, or None (the default is not made)."""
    return _current.get()
