"""``python -m datamaestro``: the command line."""

from .cli import main

main()
