"""The bodies of the commands around datasets, one module per command (or pair of commands).

:mod:`datamaestro.api` calls them (the CLI calls the API); each function
takes the :class:`~datamaestro.context.Context` to work in:
:mod:`~datamaestro.commands.datafolders` (``datafolders``),
:mod:`~datamaestro.commands.remove` (``rm``, ``store why``),
:mod:`~datamaestro.commands.agreements` (``accept``),
:mod:`~datamaestro.commands.orphans` (``orphans``),
:mod:`~datamaestro.commands.scaffold` (``create-dataset``),
:mod:`~datamaestro.commands.audit` (``check``: a repository's modules import, its ids are unique, its configs build),
:mod:`~datamaestro.commands.push` (``store push``),
:mod:`~datamaestro.commands.xpm` (``prepare --encoder json|xpm``: a config's printed forms).
"""
