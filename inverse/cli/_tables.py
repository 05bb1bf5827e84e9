"""Rich tables that fit the terminal without cutting or folding a number.

A table too wide for the console is split into several, each repeating the
key columns (e.g. rank and trial), instead of letting rich squeeze its cells
(which folds ``0.0747`` into ``0.07`` / ``47`` or cuts it to ``0.07…``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table


@dataclass(frozen=True)
class TableColumn:
    """One column: its header, its cells (one per row, may hold ``\\n``) and alignment."""

    header: str
    cells: Sequence[str] = field(default_factory=tuple)
    justify: str = "right"


def _table(title: str | None, columns: Sequence[TableColumn], **table_options) -> Table:  # noqa: ANN003
    from rich.table import Table

    table = Table(title=title, **table_options)
    for column in columns:
        table.add_column(column.header, justify=column.justify, no_wrap=True)
    for row in zip(*(column.cells for column in columns), strict=True):
        table.add_row(*row)
    return table


def natural_width(console: Console, table: Table) -> int:
    """Columns ``table`` needs to print every cell on its own lines, whatever the console's width."""
    return console.measure(table, options=console.options.update_width(10**6)).maximum


def packed_tables(console: Console, title: str | None, keys: Sequence[TableColumn],
                  groups: Sequence[Sequence[TableColumn]], **table_options) -> list[Table]:  # noqa: ANN003
    """Split ``keys`` + the columns of ``groups`` into as few tables as fit ``console.width``, each starting with ``keys``.

    Parameters
    ----------
    console
        Where the tables will be printed (its width decides the split).
    title
        Title of the first table; the others say ``(continued)``.
    keys
        Columns repeated at the left of every table (they identify the rows).
    groups
        The other columns, in order, in groups kept in one table where they fit (e.g. the recipe, the
        measured descriptors); a group too wide for a table of its own is split between columns.
    **table_options
        Passed to :class:`rich.table.Table` (``caption``, ``title_justify``, ...).

    Returns
    -------
    list of rich.table.Table
        One table when everything fits; a single column wider than the console still gets a table of its
        own (the console then wraps its lines).
    """

    def fits(columns: Sequence[TableColumn]) -> bool:
        return natural_width(console, _table(title, [*keys, *columns], **table_options)) <= console.width

    tables: list[list[TableColumn]] = [[]]
    for group in groups:
        if fits([*tables[-1], *group]):
            tables[-1].extend(group)
            continue
        if tables[-1] and fits(group):
            tables.append(list(group))
            continue
        for column in group:
            if not tables[-1] or fits([*tables[-1], column]):
                tables[-1].append(column)
            else:
                tables.append([column])
    return [
        _table(title if i == 0 else (f"{title} (continued)" if title else None), [*keys, *columns], **table_options)
        for i, columns in enumerate(tables)
    ]


def print_fitting(console: Console, title: str | None, keys: Sequence[TableColumn],
                  layouts: Sequence[Sequence[Sequence[TableColumn]]], **table_options) -> None:  # noqa: ANN003
    """Print the first layout that fits the console as one table, else the last one packed into several.

    ``layouts`` are alternative column groups of the same data, widest first (e.g. ``0.47 [0.46, 0.48]`` on
    one line, then the value over its interval on two lines); see :func:`packed_tables` for the groups.
    """
    for groups in layouts[:-1]:
        table = _table(title, [*keys, *(column for group in groups for column in group)], **table_options)
        if natural_width(console, table) <= console.width:
            console.print(table)
            return
    for table in packed_tables(console, title, keys, layouts[-1], **table_options):
        console.print(table)
