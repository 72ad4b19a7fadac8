"""The command line: parse arguments, call the Python API, print.

Heavy modules (experimaestro, numpy, requests) are imported by the API on
demand, never here: ``datamaestro --help`` stays fast.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, List, Optional

import typer

from .errors import DatamaestroError

app = typer.Typer(
    help="Datasets by id, prepared once into a content-addressed store.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
)


@dataclass
class State:
    """Global options, shared by every command."""

    overrides: dict[str, Any] = field(default_factory=dict)
    quiet: bool = False
    json: bool = False
    traceback: bool = False
    _context: Any = None

    def context(self):
        """The Context built from the global options (made current)."""
        if self._context is None:
            from .context import Context

            self._context = Context(overrides=self.overrides, progress=False if self.quiet else None)
            Context.set_instance(self._context)
        return self._context


state = State()


def echo(text: str = "") -> None:
    """Prints a line on stdout."""
    typer.echo(text)


def echo_json(value: Any) -> None:
    """Prints a value as indented JSON on stdout."""
    typer.echo(json.dumps(value, indent=2, default=str))


@app.callback()
def global_options(
    data: Optional[Path] = typer.Option(None, "--data", help="Data dir (default: $DATAMAESTRO_DIR or ~/datamaestro)."),
    store: Optional[Path] = typer.Option(None, "--store", help="Store dir (default: $DATAMAESTRO_STORE or <data>/store)."),
    offline: bool = typer.Option(False, "--offline", help="Never touch the network; list what is missing."),
    keep_downloads: bool = typer.Option(False, "--keep-downloads", help="Keep downloaded archives in the store."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors; no progress bars."),
    debug: bool = typer.Option(False, "--debug", help="Debug logging."),
    traceback: bool = typer.Option(False, "--traceback", help="Show the traceback of an error."),
    as_json: bool = typer.Option(False, "--json", help="Print tables as JSON."),
):
    """Global options come before the command: ``datamaestro --data DIR prepare ID``."""
    level = logging.DEBUG if debug else (logging.WARNING if quiet else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s %(message)s", stream=sys.stderr)
    state.overrides = {
        "data_dir": data,
        "store_dir": store,
        "offline": True if offline else None,
        "keep_downloads": True if keep_downloads else None,
    }
    state.quiet = quiet
    state.json = as_json
    state.traceback = traceback or debug


@app.command()
def search(terms: List[str] = typer.Argument(None, help="Free text, tag:X, task:X, repo:X, type:X (all must match).")):
    """Search datasets by id, name, description, tags, tasks, repository or type."""
    from .api import search_datasets

    entries = search_datasets(terms or [], context=state.context())
    if state.json:
        echo_json([asdict(e) for e in entries])
        return
    for entry in entries:
        echo(f"{entry.id}  {entry.name}" if entry.name else entry.id)
    if not entries and not state.quiet:
        typer.echo("no dataset matches", err=True)


@app.command()
def info(dataset_id: str = typer.Argument(..., metavar="ID")):
    """Show a dataset: name, description, tags, tasks and resources."""
    from .api import describe_dataset

    description = describe_dataset(dataset_id, context=state.context())
    if state.json:
        echo_json(description)
        return
    echo(f"{description['id']}: {description['name']}")
    for label, key in (("repository", "repository"), ("url", "url"), ("type", "type"), ("licence", "licence"), ("path", "datapath")):
        if description[key]:
            echo(f"  {label}: {description[key]}")
    for label in ("tags", "tasks", "aliases"):
        if description[label]:
            echo(f"  {label}: {', '.join(description[label])}")
    if description["description"]:
        echo("")
        echo(description["description"])
    echo("")
    echo("resources:")
    for resource in description["resources"]:
        flags = " (transient)" if resource["transient"] else ""
        depends = f" <- {', '.join(resource['depends_on'])}" if resource["depends_on"] else ""
        echo(f"  {resource['name']} [{resource['class']}, {resource['state']}]{flags}{depends}")
        for url in resource["urls"]:
            echo(f"      {url}")


@app.command()
def prepare(dataset_id: str = typer.Argument(..., metavar="ID")):
    """Make a dataset present and print its config as JSON (paths and id)."""
    from .api import config_to_json, prepare_dataset

    config = prepare_dataset(dataset_id, context=state.context())
    echo_json(config_to_json(config))


@app.command()
def download(dataset_id: str = typer.Argument(..., metavar="ID")):
    """Make a dataset present in the store and its readable path; print that path."""
    from .api import prepare_definition

    result = prepare_definition(dataset_id, context=state.context())
    if not state.quiet:
        echo(str(result.datapath))


@app.command()
def repositories():
    """List the installed dataset repositories (plugins)."""
    from .api import list_repositories

    entries = list_repositories(context=state.context())
    if state.json:
        echo_json([asdict(e) for e in entries])
        return
    for entry in entries:
        status = f" [error: {entry.error}]" if entry.error else ""
        echo(f"{entry.id}  {entry.version}  {entry.description}{status}")


@app.command()
def version():
    """Print datamaestro's version."""
    from . import __version__

    echo(__version__)


def main() -> None:
    """The console script: runs the app, turning DatamaestroError into one message."""
    try:
        app()
    except DatamaestroError as error:
        if state.traceback:
            import traceback

            traceback.print_exc()
        typer.echo(f"error: {error}", err=True)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
