"""The dashboard: ``results.png``, scaling curves and every target as one bar.

matplotlib is imported here only, and only when drawing: without it
(``pip install -e ".[bench]"`` adds it) the runner still prints and writes
the table, and says that the plot was skipped.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from benchmarks._common import Curve, Row, size_label

#: ``≤ 0.33``, ``≥ 3``, ``< 100 MB``: an operator, a number, an optional unit
_TARGET = re.compile(r"^\s*(<=|>=|<|>|≤|≥)\s*([0-9][0-9.,]*)\s*(\S*)\s*$")
MET, MISSED, OTHER = "#2e7d32", "#c62828", "#757575"


def parse_target(text: str) -> tuple[bool, float, str] | None:
    """``(at_most, limit, unit)`` of a target such as ``≤ 1.2`` or ``< 100 MB``; None when it has no such form.

    Without a unit the target judges the ratio, with one it judges the value.
    """
    match = _TARGET.match(text or "")
    if not match:
        return None
    operator, number, unit = match.groups()
    return operator in ("<", "<=", "≤"), float(number.replace(",", "")), unit


def headroom(row: Row) -> float | None:
    """How a row stands against its target on one scale: at most 1 when met, above 1 when missed.

    ``measured / limit`` for an upper bound, ``limit / measured`` for a
    lower bound; None for a row without a target of that form or a figure.
    """
    target = parse_target(row.target)
    if target is None or row.skipped:
        return None
    at_most, limit, unit = target
    measured = row.value if unit else row.ratio
    if measured is None or measured <= 0 or limit <= 0:
        return None
    return measured / limit if at_most else limit / measured


def _plain(text: str, width: int) -> str:
    text = text.replace("`", "")
    return text if len(text) <= width else text[: width - 1] + "…"


def _format(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _leading_digit(value: float) -> int:
    return round(value / 10 ** math.floor(math.log10(value))) if value > 0 else 0


def _draw_curve(axes, curve: Curve) -> None:
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    xs = sorted({point[0] for points in curve.series.values() for point in points})
    styles = ["o-", "s--", "^:", "d-."]
    for (label, points), style in zip(curve.series.items(), styles):
        points = sorted(p for p in points if p[1] and p[1] > 0)
        if points:
            axes.plot([p[0] for p in points], [p[1] for p in points], style, label=label.replace("`", ""), linewidth=2 if style == styles[0] else 1.2)
    axes.set_xscale("log")
    axes.set_yscale("log")
    # one tick per measured point, named as in the table
    axes.xaxis.set_major_locator(FixedLocator(xs))
    axes.xaxis.set_minor_locator(NullLocator())
    axes.set_xticklabels([size_label(int(x)) if curve.x_unit == "B" else f"{x:,.0f}" for x in xs])
    axes.set_xlabel(curve.x_label)
    # plain numbers (0.5, 20, 300) rather than powers of ten: they are read against the table
    axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: _format(value)))
    axes.yaxis.set_minor_formatter(FuncFormatter(lambda value, _: _format(value) if _leading_digit(value) in (2, 5) else ""))
    axes.tick_params(axis="y", which="minor", labelsize=7)
    axes.set_ylabel(f"time ({curve.y_unit})")
    axes.set_title(_plain(curve.title, 70), fontsize=11)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8, loc="best")


def _draw_targets(axes, rows: list[Row]) -> None:
    judged = [(row, headroom(row)) for row in rows]
    judged = [(row, h) for row, h in judged if h is not None]
    left_out = len(rows) - len(judged)
    if not judged:
        axes.set_axis_off()
        return
    judged.reverse()  # the first row of the table at the top
    positions = range(len(judged))
    colours = [OTHER if row.met is None else MET if row.met else MISSED for row, _ in judged]
    axes.barh(positions, [h for _, h in judged], color=colours, height=0.6, left=0)
    axes.set_xscale("log")
    axes.axvline(1, color="black", linewidth=1.2)
    axes.set_yticks(list(positions))
    axes.set_yticklabels([f"{row.benchmark}: {_plain(row.measure, 75)}" for row, _ in judged], fontsize=8)
    for position, (row, h) in zip(positions, judged):
        _, _, unit = parse_target(row.target)
        measured = f"{_format(row.value)} {row.unit}" if unit else f"ratio {_format(row.ratio)}"
        # a white box: the label stays readable over the line at 1
        axes.text(h * 1.08, position, f"{measured}  (target {row.target})", va="center", fontsize=7.5, bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})
    low, high = min(h for _, h in judged), max(h for _, h in judged)
    axes.set_xlim(min(low, 0.5) / 2, max(high, 1.5) * 12)  # room for the labels right of the bars
    axes.set_xlabel("measured / target  (log scale; left of the line: target met, right: missed)")
    title = "Every target: green met, red missed"
    if left_out:
        title += f" ({left_out} rows without a target or skipped: in the table only)"
    axes.set_title(title, fontsize=11)
    axes.grid(True, axis="x", which="both", alpha=0.3)


def draw(rows: list[Row], curves: list[Curve], description: dict[str, str], path: Path, *, title: str) -> None:
    """Writes the dashboard: one log-log panel per curve (two a line), then one bar per target.

    :raises ImportError: matplotlib is not installed
    """
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    curve_lines = (len(curves) + 1) // 2
    judged = sum(1 for row in rows if headroom(row) is not None)
    heights = [4.5 * curve_lines, max(2.5, 0.3 * judged + 1.2) if judged else 0]
    figure = plt.figure(figsize=(16, sum(heights) + 1.2), layout="constrained")
    # two sub-figures: the long bar labels must not squeeze the curves' columns
    top, bottom = figure.subfigures(2, 1, height_ratios=[h or 0.01 for h in heights])
    if curves:
        for index, curve in enumerate(curves):
            _draw_curve(top.add_subplot(curve_lines, 2, index + 1), curve)
    if judged:
        _draw_targets(bottom.add_subplot(1, 1, 1), rows)
    machine = ", ".join(f"{key} {description[key]}" for key in ("CPU", "cores", "memory", "date", "commit") if key in description)
    figure.suptitle(f"datamaestro benchmarks ({title})\n{machine}", fontsize=12)
    figure.savefig(path, dpi=90)
    plt.close(figure)
