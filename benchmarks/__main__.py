"""``python -m benchmarks [--quick] [NAME...]``: runs benchmarks, prints one table, writes it as Markdown.

A benchmark is any module of this package whose name does not start with
``_`` and that defines ``run(work, quick)``; it is found without being
listed here. A full run of every benchmark writes ``benchmarks/results.md``
(the committed figures); a quick or partial run writes into the work
folder instead, so that it never replaces them (``--output`` chooses).
"""

from __future__ import annotations

import argparse
import datetime
import importlib
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

from benchmarks._common import BENCH_DIR, GiB, REPO_ROOT, WORK_DIR, Row

COLUMNS = ("benchmark", "measure", "value", "reference", "ratio", "target", "met", "note")


def available() -> list[str]:
    """Names of every benchmark module, sorted."""
    return sorted(info.name for info in pkgutil.iter_modules([str(BENCH_DIR)]) if not info.ispkg and not info.name.startswith("_"))


def run_benchmark(name: str, work: Path, quick: bool) -> list[Row]:
    """Runs one benchmark; a failure becomes a row saying so (the others still run)."""
    started = time.perf_counter()
    try:
        module = importlib.import_module(f"benchmarks.{name}")
        rows = module.run(work, quick)
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
        _number(row.value) + (unit if row.value is not None else ""),
        _number(row.reference) + (unit if row.reference is not None else ""),
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


def markdown(rows: list[Row], description: dict[str, str], *, quick: bool, names: list[str]) -> str:
    """The whole results page."""
    lines = [
        "# Benchmark results",
        "",
        f"Written by `python -m benchmarks{' --quick' if quick else ''}{''.join(' ' + n for n in names)}`. "
        "Ratios compare datamaestro with a reference measured in the same run; "
        "the `met` column says whether the target is reached (**NO** marks a missed target).",
        "",
        "## Machine",
        "",
    ]
    lines += [f"- {key}: {value}" for key, value in description.items()]
    lines += ["", "## Figures", "", markdown_table(rows), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Parses arguments, runs the benchmarks, prints and writes the results; non-zero if one failed."""
    names_available = available()
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"benchmarks to run (default: all of {', '.join(names_available)})")
    parser.add_argument("--quick", action="store_true", help="small sizes: checks that every benchmark works")
    parser.add_argument("--work", type=Path, default=WORK_DIR, help="work folder (default: benchmarks/.work)")
    parser.add_argument("--output", type=Path, help="Markdown file to write (default: benchmarks/results.md for a full run of all)")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in names_available]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; available: {', '.join(names_available)}")
    names = args.names or names_available
    work = args.work.resolve()
    output = args.output
    if output is None:
        complete = not args.quick and names == names_available
        output = BENCH_DIR / "results.md" if complete else work / ("results-quick.md" if args.quick else "results-partial.md")

    description = machine(work)
    rows: list[Row] = []
    for name in names:
        rows += run_benchmark(name, work, args.quick)

    # other work on the machine skews timings: say how busy it was
    description["load average at end (1, 5, 15 min)"] = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(text_table(rows))
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(markdown(rows, description, quick=args.quick, names=args.names))
    # the same figures for tools (a plot), next to the page
    output.with_suffix(".json").write_text(json.dumps({"machine": description, "rows": [asdict(r) for r in rows]}, indent=2) + "\n")
    print(f"\nwritten: {output}", file=sys.stderr)
    return 1 if any(row.measure == "FAILED" for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
