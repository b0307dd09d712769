"""Plain-text tables of the demo: a header, a dashed rule, aligned columns."""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import math


def format_table(header, rows):
    """Plain-text table, labels left-aligned and numbers right-aligned.

    Parameters
    ----------
    header : list of str
        Column names.
    rows : list of list
        One list of cells per row; floats are printed with 4 decimals
        (none from 1000 up) and NaN as ``-``.

    Returns
    -------
    table : str
        The table, one line per row after the header and its rule.
    """
    cells = [header] + [[format_cell(value) for value in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = []
    for row_index, row in enumerate(cells):
        # Labels (first column) left-aligned, numbers right-aligned.
        lines.append(
            "  ".join(
                cell.ljust(width) if column == 0 else cell.rjust(width)
                for column, (cell, width) in enumerate(zip(row, widths))
            ).rstrip()
        )
        if row_index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def format_cell(value):
    """The text of one cell (NaN, a value not measured for the row, is ``-``)."""
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)
