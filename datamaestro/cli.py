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
from typer.core import TyperGroup

from .errors import DatamaestroError


def _options_of(command) -> dict:
    """A command's options by every name they answer to (``--quiet``, ``-q``)."""
    return {name: param for param in command.params if param.param_type_name == "option" for name in (*param.opts, *param.secondary_opts)}


def _option_width(arg: str, options: dict) -> int:
    """How many arguments an option of ``options`` occupies (1, or 2 with its value); 0 for anything else."""
    param = options.get(arg.split("=", 1)[0])
    if param is None:
        return 0
    return 1 if param.is_flag or param.count or "=" in arg else 2


def hoist_global_options(group: TyperGroup, ctx, args: list[str]) -> list[str]:
    """Moves global options typed after the command before it (``prepare ID --offline``).

    People type options where they think of them; click only reads a
    group's options before the command. An option the command defines
    itself (``sync --offline``) stays with the command, as does everything
    after ``--``. Arguments that cannot be understood are left as they are:
    click then reports them.
    """
    global_options = _options_of(group)
    width = _option_width
    start = 0
    while start < len(args) and args[start].startswith("-") and args[start] != "--":
        step = width(args[start], global_options)
        if step == 0:
            return args
        start += step
    command, end = group, start
    while isinstance(command, TyperGroup) and end < len(args) and not args[end].startswith("-"):
        command = command.get_command(ctx, args[end])
        if command is None:
            return args
        end += 1
    if end == start:
        return args
    own = _options_of(command)
    moved, kept, index = [], [], end
    while index < len(args):
        arg = args[index]
        if arg == "--":
            kept.extend(args[index:])
            break
        name = arg.split("=", 1)[0]
        if name in global_options and name not in own:
            step = width(arg, global_options)
            moved.extend(args[index : index + step])
        else:
            # a value of the command's own option is never taken for an option
            step = width(arg, own) or 1
            kept.extend(args[index : index + step])
        index += step
    return [*args[:start], *moved, *args[start:end], *kept]


class GlobalOptionsGroup(TyperGroup):
    """The top-level group: global options are accepted after the command too."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist_global_options(self, ctx, list(args)))


app = typer.Typer(
    cls=GlobalOptionsGroup,
    help="Datasets by id, prepared once into a content-addressed store.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
    # click's plain formatter: rich help rendering doubles the start-up time of --help
    rich_markup_mode=None,
)


@dataclass
class State:
    """Global options, shared by every command."""

    overrides: dict[str, Any] = field(default_factory=dict)
    quiet: bool = False
    json: bool = False
    traceback: bool = False
    _context: Any = None
    #: a warm ``prepare`` that missed (see :func:`_warm_prepare`): its options, id, Context and answer, used again by the full command
    warm_miss: Any = None

    def context(self):
        """The Context built from the global options (made current)."""
        if self._context is None:
            from . import session
            from .context import Context

            self._context = Context(overrides=self.overrides, progress=False if self.quiet else None)
            session.set_default(self._context)
        return self._context


state = State()


def echo(text: str = "") -> None:
    """Prints a line on stdout."""
    typer.echo(text)


def echo_json(value: Any) -> None:
    """Prints a value as indented JSON on stdout."""
    typer.echo(json.dumps(value, indent=2, default=str))


def _print_version(value: bool) -> None:
    """`--version`: prints the version and stops (before any command)."""
    if value:
        from .version import __version__

        echo(__version__)
        raise typer.Exit()


@app.callback()
def global_options(
    data: Optional[Path] = typer.Option(None, "--data", help="Data dir (default: $DATAMAESTRO_DIR or ~/datamaestro)."),
    store: Optional[Path] = typer.Option(None, "--store", help="Store dir (default: $DATAMAESTRO_STORE or <data>/store)."),
    offline: bool = typer.Option(False, "--offline", help="Never touch the network; list what is missing."),
    keep_downloads: bool = typer.Option(False, "--keep-downloads", help="Keep downloaded archives in the store."),
    timeout: Optional[float] = typer.Option(None, "--timeout", min=0.1, metavar="SECONDS", help="Give up a source that sends nothing for this long, retries included (default 60)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors; no progress bars."),
    debug: bool = typer.Option(False, "--debug", help="Debug logging."),
    traceback: bool = typer.Option(False, "--traceback", help="Show the traceback of an error."),
    as_json: bool = typer.Option(False, "--json", help="Print tables as JSON."),
    host: Optional[str] = typer.Option(None, "--host", help="Run the command on this host (over ssh), where the data is."),
    pythonpath: str = typer.Option("python3", "--pythonpath", help="The Python of --host that has datamaestro installed."),
    show_version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version, help="Print the version and exit."),
):
    """Global options go before or after the command: ``datamaestro --data DIR prepare ID``, ``datamaestro prepare ID --offline``."""
    if host:
        from .ssh import run_on_host

        raise typer.Exit(run_on_host(host, pythonpath, sys.argv[1:]))
    level = logging.DEBUG if debug else (logging.WARNING if quiet else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s %(message)s", stream=sys.stderr)
    state.overrides = global_overrides(data=data, store=store, offline=offline, keep_downloads=keep_downloads, timeout=timeout)
    state.quiet = quiet
    state.json = as_json
    state._context = None  # one per invocation (an in-process runner invokes the app many times)
    state.traceback = traceback or debug
    miss = state.warm_miss
    if miss is not None:
        if (miss.overrides, miss.quiet) == (state.overrides, quiet):
            # the warm path's Context, built from these same options: one Context per command
            from . import session

            state._context = miss.context
            session.set_default(miss.context)
        else:
            state.warm_miss = None


def global_overrides(*, data: Path | None, store: Path | None, offline: bool, keep_downloads: bool, timeout: float | None, **others) -> dict[str, Any]:
    """The ``Settings`` overrides the global options give (what both the warm path and :func:`global_options` hand the Context).

    :param others: the other global options, which set no setting
    """
    overrides = {"data_dir": data, "store_dir": store, "offline": True if offline else None, "keep_downloads": True if keep_downloads else None, "timeout": timeout}
    return {name: value for name, value in overrides.items() if value is not None}


def parse_global_options(argv: list[str]) -> tuple[dict[str, Any], list[str]] | None:
    """The global options of a command line, wherever they stand, parsed by click from their one definition (:func:`global_options`' signature, what typer parses too), and the other arguments; None when click refuses them.

    No option callback runs (``--version`` prints nothing here); the values
    are those :func:`global_options` receives.
    """
    from typer.core import TyperCommand
    from typer.main import get_params_convertors_ctx_param_name_from_function

    params, convertors, _ = get_params_convertors_ctx_param_name_from_function(global_options)
    for param in params:
        param.callback = None  # made for this parse only: `--version` is read, not acted on
    options = {name: param for param in params for name in (*param.opts, *param.secondary_opts)}
    given: list[str] = []
    rest: list[str] = []
    index = 0
    while index < len(argv):
        if argv[index] == "--":
            rest.extend(argv[index:])
            break
        # as hoist_global_options reads them: a global option and its value, or another argument
        step = _option_width(argv[index], options)
        (given if step else rest).extend(argv[index : index + (step or 1)])
        index += step or 1
    try:
        context = TyperCommand("datamaestro", params=params, add_help_option=False).make_context("datamaestro", given)
    except Exception:  # click's refusal (typer's own copy of click since 0.2x, click before): the full command says it
        return None
    return {name: convertors[name](value) if name in convertors and value is not None else value for name, value in context.params.items()}, rest


@app.command()
def search(terms: List[str] = typer.Argument(None, help="Free text, tag:X, task:X, repo:X, type:X (all must match).")):
    """Search datasets by id, name, description, tags, tasks, repository or type."""
    from .api import search_datasets

    entries = search_datasets(terms or [], context=state.context())
    if state.json:
        echo_json([asdict(e) for e in entries])
    else:
        for entry in entries:
            echo(f"{entry.id}  {entry.name}" if entry.name else entry.id)
    if not entries:
        if not state.quiet:
            from .api import search_hint

            hint = search_hint(terms or [], context=state.context())
            typer.echo("no dataset matches" + (f"\n  hint: {hint}" if hint else ""), err=True)
        raise typer.Exit(1)


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
            echo_mirrors(resource["mirrors"].get(url, []))
    if description.get("remotes"):
        echo("")
        echo("remote caches (asked before the original sources):")
        for remote in description["remotes"]:
            echo(f"  {remote['name']} ({remote['url']}): {remote['records']}")


def echo_mirrors(mirrors: list[str]) -> None:
    """Under a URL of ``info``: the mirrors tried before it, in order (the [mirrors] setting)."""
    for position, mirror in enumerate(mirrors, 1):
        echo(f"        mirror {position}: {mirror}" if len(mirrors) > 1 else f"        mirror: {mirror}")
    if mirrors:
        offline = state.context().settings.offline
        echo("        (offline: only its file:// mirrors are read)" if offline else "        then the URL itself")


@app.command()
def prepare(
    dataset_id: str = typer.Argument(..., metavar="ID"),
    lock: Optional[Path] = typer.Option(None, "--lock", help="Lock file to verify against (default: the project's datamaestro.lock)."),
    verify: str = typer.Option("trust", "--verify", help="trust: objects in the store are what their names say; full: rehash them."),
    encoder: str = typer.Option("json", "--encoder", help="json: plain values; xpm: experimaestro's serialized form (types, identifiers)."),
):
    """Make a dataset present and print its config as JSON (paths and id)."""
    from .api import prepare_dataset_json

    # a warm dataset is answered from its warm record, without importing its definition
    miss = state.warm_miss
    warm = miss.answer if miss is not None and miss.dataset_id == dataset_id and lock is None and state._context is miss.context else None
    echo_json(prepare_dataset_json(dataset_id, context=state.context(), lock=lock, verify=verify, warm=warm, encoder=encoder))


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
    from .version import __version__

    echo(__version__)


# -- the project's datasets, its lock, sync


@app.command()
def add(dataset_ids: List[str] = typer.Argument(..., metavar="ID...")):
    """Add datasets to the project's [tool.datamaestro] datasets (pyproject.toml)."""
    from .api import add_datasets

    added = add_datasets(dataset_ids, context=state.context())
    for dataset_id in added:
        echo(f"added {dataset_id}")
    if not added and not state.quiet:
        echo(f"{', '.join(dataset_ids)} {'is' if len(dataset_ids) == 1 else 'are'} already listed; run `datamaestro lock` to lock {'it' if len(dataset_ids) == 1 else 'them'}")


@app.command()
def remove(dataset_ids: List[str] = typer.Argument(..., metavar="ID...")):
    """Remove datasets from the project's [tool.datamaestro] datasets."""
    from .api import remove_datasets

    for entry in remove_datasets(dataset_ids, context=state.context()):
        echo(f"removed {entry}")


@app.command("rm")
def rm(
    dataset_id: str = typer.Argument(..., metavar="ID"),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only say what would be removed and freed."),
):
    """Remove a dataset's readable folder, and free the store of what nothing else uses."""
    from .api import remove_dataset

    report = remove_dataset(dataset_id, dry_run=dry_run, context=state.context())
    if state.json:
        echo_json(asdict(report))
        return
    release = report.release
    for message in release.errors if release else []:
        typer.echo(f"error: {message}", err=True)
    if release is not None and release.left_to_owner:
        echo(
            f"{'would leave' if dry_run else 'left'} {release.left_to_owner} entries of other members: in a group store only "
            "the store's owner (or root) collects them"
        )
    if state.quiet:
        return
    echo(f"{'would remove' if dry_run else 'removed'} {report.folder}")
    if release is None:
        return
    if release.kept:
        echo(f"its data stays in the store: {describe_keepers(release.kept)}")
        return
    echo(
        f"{'would free' if dry_run else 'freed'} {plural(len(release.objects_deleted), 'object')} ({human_bytes(release.bytes_deleted)})"
        + (f"; {plural(release.kept_objects, 'object')} stay, used by other data" if release.kept_objects else "")
    )


def describe_keepers(keepers) -> str:
    """``lock /p/datamaestro.lock; data dir /d (image/com/lecun/mnist)``."""
    parts = []
    for keeper in keepers:
        root = keeper.root
        where = f" on {root.host}" if root.elsewhere else ""
        if root.kind == "data" and not root.elsewhere:
            parts.append(f"data dir {root.path}{where} ({', '.join(keeper.via)})")
        else:
            parts.append(f"{'lock file' if root.kind == 'lock' else 'data dir'} {root.path}{where}")
    return "; ".join(parts)


@app.command()
def lock(
    check: bool = typer.Option(False, "--check", help="Only check that the lock is up to date (exit 2 if not)."),
    upgrade: bool = typer.Option(False, "--upgrade", help="Resolve again (download every URL again): all datasets, or the IDs given."),
    dataset_ids: List[str] = typer.Argument(None, metavar="[ID...]", help="With --upgrade: the datasets to resolve again."),
):
    """Write datamaestro.lock next to pyproject.toml: the exact data of the project's datasets."""
    from .api import check_lock, lock_project
    from .errors import LockFileError, UsageError

    if dataset_ids and not upgrade:
        raise UsageError("dataset ids are only given with --upgrade", hint="`datamaestro lock --upgrade ID` resolves ID again")
    if check and upgrade:
        raise UsageError(
            "--check and --upgrade cannot go together: --check only reads the lock, --upgrade writes it again",
            hint="run `datamaestro lock --upgrade`, then `datamaestro lock --check`",
        )
    context = state.context()
    if check:
        reasons = check_lock(context=context)
        if reasons:
            raise LockFileError("datamaestro.lock is out of date: " + "; ".join(reasons), hint="run `datamaestro lock` and commit the lock file")
        if not state.quiet:
            echo("datamaestro.lock is up to date")
        return
    report = lock_project(upgrade=(list(dataset_ids or []) or True) if upgrade else False, context=context)
    if not report.resolved and not report.kept:
        typer.echo("the project lists no dataset ([tool.datamaestro] datasets in pyproject.toml): add one with `datamaestro add ID`, then lock", err=True)
    if state.json:
        echo_json({"path": report.path, "written": report.written, "kept": report.kept, "resolved": report.resolved})
        return
    if not state.quiet:
        echo(f"{'wrote' if report.written else 'unchanged'} {report.path}: {len(report.resolved)} resolved, {len(report.kept)} kept")


@app.command()
def sync(
    locked: bool = typer.Option(False, "--locked", help="Fail if the lock is out of date (instead of locking again)."),
    frozen: bool = typer.Option(False, "--frozen", help="Use the lock as it is: no check against the project's definitions."),
    offline: bool = typer.Option(False, "--offline", help="Never touch the network (folders given with --from are used)."),
    sources: List[str] = typer.Option(None, "--from", help="A store folder or http(s) URL to take objects from first (repeatable)."),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", min=1, help="Objects copied at once."),
    copy: bool = typer.Option(False, "--copy", help="Copy the objects of --from folders instead of hard-linking them (a real backup: the two stores share no file)."),
    verify: str = typer.Option("trust", "--verify", help="trust: objects in the store are what their names say; full: rehash the project's data first."),
):
    """Make every locked dataset present, verified, and shown by its readable folder.

    Objects of a --from store folder on the same file system (and owned by
    you) are hard-linked, not copied: fast and free of extra space, but the
    two stores then share those files, so a byte damaged in one shows in the
    other. Objects are read-only; use --copy for a store that must survive
    damage to the other (a backup).
    """
    from .api import sync_project

    if offline:
        state.overrides["offline"] = True
    report = sync_project(locked=locked, frozen=frozen, peers=list(sources or []), jobs=jobs, copy=copy, verify=verify, context=state.context())
    if state.json:
        echo_json(asdict(report))
        return
    for line in report.notes + report.transfer.unavailable + report.transfer.refused:
        typer.echo(line, err=True)
    if state.quiet:
        return
    if report.relocked:
        echo(f"locked again: {report.lock}")
    if verify == "full":
        echo(f"rehashed {plural(report.verified, 'object')}: {len(report.damaged) or 'none'} damaged")
    for label, count in sorted(report.transfer.taken.items()):
        echo(f"took {plural(count, 'object')} from {label}")
    counts = {}
    for how in report.datasets.values():
        counts[how] = counts.get(how, 0) + 1
    summary = ", ".join(f"{n} {how}" for how, n in sorted(counts.items())) or "nothing locked"
    echo(f"synced {plural(len(report.datasets), 'dataset')} ({summary}) in {report.seconds:.2f}s")


store_app = typer.Typer(help="Inspect and maintain the content-addressed store.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(store_app, name="store")


def plural(count: int, noun: str) -> str:
    """``1 dataset``, ``2 datasets``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def human_bytes(size: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size} B"


@store_app.command("info")
def store_info():
    """Location, layout version, sharing, and what the store holds."""
    from .store.maintenance import store_info as info_of

    info = info_of(state.context().store)
    if state.json:
        echo_json(asdict(info))
        return
    echo(f"location: {info.location}")
    echo(f"layout version: {info.layout_version}")
    echo(f"shared: {'yes, group ' + str(info.group) if info.shared else 'no'}")
    echo(f"objects: {info.objects} ({human_bytes(info.object_bytes)})")
    echo(f"trees: {info.trees}, views: {info.views}, actions: {info.actions}")
    echo(f"roots: {', '.join(f'{n} {k}' for k, n in info.roots.items())}")
    echo(f"in-flight (tmp): {info.tmp_entries}, quarantined: {info.quarantined}")
    if info.not_objects:
        echo(f"not objects: {info.not_objects} entries of objects/ (`datamaestro store verify` names them)")


@store_app.command("verify")
def store_verify(jobs: Optional[int] = typer.Option(None, "--jobs", "-j", min=1, help="Small files hashed at once: processes on a local disk (default: one per core), threads on a network file system (default: 4 per core).")):
    """Rehash every object; quarantine (never delete) those whose content changed."""
    from .store.verify import verify  # not .store.maintenance: gc's, du's, info's modules are not needed here

    report = verify(state.context().store, jobs=jobs)
    if state.json:
        echo_json(asdict(report))
    else:
        rate = report.bytes / report.seconds if report.seconds else 0
        echo(f"checked {report.checked} objects, {human_bytes(report.bytes)} in {report.seconds:.1f}s ({human_bytes(rate)}/s)")
        for corrupt in report.corrupt:
            if corrupt.quarantined is None:
                echo(
                    f"CORRUPT {corrupt.digest}: content hashes to {corrupt.actual}; not moved: it belongs to {corrupt.owner}, "
                    f"and only {corrupt.owner} or the store's owner may move it (`datamaestro store verify`)"
                )
            else:
                echo(f"CORRUPT {corrupt.digest}: content hashes to {corrupt.actual}; moved to {corrupt.quarantined}")
        for digest in report.trees_removed:
            echo(f"removed tree {digest} (it held a corrupt object; the next prepare rebuilds it)")
        for digest in report.malformed:
            echo(f"malformed tree or manifest object {digest}")
        for message in report.errors:
            echo(f"error: {message}")
        for message in report.not_objects:
            echo(message)
    if not report.ok:
        raise typer.Exit(1)


@store_app.command("gc")
def store_gc(
    dry_run: bool = typer.Option(False, "--dry-run", help="Only say what would be deleted."),
    grace: float = typer.Option(3600, "--grace", min=0, help="Keep unreachable objects younger than this (seconds)."),
):
    """Delete what no root (data dir in use, registered lock file) reaches."""
    from .store.maintenance import gc

    report = gc(state.context().store, dry_run=dry_run, grace_seconds=grace)
    if state.json:
        echo_json(asdict(report))
        return
    verb = "would delete" if dry_run else "deleted"
    echo(
        f"{verb} {len(report.objects_deleted)} objects ({human_bytes(report.bytes_deleted)}), "
        f"{len(report.trees_deleted)} trees, {len(report.views_deleted)} views; kept {report.objects_live} live objects, "
        f"{report.kept_young} younger than the grace period"
    )
    if report.roots_elsewhere:
        echo(f"kept what {report.roots_elsewhere} roots of other machines use (their paths cannot be checked from here)")
    for root in report.roots_dropped:
        echo(f"{'would drop' if dry_run else 'dropped'} root {root.kind} {root.path} (gone)")
    if report.left_to_owner:
        echo(
            f"left {report.left_to_owner} unreachable entries of other members: in a group store only the store's "
            "owner (or root) collects them"
        )
    for message in report.errors:
        echo(f"error: {message}")
    for message in report.not_objects:
        echo(message)


@store_app.command("du")
def store_du():
    """Disk usage per dataset; bytes shared by several datasets are counted once in the total."""
    from .store.maintenance import disk_usage

    from .ids import dataset_of_path

    usage = disk_usage(state.context().store)
    if state.json:
        found = asdict(usage)
        for dataset, row in zip(usage.datasets, found["datasets"]):
            row["repository"], row["id"] = dataset_of_path(dataset.path)
        echo_json(found)
        return
    if not usage.datasets:
        typer.echo("no dataset folder uses the store (nothing prepared yet, or every data dir is gone)", err=True)
        return
    rows = [(*dataset_of_path(dataset.path), dataset) for dataset in sorted(usage.datasets, key=lambda d: -d.bytes)]
    width = max(len("DATASET"), *(len(dataset_id) for _, dataset_id, _ in rows))
    repo_width = max(len("REPO"), *(len(repository) for repository, _, _ in rows))
    echo(f"{'DATASET':<{width}}  {'REPO':<{repo_width}}  {'SIZE':>10}  {'UNIQUE':>10}  FOLDER")
    for repository, dataset_id, dataset in rows:
        echo(
            f"{dataset_id:<{width}}  {repository:<{repo_width}}  {human_bytes(dataset.bytes):>10}  "
            f"{human_bytes(dataset.unique_bytes):>10}  {dataset.data_dir}/data/{dataset.path}"
        )
    echo(f"total: {human_bytes(usage.total_bytes)} in {plural(usage.objects, 'object')} (bytes shared by several datasets counted once)")


@store_app.command("roots")
def store_roots():
    """List the gc roots: the data dirs and lock files whose data the store keeps."""
    roots = state.context().store.roots()
    if state.json:
        echo_json([{**asdict(root), "elsewhere": root.elsewhere} for root in roots])
        return
    if not roots:
        typer.echo("no root: nothing keeps data in this store (the next `store gc` deletes all of it)", err=True)
    for root in roots:
        if root.elsewhere:
            state_ = f"on {root.host}"
        else:
            alive = root.path.is_dir() if root.kind == "data" else root.path.exists()
            state_ = "live" if alive else "gone (the next gc drops it)"
        kept = plural(len(root.manifests), "manifest") if root.kind == "lock" else plural(len(root.published), "published manifest")
        echo(f"{root.kind:<4}  {root.path}  [{state_}]  {kept}")


@store_app.command("why")
def store_why(target: str = typer.Argument(..., metavar="DIGEST|ID", help="An object, tree or manifest digest, or a dataset id.")):
    """Say which roots keep an object (or a dataset's data) in the store."""
    from .api import why_kept

    digest, keepers = why_kept(target, context=state.context())
    if state.json:
        echo_json({"digest": digest, "kept_by": [asdict(keeper) for keeper in keepers]})
        return
    if not keepers:
        echo(f"nothing keeps {digest}: the next `datamaestro store gc` deletes it (once older than the grace period)")
        return
    echo(f"{digest} is kept by:")
    for keeper in keepers:
        echo(f"  {describe_keepers([keeper])}")


@store_app.command("init")
def store_init(group: Optional[str] = typer.Option(None, "--group", help="Unix group that shares the store.")):
    """Create the store, or set it up for a Unix group (setgid, group-writable folders)."""
    from .errors import StoreError, UsageError
    from .store import group_id
    from .store.maintenance import init_store

    if group is not None:
        try:
            group_id(group)
        except StoreError as error:  # a bad option value: exit status 2
            raise UsageError(error.message, hint=error.hint) from None
    store = init_store(state.context().store_dir, group=group)
    echo(f"store at {store.root}" + (f", shared by group {group}" if group else ""))


@store_app.command("export")
def store_export(
    lock_file: Path = typer.Argument(..., metavar="LOCKFILE"),
    folder: Path = typer.Argument(..., metavar="DIR"),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", min=1, help="Objects copied at once."),
):
    """Copy exactly the objects a lock needs into DIR, laid out as a store (for `sync --from DIR`)."""
    from .api import export_lock

    report = export_lock(lock_file, folder, jobs=jobs, context=state.context())
    if state.json:
        echo_json(asdict(report))
    elif not state.quiet:
        echo(f"exported {report.objects} objects to {report.folder} ({report.copied} copied, {human_bytes(report.bytes)})")


@store_app.command("push")
def store_push(
    remote: str = typer.Argument(..., metavar="NAME|URL", help="A remote of the settings ([remotes.NAME]), or s3://bucket/prefix, or a folder."),
    dataset_ids: List[str] = typer.Argument(None, metavar="[ID]..."),
    lock: bool = typer.Option(False, "--lock", help="Also push every dataset the project's datamaestro.lock pins."),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", min=1, help="Uploads at once (default 16)."),
    sign: Optional[Path] = typer.Option(None, "--sign", metavar="FILE", help="Sign the action records with this secret key (`store key generate`); default: the remote's signing_key."),
):
    """Upload what this store holds of some datasets (objects, trees, action records) to a remote cache."""
    from .api import push_datasets

    report = push_datasets(remote, list(dataset_ids or []), lock=lock, jobs=jobs, sign=sign, context=state.context())
    if state.json:
        echo_json(asdict(report))
        return
    for line in report.notes:
        typer.echo(line, err=True)
    if not state.quiet:
        echo(
            f"pushed {report.objects_sent} objects ({human_bytes(report.bytes_sent)}) and {report.actions_sent} action records "
            f"of {len(report.datasets)} datasets to {report.remote}; {report.objects_present} objects were there already "
            f"({report.seconds:.1f}s)" + (f"; records signed by {report.signed_by}" if report.signed_by else "")
        )


key_app = typer.Typer(help="Keys that sign the action records pushed to a remote cache.", no_args_is_help=True, rich_markup_mode=None)
store_app.add_typer(key_app, name="key")


@key_app.command("generate")
def store_key_generate(
    name: str = typer.Argument(..., metavar="NAME", help="The key's name (lab-ci): signatures and trusted_keys carry it."),
    out: Optional[Path] = typer.Option(None, "--out", metavar="FILE", help="Where to write the secret key (default: <config folder>/keys/NAME.secret)."),
):
    """Write a new Ed25519 secret key (mode 0600); its public key, for trusted_keys, is the last line printed."""
    from .remotes.signing import generate_key

    path, public = generate_key(name, out)
    if state.json:
        echo_json({"name": name, "secret_key_file": str(path), "public_key": public})
        return
    if not state.quiet:
        echo(f"secret key written to {path} (mode 0600): keep it secret, e.g. as a CI secret; never commit it")
        echo("its public key, for trusted_keys = [...] in the members' [remotes.NAME]:")
    echo(public)


datafolders_app = typer.Typer(help="Folders you provide by hand (licensed data), by id.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(datafolders_app, name="datafolders")


@datafolders_app.command("list")
def datafolders_list():
    """List the data folders set, and those the installed datasets ask for."""
    from .api import list_datafolders

    folders = list_datafolders(context=state.context())
    if state.json:
        echo_json(folders)
        return
    if not folders:
        typer.echo("no data folder is set, and no installed dataset asks for one", err=True)
    for folder in folders:
        where = folder["path"] or "(not set)"
        used = f"  used by {', '.join(folder['datasets'][:3])}{' ...' if len(folder['datasets']) > 3 else ''}" if folder["datasets"] else ""
        echo(f"{folder['id']}\t{where}{used}")


@datafolders_app.command("set")
def datafolders_set(
    folder_id: str = typer.Argument(..., metavar="ID", help="The data folder's id (datamaestro datafolders list)."),
    path: Path = typer.Argument(..., help="Where the folder is."),
):
    """Say where a data folder is (written in the user settings file)."""
    from .api import set_datafolder

    settings_file = set_datafolder(folder_id, path, context=state.context())
    if not state.quiet:
        echo(f"{folder_id} = {path.expanduser().resolve()}  (in {settings_file})")


@app.command()
def agree(agreement_id: str = typer.Argument(..., metavar="ID", help="The agreement's id (shown by prepare).")):
    """Accept a user agreement (recorded in the user settings file)."""
    from .api import accept_agreement

    settings_file = accept_agreement(agreement_id, context=state.context())
    if not state.quiet:
        echo(f"accepted {agreement_id} (in {settings_file})")


@app.command()
def trust():
    """Use this project's remotes, mirrors, store, data and agreements (its pyproject.toml as it is now; read them first)."""
    from .api import trust_project

    pyproject, settings_file, keys = trust_project()
    if not state.quiet:
        what = f"its {', '.join(keys)} are used" if keys else "it sets none of remotes, mirrors, store, data, agreements"
        echo(f"trusted {pyproject} as it is now: {what} (recorded in {settings_file}; run `datamaestro trust` again after it changes)")


@app.command()
def orphans(size: bool = typer.Option(False, "--size", help="Show the size of each folder.")):
    """List folders under <data dir>/data that no installed dataset claims."""
    from .api import find_orphans

    found = find_orphans(context=state.context(), sizes=size)
    if state.json:
        echo_json([{"path": str(path), "bytes": nbytes} for path, nbytes in found])
        return
    if not found:
        typer.echo(f"no orphan folder under {state.context().data_dir / 'data'}", err=True)
    for path, nbytes in found:
        echo(f"{human_bytes(nbytes):>10}  {path}" if size else str(path))


@app.command("create-dataset")
def create_dataset(
    repository: str = typer.Argument(..., help="The repository's namespace (datamaestro repositories)."),
    dataset_id: str = typer.Argument(..., metavar="ID", help="The new id (org.example.corpus) or the dataset's URL."),
):
    """Write a class-style definition to fill in, in a repository's config package."""
    from .api import create_definition

    path = create_definition(repository, dataset_id, context=state.context())
    echo(str(path))


@app.command()
def check(repositories: List[str] = typer.Argument(None, help="Namespaces to check (default: all).")):
    """Check repositories: every module imports, ids are unique, every config builds (nothing is downloaded)."""
    from .api import check_repositories

    reports = check_repositories(repositories or [], context=state.context())
    if state.json:
        echo_json([{**asdict(r), "ok": r.ok} for r in reports])
    else:
        for report in reports:
            echo(
                f"{report.repository}: {report.modules} modules, {report.configs_built}/{report.datasets} configs built"
                f" in {report.seconds:.1f}s{'' if report.ok else ' - FAILED'}"
            )
            for failure in report.module_failures:
                echo(f"  module {failure.what}: {failure.reason}")
            for duplicate in report.duplicate_ids:
                echo(f"  id defined twice: {duplicate}")
            for failure in report.config_failures:
                echo(f"  config {failure.what}: {failure.reason}")
    if not all(report.ok for report in reports):
        raise typer.Exit(1)


class Terminated(SystemExit):
    """SIGTERM (what a job scheduler sends before killing): unwind like Ctrl-C."""


#: how long a signal that arrived inside the import machinery waits before it is delivered again
SIGNAL_RETRY_SECONDS = 0.05


def _in_import_machinery(frame) -> bool:
    """Whether ``frame`` or a frame that called it is Python's import machinery (``importlib._bootstrap``)."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _raise_outside_imports(signum: int, frame, exception: BaseException) -> None:
    """Raises ``exception`` where the signal found the main thread, unless that is inside an import.

    An exception raised inside the import machinery can leave it broken: in
    the weak-reference callback that drops a module lock, between taking
    the global import lock and the ``try`` that releases it, the exception
    is swallowed ("Exception ignored in ... _get_module_lock") and the lock
    stays held, so every other thread's next import waits forever (a
    SIGINT during start-up hung a prepare in a busy run of the suite).
    There, the signal is sent again a moment later, until it finds the
    main thread outside any import.
    """
    if _in_import_machinery(frame):
        import os
        import threading

        timer = threading.Timer(SIGNAL_RETRY_SECONDS, os.kill, (os.getpid(), signum))
        timer.daemon = True
        timer.start()
        return
    raise exception


def _interrupt(signum, frame) -> None:
    """Ctrl-C: ``KeyboardInterrupt``, as Python's own handler, but never inside an import."""
    _raise_outside_imports(signum, frame, KeyboardInterrupt())


def _terminate(signum, frame) -> None:
    # raising unwinds every `with` block: half-written objects leave tmp/ at
    # once instead of waiting for a later run on this host to reap them
    _raise_outside_imports(signum, frame, Terminated(143))


def install_signal_handlers() -> None:
    """Ctrl-C and SIGTERM unwind the command (``KeyboardInterrupt``, :class:`Terminated`), outside the import machinery."""
    import signal

    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not when Ctrl-C is ignored (nohup, a job's background)
        signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _terminate)


#: global options that do more than set the Context (another host, the version, logging): the full command line runs then
_NOT_WARM = ("host", "show_version", "debug", "traceback")


def _warm_prepare(argv: list[str]) -> bool:
    """Answers ``datamaestro [global options] prepare ID`` (the options before or after the command) from a warm record; False otherwise.

    Running a typer command loads its parameter machinery (pydantic), which
    costs more than the whole warm answer: so this one command line is read
    here first, its global options by :func:`parse_global_options` (click,
    from the one definition typer reads). Anything else (an option of
    ``prepare``, one of :data:`_NOT_WARM`, no valid warm record, any error)
    returns False, and the full command line runs as usual.
    """
    parsed = parse_global_options(argv)
    if parsed is None:
        return False
    values, rest = parsed
    if any(values[name] for name in _NOT_WARM) or len(rest) != 2 or rest[0] != "prepare" or rest[1].startswith("-"):
        return False
    overrides, quiet = global_overrides(**values), values["quiet"]
    try:
        from .api import warm_prepare
        from .context import Context

        context = Context(overrides=overrides, progress=False if quiet else None)
        answer = warm_prepare(rest[1], context=context)
    except DatamaestroError:
        return False  # the full command says what is wrong
    if answer.config is None:
        # the full command uses this Context and this answer: the record is not read twice
        state.warm_miss = WarmMiss(overrides, quiet, rest[1], context, answer)
        return False
    echo_json(answer.config)
    return True


@dataclass
class WarmMiss:
    """A warm ``prepare`` that found no valid record: what the full command takes over (same options, same id)."""

    overrides: dict
    quiet: bool
    dataset_id: str
    context: Any
    answer: Any


def _interrupted(exc: BaseException) -> bool:
    """Whether ``exc`` comes (through its chain of causes) from a Ctrl-C."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _sweep_after_signal() -> None:
    """The store's tmp swept once more on the way out of a signal (a download thread may have written after the first sweep)."""
    if "datamaestro.store.objects" in sys.modules:  # nothing to sweep when no store was opened
        from .store.objects import sweep_own_tmp_again

        sweep_own_tmp_again()


def main() -> None:
    """The console script: runs the app, turning DatamaestroError into one message."""
    install_signal_handlers()
    try:
        if _warm_prepare(sys.argv[1:]):
            return
        app()
    except DatamaestroError as error:
        if state.traceback:
            import traceback

            traceback.print_exc()
        typer.echo(f"error: {error}", err=True)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        _sweep_after_signal()
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Terminated:
        _sweep_after_signal()
        typer.echo("terminated", err=True)
        sys.exit(143)
    except SystemExit as exit_:
        # typer turns a KeyboardInterrupt into Exit(130) itself, silently
        if exit_.code == 130 and _interrupted(exit_):
            _sweep_after_signal()
            typer.echo("interrupted", err=True)
        raise
    finally:
        state.warm_miss = None  # for this command line only (an in-process runner runs many)
