"""Benchmarks of datamaestro, each measured against a reference run in the same session.

Run them all with ``python -m benchmarks``, some with ``python -m benchmarks
NAME...``, at small sizes with ``--quick`` (a smoke test). Every module of
this package whose name does not start with ``_`` is a benchmark: it exposes
``run(work: Path, quick: bool) -> list[Row | Curve]`` (see
:class:`benchmarks._common.Row` and :class:`benchmarks._common.Curve`).
Work files (generated data, virtualenvs, stores) live in ``benchmarks/.work/``,
generated once and reused. Nothing here asserts on timings: the runner
prints ratios and targets side by side and writes ``benchmarks/results.md``
and the dashboard ``benchmarks/results.png`` (see ``docs/benchmarks.md``).
"""
