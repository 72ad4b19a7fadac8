"""``python -m benchmarks [--quick] [--offline] [NAME...]``: runs benchmarks, prints one table, writes it with a plot.

A benchmark is any module of this package whose name does not start with
``_`` and that defines ``run(work, quick)`` returning rows
(:class:`~benchmarks._common.Row`) and scaling curves
(:class:`~benchmarks._common.Curve`); it is found without being listed
here. A module whose ``run`` also takes ``offline`` is told to skip what
needs the network (PyPI); the others never use it. A full run of every
benchmark writes ``benchmarks/results.md``, ``results.json`` and
``results.png`` (the committed figures); a quick or partial run writes into
the work folder instead, so that it never replaces them (``--output``
chooses).
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import inspect
import json
import os
import platform
import pkgutil
import shutil
import subprocess
import sys
import time
import traceback
from dataclasses import asdict
from pathlib import Path

from benchmarks._common import BENCH_DIR, GiB, REPO_ROOT, WORK_DIR, Curve, Row, size_label

COLUMNS = ("benchmark", "measure", "value", "reference", "ratio", "target", "met", "note")


def available() -> list[str]:
    """Names of every benchmark module, sorted."""
    return sorted(info.name for info in pkgutil.iter_modules([str(BENCH_DIR)]) if not info.ispkg and not info.name.startswith("_"))


def run_benchmark(name: str, work: Path, quick: bool, offline: bool = False) -> list[Row | Curve]:
    """Runs one benchmark; a failure becomes a row saying so (the others still run)."""
    started = time.perf_counter()
    try:
        module = importlib.import_module(f"benchmarks.{name}")
        options = {"offline": offline} if "offline" in inspect.signature(module.run).parameters else {}
        rows = module.run(work, quick, **options)
    except Exception as exc:
        traceback.print_exc()
        rows = [Row(name, "FAILED", None, note=f"{type(exc).__name__}: {exc}".splitlines()[0][:200], met=False)]
    print(f"[{name}: {time.perf_counter() - started:.0f} s]", file=sys.stderr)
    return rows


def _number(value: float | None) -> str:
    if value is None:
        return ""
    if value == 0 or abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def cells(row: Row) -> list[str]:
    """The table cells of a row (value and reference carry the unit)."""
    unit = f" {row.unit}" if row.unit else ""
    met = {True: "yes", False: "**NO**", None: ""}[row.met]
    return [
        row.benchmark,
        row.measure,
        "skipped" if row.skipped and row.value is None else _number(row.value) + (unit if row.value is not None else ""),
        "skipped" if row.skipped and row.reference is None else _number(row.reference) + (unit if row.reference is not None else ""),
        _number(row.ratio),
        row.target,
        met,
        row.note,
    ]


def text_table(rows: list[Row]) -> str:
    """The rows as an aligned plain-text table (notes left out: they are in the Markdown)."""
    table = [list(COLUMNS[:-1])] + [cells(row)[:-1] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in table)


def markdown_table(rows: list[Row]) -> str:
    """The rows as a Markdown table."""

    def line(values):
        return "| " + " | ".join(v.replace("|", "\\|") for v in values) + " |"

    return "\n".join([line(COLUMNS), line(["---"] * len(COLUMNS))] + [line(cells(row)) for row in rows])


def _x_label(curve: Curve, x: float) -> str:
    return size_label(int(x)) if curve.x_unit == "B" else f"{x:,.0f}"


def curve_table(curve: Curve) -> str:
    """A curve as a Markdown table: one line per x, one column per series."""
    xs = sorted({point[0] for points in curve.series.values() for point in points})
    values = {label: dict((x, y) for x, y in points) for label, points in curve.series.items()}
    header = [curve.x_label] + [f"{label} ({curve.y_unit})" for label in curve.series]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for x in xs:
        line = [_x_label(curve, x)] + [_number(values[label].get(x)) for label in curve.series]
        lines.append("| " + " | ".join(line) + " |")
    return "\n".join(lines)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _commit() -> str:
    try:
        done = subprocess.run(["git", "-C", str(REPO_ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True)
        return done.stdout.strip()
    except OSError:
        return ""


def machine(work: Path) -> dict[str, str]:
    """What the figures were measured on."""
    memory = _memory_bytes()
    work.mkdir(parents=True, exist_ok=True)
    return {
        "CPU": _cpu_model(),
        "cores": f"{os.cpu_count()} ({len(os.sched_getaffinity(0))} usable)" if hasattr(os, "sched_getaffinity") else str(os.cpu_count()),
        "memory": f"{memory / GiB:.1f} GiB" if memory else "unknown",
        "disk free (work folder)": f"{shutil.disk_usage(work).free / GiB:.0f} GiB",
        "system": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "commit": _commit(),
        "load average at start (1, 5, 15 min)": ", ".join(f"{v:.2f}" for v in os.getloadavg()),
    }


def markdown(rows: list[Row], curves: list[Curve], description: dict[str, str], *, command: str, plot: str | None) -> str:
    """The whole results page.

    :param command: the command line that wrote it
    :param plot: the plot's file name, next to the page (None: not drawn)
    """
    lines = [
        "# Benchmark results",
        "",
        f"Written by `{command}`. "
        "Ratios compare datamaestro with a reference measured in the same run; "
        "the `met` column says whether the target is reached (**NO** marks a missed target). "
        "How to run them and what each measures: [docs/benchmarks.md](../docs/benchmarks.md).",
        "",
    ]
    if plot:
        lines += [f"![Scaling curves and ratios against their targets]({plot})", ""]
    lines += ["## Machine", ""]
    lines += [f"- {key}: {value}" for key, value in description.items()]
    lines += ["", "## Figures", "", markdown_table(rows), ""]
    if curves:
        lines += ["## Scaling curves", ""]
        for curve in curves:
            lines += [f"### {curve.benchmark}: {curve.title}", "", curve.note + ".", "", curve_table(curve), ""]
    return "\n".join(lines)


def _replaced(results: Path, names: list[str], rows: list[Row], curves: list[Curve], description: dict) -> tuple[list[Row], list[Curve], dict]:
    """The figures of ``results`` (a full run's JSON) with those of ``names`` replaced by the new ones, in the same order."""
    previous = json.loads(results.read_text())
    old_rows = [Row(**r) for r in previous["rows"]]
    old_curves = [Curve(**c) for c in previous["curves"]]
    merged_rows: list[Row] = []
    for name in available():
        if name in names:
            merged_rows += [r for r in rows if r.benchmark == name]
        else:
            merged_rows += [r for r in old_rows if r.benchmark == name]
    merged_curves = [c for c in old_curves if c.benchmark not in names] + curves
    merged = dict(previous["machine"])
    rerun = f"{', '.join(names)} at commit {description.get('commit', '?')}, {description.get('date', '?')} (load at start {description.get('load average at start (1, 5, 15 min)', '?')})"
    key = "run again"
    merged[key] = f"{merged[key]}; {rerun}" if key in merged else rerun
    return merged_rows, merged_curves, merged


def main(argv: list[str] | None = None) -> int:
    """Parses arguments, runs the benchmarks, prints and writes the results; non-zero if one failed."""
    names_available = available()
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"benchmarks to run (default: all of {', '.join(names_available)})")
    parser.add_argument("--quick", action="store_true", help="small sizes: checks that every benchmark works")
    parser.add_argument("--offline", action="store_true", help="skip the figures that need PyPI (the original datamaestro's virtualenv); they are printed as skipped")
    parser.add_argument("--work", type=Path, default=WORK_DIR, help="work folder (default: benchmarks/.work)")
    parser.add_argument("--output", type=Path, help="Markdown file to write (default: benchmarks/results.md for a full run of all)")
    parser.add_argument(
        "--replace",
        action="store_true",
        help="run the NAMEs again and put their figures in place of theirs in benchmarks/results.* (the others are kept, "
        "and the page says which were run again, when and at which commit)",
    )
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in names_available]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; available: {', '.join(names_available)}")
    if args.replace and (args.quick or args.offline or not args.names or args.output):
        parser.error("--replace takes benchmark names, and neither --quick, --offline nor --output")
    names = args.names or names_available
    work = args.work.resolve()
    output = args.output
    if output is None:
        complete = not args.quick and names == names_available
        complete = complete and not args.offline
        output = BENCH_DIR / "results.md" if complete or args.replace else work / ("results-quick.md" if args.quick else "results-partial.md")

    description = machine(work)
    results: list[Row | Curve] = []
    for name in names:
        results += run_benchmark(name, work, args.quick, args.offline)
    rows = [r for r in results if isinstance(r, Row)]
    curves = [r for r in results if isinstance(r, Curve)]
    if args.replace:
        rows, curves, description = _replaced(output.with_suffix(".json"), names, rows, curves, description)

    # other work on the machine skews timings: say how busy it was
    description["load average at end (1, 5, 15 min)"] = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(text_table(rows))
    for row in rows:
        if row.skipped:
            what = "skipped" if row.value is None else "reference skipped"
            print(f"{what}: {row.benchmark}: {row.measure} ({row.skipped})", file=sys.stderr)
    output.parent.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python -m benchmarks", *(["--quick"] if args.quick else []), *(["--offline"] if args.offline else []), *args.names])
    if args.replace:
        command = "python -m benchmarks"  # the page is still the full run's, with some benchmarks run again
    # the figures for tools, next to the page
    output.with_suffix(".json").write_text(
        json.dumps({"machine": description, "rows": [asdict(r) for r in rows], "curves": [asdict(c) for c in curves]}, indent=2) + "\n"
    )
    plot = output.with_suffix(".png")
    try:
        from benchmarks._plot import draw

        draw(rows, curves, description, plot, title=command)
    except ImportError as exc:
        # matplotlib is optional (pip install -e ".[bench]"): the table is what matters
        print(f"plot skipped: {exc.name or exc} is not installed (pip install -e '.[bench]')", file=sys.stderr)
        plot.unlink(missing_ok=True)
        plot = None
    output.write_text(markdown(rows, curves, description, command=command, plot=plot.name if plot else None))
    print(f"\nwritten: {output}" + (f", {plot}" if plot else ""), file=sys.stderr)
    return 1 if any(row.measure == "FAILED" for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
