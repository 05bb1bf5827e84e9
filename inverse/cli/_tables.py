"""Rich tables that fit the terminal without cutting or folding a number.

A table too wide for the console is split into several, each repeating the
key columns (e.g. rank and trial), instead of letting rich squeeze its cells
(which folds ``0.0747`` into ``0.07`` / ``47`` or cuts it to ``0.07…``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console, JustifyMethod
    from rich.table import Table


@dataclass(frozen=True)
class TableColumn:
    """One column of a printed table.

    Attributes
    ----------
    header
        Its title (may hold ``\\n``).
    cells
        One string per row (may hold ``\\n``: a cell of several lines).
    justify
        ``"left"``, ``"right"`` or ``"center"``.
    markup
        Whether the cells hold rich markup (``"[green]yes[/]"``); by default they are printed as
        they are, so ``"[0.46, 0.47]"`` or ``"[inf, 3.4]"`` is never taken for a style.
    """

    header: str
    cells: tuple[str, ...] = ()
    justify: JustifyMethod = "right"
    markup: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "cells", tuple(self.cells))


def _table(title: str | None, columns: Sequence[TableColumn], **table_options: Any) -> Table:
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, **table_options)
    for column in columns:
        table.add_column(column.header, justify=column.justify, no_wrap=True)
    for row in zip(*(column.cells for column in columns), strict=True):
        table.add_row(*(cell if column.markup else Text(cell) for column, cell in zip(columns, row, strict=True)))
    return table


def natural_width(console: Console, table: Table) -> int:
    """Columns ``table`` needs to print every cell line unbroken, whatever the console's width.

    Parameters
    ----------
    console
        The console it will be printed on (its options, not its width, are used).
    table
        The table to measure.

    Returns
    -------
    int
        The width in terminal columns.
    """
    return console.measure(table, options=console.options.update_width(10**6)).maximum


def packed_tables(console: Console, title: str | None, keys: Sequence[TableColumn],
                  groups: Sequence[Sequence[TableColumn]], **table_options: Any) -> list[Table]:
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
        measured descriptors); a group too wide for a table of its own is split between its columns.
    **table_options
        Passed to :class:`rich.table.Table` (``title_justify``, ...); a ``caption`` goes under the last table.

    Returns
    -------
    list of rich.table.Table
        One table when everything fits. A table of the keys and one column wider than the console
        is still made; :func:`print_tables` prints it wider than the console rather than cut it.
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
    caption = table_options.pop("caption", None)
    return [
        _table(title if i == 0 else (f"{title} (continued)" if title else None), [*keys, *columns],
               caption=caption if i == len(tables) - 1 else None, **table_options)
        for i, columns in enumerate(tables)
    ]


def print_tables(console: Console, tables: Sequence[Table]) -> None:
    """Print ``tables``; one wider than the console is printed at its natural width (the terminal wraps the lines) rather than cut."""
    from rich.console import Console as _Console

    for table in tables:
        width = natural_width(console, table)
        if width <= console.width:
            console.print(table)
        else:
            _Console(file=console.file, width=width, force_terminal=console.is_terminal, no_color=console.no_color).print(table)


def print_fitting(console: Console, title: str | None, keys: Sequence[TableColumn],
                  layouts: Sequence[Sequence[Sequence[TableColumn]]], **table_options: Any) -> None:
    """Print the first layout that fits the console as one table, else the last one packed into several.

    Parameters
    ----------
    console
        Where to print.
    title
        Title of the (first) table.
    keys
        Columns that identify the rows, repeated in every table.
    layouts
        Alternative column groups of the same data, widest first (e.g. ``0.47 [0.46, 0.48]`` on one
        line, then the value over its interval on two lines); see :func:`packed_tables`.
    **table_options
        Passed to :class:`rich.table.Table`.

    Raises
    ------
    ValueError
        Without a layout.
    """
    if not layouts:
        raise ValueError("print_fitting: give at least one layout")
    for groups in layouts[:-1]:
        table = _table(title, [*keys, *(column for group in groups for column in group)], **table_options)
        if natural_width(console, table) <= console.width:
            console.print(table)
            return
    print_tables(console, packed_tables(console, title, keys, layouts[-1], **table_options))
