"""inverse.cli._tables: tables split to fit the terminal, never folding or cutting a number."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from inverse.cli._tables import TableColumn, packed_tables, print_fitting, print_tables

ROWS = 4
KEYS = [TableColumn("rank", [str(i + 1) for i in range(ROWS)]), TableColumn("trial", [str(10 + i) for i in range(ROWS)])]


def _groups(sep: str) -> list[list[TableColumn]]:
    recipe = [TableColumn(f"{n}{sep}[80 %]", [f"0.4{i}7{sep}[0.46{i}, 0.47{i}]" for i in range(ROWS)]) for n in ("phi", "chi", "log_time")]
    measured = [TableColumn(n, [f"0.18{i}{sep}± 0.002{i}" for i in range(ROWS)]) for n in ("ABS_f_D", "CT_f_D_tort1", "CT_f_A_tort1")]
    return [recipe, measured]


def _print(width: int) -> str:
    console = Console(file=io.StringIO(), width=width, record=True)
    print_fitting(console, "ranked recipes", KEYS, [_groups(" "), _groups("\n")])
    return console.export_text()


def _cells(sep: str) -> set[str]:
    return {line for group in _groups(sep) for column in group for cell in column.cells for line in cell.split("\n")}


def test_a_wide_terminal_gets_one_table_with_one_line_cells():
    out = _print(200)
    assert out.count("ranked recipes") == 1 and "(continued)" not in out
    for cell in _cells(" "):
        assert cell in out, cell


@pytest.mark.parametrize("width", [60, 80, 100])
def test_a_narrow_terminal_gets_several_tables_and_every_number_whole(width):
    out = _print(width)
    assert max(len(line) for line in out.splitlines()) <= width
    assert "…" not in out
    assert "(continued)" in out
    for cell in _cells("\n"):  # the value and its interval each on one line, unbroken
        assert cell in out, (cell, out)
    tables = out.count("┏")
    assert out.count("┃ rank ┃ trial ┃") == tables  # the keys open every table


def test_groups_stay_together_when_they_fit_a_table_of_their_own():
    console = Console(file=io.StringIO(), width=80)
    tables = packed_tables(console, "t", KEYS, _groups("\n"))
    headers = [[str(c.header) for c in t.columns] for t in tables]
    assert headers == [["rank", "trial", "phi\n[80 %]", "chi\n[80 %]", "log_time\n[80 %]"], ["rank", "trial", "ABS_f_D", "CT_f_D_tort1", "CT_f_A_tort1"]]


def test_a_group_wider_than_the_terminal_is_split_between_its_columns():
    console = Console(file=io.StringIO(), width=45)
    tables = packed_tables(console, "t", KEYS, _groups("\n"))
    flat = [str(c.header) for t in tables for c in t.columns if str(c.header) not in ("rank", "trial")]
    assert flat == ["phi\n[80 %]", "chi\n[80 %]", "log_time\n[80 %]", "ABS_f_D", "CT_f_D_tort1", "CT_f_A_tort1"]
    assert len(tables) >= 4


def test_a_terminal_too_narrow_for_one_column_gets_it_whole_and_wider():
    console = Console(file=io.StringIO(), width=20)
    print_tables(console, packed_tables(console, "t", KEYS, _groups("\n")))
    out = console.file.getvalue()
    assert "…" not in out
    for cell in _cells("\n") | {"rank", "trial"}:
        assert cell in out, (cell, out)


def test_cells_are_text_unless_a_column_says_markup():
    console = Console(file=io.StringIO(), width=80, record=True)
    keys = [TableColumn("rank", ["1"])]
    columns = [TableColumn("chi [80 %]", ["3.2 [inf, 3.4]"]), TableColumn("meets", ["[green]yes[/]"], markup=True)]
    print_fitting(console, None, keys, [[columns]])
    out = console.export_text()
    assert "3.2 [inf, 3.4]" in out and "yes" in out and "[green]" not in out


def test_the_caption_goes_under_the_last_table_only_and_a_layout_is_needed():
    console = Console(file=io.StringIO(), width=60, record=True)
    print_fitting(console, "t", KEYS, [_groups("\n")], caption="a note")
    out = console.export_text()
    assert out.count("a note") == 1 and out.rstrip().endswith("a note")
    with pytest.raises(ValueError, match="layout"):
        print_fitting(console, "t", KEYS, [])
