"""CSV data types.

Example::

    from datamaestro.data.csv import Matrix

    iris = Matrix.C(id="org.example.iris@data", path=path, names_row=0,
                    target="species")
    fields, features, targets = iris.data()
"""

from __future__ import annotations

import csv
from typing import TYPE_CHECKING, Any, Iterator, Optional

from experimaestro import Meta, Param, field

from datamaestro.errors import DatamaestroError, IntegrityError

from . import File

if TYPE_CHECKING:
    import numpy as np  # imported when data is read, not to build a config (a plugin's module, a CLI command)


class Generic(File):
    """A CSV file.

    :param delimiter: the field separator
    :param ignore: how many leading lines to skip before the CSV content
        (a free-text preamble, for instance)
    :param names_row: index of the row (counted after the ignored lines)
        that holds the field names, or -1 when there is none
    """

    delimiter: Meta[str] = field(default=",", ignore_default=True)
    """The field separator"""

    ignore: Meta[int] = field(default=0, ignore_default=True)
    """Number of leading lines to skip"""

    names_row: Meta[int] = field(default=-1, ignore_default=True)
    """Index of the row of field names (-1: none)"""

    def _rows(self) -> Iterator[tuple[int, int, list[str]]]:
        """Yields ``(row index, line number, fields)`` after the ignored lines.

        Line numbers are 1-based and count every physical line of the file,
        so that an error message points where a person would look.
        """
        with self.open("r") as fp:
            for _ in range(self.ignore):
                fp.readline()
            reader = csv.reader(fp, delimiter=self.delimiter)
            for index, row in enumerate(reader):
                yield index, self.ignore + reader.line_num, row

    def columns(self) -> Optional[list[str]]:
        """Returns the field names, or None when the file has no names row."""
        if self.names_row < 0:
            return None
        for index, _, row in self._rows():
            if index == self.names_row:
                return row
        raise DatamaestroError(
            f"{self.path}: no names row {self.names_row} "
            f"(the file has fewer rows after {self.ignore} ignored line(s))"
        )


class Matrix(Generic):
    """A numerical CSV file: every row but the names and size rows is data.

    :param names_row: index of the row of field names, or -1
    :param size_row: index of a row ``<rows>,<columns>`` that announces the
        shape of the data (the target column excluded), or -1; when present
        the data is checked against it
    :param target: name of the column that holds the target values, taken
        out of the data and returned apart (needs a names row)
    """

    # A Param here (a Meta in the parent): which row holds the names changes
    # which values are data, hence what a task computes from the file.
    names_row: Param[int] = field(default=-1, ignore_default=True, overrides=True)
    """Index of the row of field names (-1: none)"""

    size_row: Param[int] = field(default=-1, ignore_default=True)
    """Index of the row giving the data shape (-1: none)"""

    target: Param[Optional[str]] = field(default=None, ignore_default=True)
    """Name of the target column (None: no target)"""

    def data(self) -> tuple[Any, ...]:
        """Reads the file.

        :returns: ``(fields, data)``, or ``(fields, data, targets)`` when a
            target column is set; ``fields`` is the list of field names (empty
            without a names row, target included), ``data`` a 2-D float
            array, ``targets`` a 1-D float array
        :raises DatamaestroError: a row is ragged or holds a non-number, the
            target column is unknown
        :raises IntegrityError: the data does not have the announced shape
        """
        fields: list[str] = []
        declared_shape = None
        lines: list[int] = []
        rows: list[list[str]] = []
        for index, line, row in self._rows():
            if index == self.size_row:
                declared_shape = self._parse_size(line, row)
            elif index == self.names_row:
                fields = row
            elif row:
                lines.append(line)
                rows.append(row)

        target_column = self._target_column(fields)
        values = self._to_array(lines, rows)
        targets = None
        if target_column is not None:
            import numpy as np

            targets = values[:, target_column]
            values = np.delete(values, target_column, axis=1)

        if declared_shape is not None and values.shape != declared_shape:
            raise IntegrityError(
                f"{self.path}: the size row announces {declared_shape[0]}x"
                f"{declared_shape[1]} values, the file holds "
                f"{values.shape[0]}x{values.shape[1]}",
                hint="the file is probably truncated; download it again",
            )

        if self.target:
            return fields, values, targets
        return fields, values

    def _parse_size(self, line: int, row: list[str]) -> tuple[int, int]:
        """Parses a ``<rows>,<columns>`` size row."""
        try:
            n_rows, n_columns = (int(value) for value in row[:2])
        except ValueError:
            raise DatamaestroError(
                f"{self.path}, line {line}: the size row should start with two "
                f"integers, got {row!r}"
            ) from None
        return n_rows, n_columns

    def _target_column(self, fields: list[str]) -> Optional[int]:
        """Returns the index of the target column (None without a target)."""
        if not self.target:
            return None
        if self.target not in fields:
            raise DatamaestroError(
                f"{self.path}: no target column {self.target!r} "
                f"(field names: {fields or 'none, the file has no names row'})"
            )
        return fields.index(self.target)

    def _to_array(self, lines: list[int], rows: list[list[str]]) -> np.ndarray:
        """Converts data rows to a 2-D float array, locating any bad value."""
        import numpy as np

        if not rows:
            return np.empty((0, 0))
        width = len(rows[0])
        for line, row in zip(lines, rows):
            if len(row) != width:
                raise DatamaestroError(
                    f"{self.path}, line {line}: {len(row)} values where the "
                    f"first data row has {width}"
                )
        try:
            return np.array(rows, dtype=np.float64)
        except ValueError as error:
            # Search the culprit only now, so that a well-formed file never
            # pays for a value-by-value scan.
            location = _locate_bad_value(lines, rows) or f": {error}"
            raise DatamaestroError(f"{self.path}{location}") from None


def _locate_bad_value(lines: list[int], rows: list[list[str]]) -> Optional[str]:
    """Returns ``", line L, column C: 'x' is not a number"`` for the first bad value."""
    for line, row in zip(lines, rows):
        for column, value in enumerate(row):
            try:
                float(value)
            except ValueError:
                return f", line {line}, column {column + 1}: {value!r} is not a number"
    return None
