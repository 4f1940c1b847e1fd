"""The text of the reports' tables: markdown and CSV, their column heads, their cells.

Every summary.md (a sweep's, a comparison of sweeps, the scale report, a
sweep's paths.md) is built from these, so one statistic reads the same in
every table: mean ± sample standard deviation over seeds, to `DECIMALS`
decimal places.
"""

from __future__ import annotations

import csv
import io
import statistics
from collections.abc import Sequence
from typing import Any

# The decimal places of every mean and standard deviation in a table (Python's
# correctly rounded format of the float).
DECIMALS = 4


def markdown_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A markdown table: a head row, the rule, one line per row.

    Args:
      head: the column titles.
      rows: the cells of each row, as text, one per column.

    Returns:
      The table's lines, each ended by a newline.

    Raises:
      ValueError: for a row whose length is not the head's.
    """
    for row in rows:
        if len(row) != len(head):
            raise ValueError(f"a table row has {len(row)} cells for {len(head)} columns: {row}")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def csv_text(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A CSV file's text: the head row, then one line per row ("\\n" line ends).

    Every results.csv and paths.csv is written from this text (in one atomic
    write, `force_jax.runs.files.write_atomic`).

    Args:
      head: the column names.
      rows: the values of each row, one per column; None is an empty field.

    Returns:
      The CSV text.

    Raises:
      ValueError: for a row whose length is not the head's.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(head)
    for row in rows:
        if len(row) != len(head):
            raise ValueError(f"a CSV row has {len(row)} values for {len(head)} columns: {row}")
        writer.writerow(row)
    return buffer.getvalue()


def sparsity_head(sparsity: float) -> str:
    """The column title of a sparsity: "99 %", "99.5 %".

    Args:
      sparsity: the fraction of weights pruned.

    Returns:
      The percentage, without trailing zeros.
    """
    return f"{100 * sparsity:g} %"


def mean_std(values: Sequence[float], *, count: bool = False) -> str:
    """Mean ± sample standard deviation, to DECIMALS places: the cell of every table.

    Args:
      values: one value per seed.
      count: append the number of values, " (n=3)", also when there are
        several (a single value always says n=1).

    Returns:
      "0.8650 ± 0.0040" (or "0.8650 ± 0.0040 (n=3)"); "0.8650 (n=1)" for a
      single value (no spread to report); "n/a" for none.
    """
    if not values:
        return "n/a"
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.{DECIMALS}f} (n=1)"
    text = f"{mean:.{DECIMALS}f} ± {statistics.stdev(values):.{DECIMALS}f}"
    return f"{text} (n={len(values)})" if count else text
