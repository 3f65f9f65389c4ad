"""KeyedTable: rows kept by key, drawn line by line, and only changed lines redrawn."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.app import App, ComposeResult
from textual.geometry import Region
from textual.widgets import Static

from tui.widgets.table import Cell, KeyedTable


@dataclass
class Row:
    key: str
    name: str
    price: float = 0.0
    style: str = ""


class Table(KeyedTable[Row]):
    COLUMNS = (("name", "Name", 8), ("price", "Price", 7), ("note", "Note", 6))
    HIDE_WHEN_NARROW = ("note",)

    def __init__(self) -> None:
        super().__init__(id="table")
        self.built: list[str] = []  # keys whose cells were built

    def key_of(self, item: Row) -> str:
        return item.key

    def cells(self, item: Row) -> tuple[Cell, ...]:
        self.built.append(item.key)
        return (item.name, Text(f"{item.price:,.2f}", style=item.style, justify="right"), "n")


class WideTable(Table):
    HIDE_WHEN_NARROW = ()


class Host(App[None]):
    def __init__(self, rows: list[Row], table: type[Table] = Table) -> None:
        super().__init__()
        self.rows = rows
        self.table = table
        self.selected: list[str] = []

    def compose(self) -> ComposeResult:
        yield self.table()
        yield Static("other", id="other")

    def on_mount(self) -> None:
        self.query_one(Table).sync(self.rows)
        self.query_one(Table).focus()

    def on_keyed_table_row_selected(self, event: KeyedTable.RowSelected) -> None:
        self.selected.append(event.row_key)


def rows(n: int) -> list[Row]:
    return [Row(f"k{i}", f"row{i}", price=100.0 + i) for i in range(n)]


def line(table: Table, y: int) -> str:
    return table.render_line(y).text


async def test_rows_follow_the_items_by_key() -> None:
    app = Host(rows(3))
    async with app.run_test(size=(40, 10)) as pilot:
        table = app.query_one(Table)
        assert table.row_keys == ["k0", "k1", "k2"]
        assert table.get_cell("k1", "name") == "row1"
        table.sync([Row("k2", "row2"), Row("k9", "new"), Row("k0", "row0")])
        await pilot.pause()
        assert table.row_keys == ["k0", "k2", "k9"]  # insertion order, k1 gone, k9 appended
        assert table.row_count == 3
        assert line(table, 0).rstrip() == " Name      Price    Note"
        assert line(table, 3).rstrip() == " new          0.00  n"


async def test_one_changed_row_is_the_only_line_redrawn() -> None:
    app = Host(rows(5))
    async with app.run_test(size=(40, 10)) as pilot:
        table = app.query_one(Table)
        await pilot.pause()
        drawn = dict(table._strips)
        assert set(drawn) == {"k0", "k1", "k2", "k3", "k4"}
        repainted: list[tuple[Region, ...]] = []
        refresh = table.refresh

        def spy(*regions: Region, **kwargs: object) -> KeyedTable[Row]:
            repainted.append(regions)
            return refresh(*regions, **kwargs)  # type: ignore[arg-type]

        table.refresh = spy  # type: ignore[method-assign]
        table.built.clear()
        changed = rows(5)
        changed[2].price = 999.5
        table.sync(changed, only={"k2"})
        assert table.built == ["k2"]  # the other rows' cells are not even built
        assert repainted == [(Region(0, 3, table.size.width, 1),)]  # header + rows k0, k1 above
        await pilot.pause()
        assert line(table, 3).startswith(" row2       999.50")
        for key in ("k0", "k1", "k3", "k4"):
            assert table._strips[key] is drawn[key]  # not redrawn
        assert table._strips["k2"] is not drawn["k2"]

        repainted.clear()
        table.sync(changed)  # nothing changed: nothing repainted
        assert repainted == []


async def test_a_change_of_style_alone_is_a_change() -> None:
    app = Host(rows(2))
    async with app.run_test(size=(40, 10)) as pilot:
        table = app.query_one(Table)
        await pilot.pause()
        before = table.render_line(2)
        table.sync([Row("k0", "row0", 100.0), Row("k1", "row1", 101.0, style="bold red")])
        await pilot.pause()
        assert table.get_cell("k1", "price").style == "bold red"  # type: ignore[union-attr]
        after = table.render_line(2)
        assert after.text == before.text
        assert after != before


async def test_the_cursor_stays_on_its_row_when_rows_come_and_go() -> None:
    app = Host(rows(4))
    async with app.run_test(size=(40, 10)) as pilot:
        table = app.query_one(Table)
        await pilot.press("down", "down")
        assert table.selected_key == "k2"
        table.sync([r for r in rows(4) if r.key != "k0"] + [Row("k7", "late")])
        assert table.selected_key == "k2"  # the row above went: the cursor follows its row
        table.sync([r for r in rows(4) if r.key not in ("k0", "k2")])
        assert table.selected_key == "k3"  # its row went: the cursor stays where it was
        table.reset()
        assert table.selected_key is None
        assert table.row_count == 0


async def test_keys_move_the_cursor_and_scroll_it_into_view() -> None:
    app = Host(rows(30))
    async with app.run_test(size=(40, 10)) as pilot:
        table = app.query_one(Table)
        page = table.size.height - 1  # under the header (no horizontal scrollbar here)
        await pilot.press("pagedown")
        assert table.cursor_row == page
        assert table.row_in_view("k0") is False
        assert table.row_in_view(f"k{page}") is True
        await pilot.press("end")
        assert table.selected_key == "k29"
        await pilot.pause()
        assert line(table, page).startswith(" row29")
        assert line(table, 0).startswith(" Name")  # the header stays
        await pilot.press("home")
        assert table.selected_key == "k0"
        assert table.scroll_offset.y == 0
        await pilot.press("up")
        assert table.selected_key == "k0"
        await pilot.press("down", "enter")
        assert app.selected == ["k1"]


async def test_a_click_selects_a_row_and_a_second_click_opens_it() -> None:
    app = Host(rows(5))
    async with app.run_test(size=(40, 10)) as pilot:
        table = app.query_one(Table)
        await pilot.click(Table, offset=(3, 3))  # the header is line 0
        assert table.selected_key == "k2"
        assert app.selected == []
        await pilot.click(Table, offset=(3, 3))
        assert app.selected == ["k2"]
        await pilot.click(Table, offset=(3, 0))  # the header: nothing
        assert table.selected_key == "k2"


async def test_cells_are_plain_text_cropped_to_their_column() -> None:
    app = Host([])
    async with app.run_test(size=(40, 10)) as pilot:
        table = app.query_one(Table)
        table.sync(
            [
                Row("a", "[bold]x[/] and more"),  # never markup
                Row("b", "two\nlines\tand a tab"),
                Row("c", "中文字符串"),  # double width: cropped on a whole character
            ]
        )
        await pilot.pause()
        assert line(table, 1).startswith(" [bold]x[  ")
        assert line(table, 2).startswith(" two       ")
        assert line(table, 3).startswith(" 中文字符  ")
        assert all(table.render_line(y).cell_length == table.size.width for y in range(6))
        # a cell styled in parts
        parts = table._fit(Text.assemble(("ab", "red"), ("cd\nef", "blue"), justify="right"), 6)
        assert "".join(s.text for s in parts) == "  abcd"
        assert [s.style.color.name for s in parts if s.text.strip()] == ["red", "blue"]  # type: ignore[union-attr]


async def test_columns_are_given_up_when_narrow_then_padding() -> None:
    app = Host(rows(1))
    async with app.run_test(size=(40, 10)) as pilot:
        table = app.query_one(Table)
        bar = table.styles.scrollbar_size_vertical  # room kept for a vertical scrollbar
        assert line(table, 1).rstrip() == " row0       100.00  n"
        assert table.shown_columns == ["name", "price", "note"]
        await pilot.resize_terminal(8 + 7 + 6 + 3 + bar, 10)  # all three, one blank apart
        await pilot.pause()
        assert table.cell_padding == 0
        assert line(table, 1).rstrip() == " row0      100.00 n"
        await pilot.resize_terminal(8 + 7 + 6 + 3 + bar - 1, 10)
        await pilot.pause()
        assert table.shown_columns == ["name", "price"]  # no Note, and the padding is back
        assert line(table, 1).rstrip() == " row0       100.00"
        await pilot.resize_terminal(8 + 7 + 2 + bar, 10)
        await pilot.pause()
        assert table.cell_padding == 0
        assert line(table, 0).rstrip() == " Name     Price"  # never run together
        assert line(table, 1).rstrip() == " row0      100.00"


class Message(Table):
    """Orders-like: a flexible message column, given up only after everything else."""

    COLUMNS = (("name", "Name", 8), ("price", "Price", 7), ("note", "Note", 6), ("msg", "Message", 40))
    HIDE_WHEN_NARROW = ("note", "msg")
    FLEX = {"msg": 10}

    def cells(self, item: Row) -> tuple[Cell, ...]:
        return (*super().cells(item), item.style)


async def test_a_flexible_column_takes_what_is_left_and_shrinks_before_anything_goes() -> None:
    app = Host(rows(1), table=Message)
    async with app.run_test(size=(80, 10)) as pilot:
        table = app.query_one(Table)
        bar = table.styles.scrollbar_size_vertical
        fixed = 8 + 7 + 6
        assert table.shown_columns == ["name", "price", "note", "msg"]
        assert table.column_width("msg") == 80 - bar - fixed - 4 * 2  # all that is left, not 40
        await pilot.resize_terminal(fixed + 10 + 4 * 2 + bar, 10)
        await pilot.pause()
        assert table.shown_columns == ["name", "price", "note", "msg"]  # the message shrank
        assert table.column_width("msg") == 10
        assert table.cell_padding == 1
        await pilot.resize_terminal(fixed + 10 + 4 + bar, 10)
        await pilot.pause()
        assert table.shown_columns == ["name", "price", "note", "msg"]  # then the padding
        assert table.cell_padding == 0
        await pilot.resize_terminal(fixed + 10 + 4 + bar - 1, 10)
        await pilot.pause()
        assert table.shown_columns == ["name", "price", "msg"]  # only then a column
        assert table.cell_padding == 1  # and the room it leaves goes to the padding and the message
        assert table.column_width("msg") == 10 + 6 + 4 - 1 - 3 * 2


async def test_a_number_is_never_cut_its_column_widens() -> None:
    app = Host(rows(1))
    async with app.run_test(size=(60, 10)) as pilot:
        table = app.query_one(Table)
        assert table.column_width("price") == 7
        table.sync([Row("k0", "row0", price=-123456789.0)])
        await pilot.pause()
        assert table.column_width("price") == len("-123,456,789.00")
        assert "-123,456,789.00" in line(table, 1)
        assert line(table, 0).startswith(" Name      Price")
        # too narrow for it and the note: the note goes, never a digit
        await pilot.resize_terminal(8 + 15 + 6 + 3 - 1 + table.styles.scrollbar_size_vertical, 10)
        await pilot.pause()
        assert table.shown_columns == ["name", "price"]
        assert line(table, 1).rstrip() == " row0      -123,456,789.00"


class Labelled(Table):
    COLUMNS = (("name", "Name", 8), ("price", "Price", 7), ("note", "Instrument", 4))
    SHORT_LABELS = {"note": "Ins"}


async def test_labels_fit_their_column_or_are_shortened() -> None:
    app = Host(rows(1), table=Labelled)
    async with app.run_test(size=(60, 10)) as pilot:
        table = app.query_one(Table)
        await pilot.pause()
        assert line(table, 0).rstrip() == " Name      Price    Ins"


class Newest(Table):
    NEWEST_FIRST = True
    HIDE_WHEN_NARROW = ()


async def test_newest_rows_first_the_cursor_stays_on_its_row() -> None:
    app = Host(rows(3), table=Newest)
    async with app.run_test(size=(40, 8)) as pilot:
        table = app.query_one(Table)
        assert table.row_keys == ["k2", "k1", "k0"]  # items come oldest first
        await pilot.press("down")
        assert table.selected_key == "k1"
        table.sync(rows(5))
        assert table.row_keys == ["k4", "k3", "k2", "k1", "k0"]
        assert table.selected_key == "k1"  # what the operator selected stays selected
        await pilot.press("home")
        table.sync(rows(6))
        assert table.selected_key == "k4"  # focused: even on the top row it does not move


async def test_newest_rows_first_a_table_without_focus_follows_them() -> None:
    app = Host(rows(3), table=Newest)
    async with app.run_test(size=(40, 8)) as pilot:
        table = app.query_one(Table)
        table.blur()
        await pilot.pause()
        assert table.selected_key == "k2"
        table.sync(rows(20))
        await pilot.pause()
        assert table.selected_key == "k19"  # the live view shows the newest row
        assert table.scroll_offset.y == 0
        assert line(table, 1).startswith(" row19")
        # scrolled down (the cursor further down): the same rows stay in view
        table.move_cursor(10)
        await pilot.pause()
        top = table.scroll_offset.y
        assert top > 0
        shown = line(table, 1)
        table.sync(rows(22))
        await pilot.pause()
        assert table.selected_key == "k9"
        assert table.scroll_offset.y == top + 2
        assert line(table, 1) == shown


async def test_the_cursor_row_is_highlighted_brighter_with_focus() -> None:
    app = Host(rows(2))
    async with app.run_test(size=(40, 10)) as pilot:
        table = app.query_one(Table)
        await pilot.pause()
        focused = table.render_line(1)
        other = table.render_line(2)
        assert next(iter(focused)).style != next(iter(other)).style
        table.blur()
        await pilot.pause()
        table.render_lines(Region(0, 0, table.size.width, table.size.height))
        blurred = table.render_line(1)
        assert blurred.text == focused.text
        assert next(iter(blurred)).style != next(iter(focused)).style


async def test_a_table_wider_than_its_panel_scrolls_sideways() -> None:
    app = Host(rows(3), table=WideTable)
    async with app.run_test(size=(16, 10)) as pilot:
        table = app.query_one(Table)
        assert table.cell_padding == 0  # nothing fits: the tightest layout, scrolled
        assert line(table, 0) == " Name     Price   Note"[: table.size.width]
        await pilot.press("right", "right")
        await pilot.pause()
        assert table.scroll_offset.x > 0
        x, width = table.scroll_offset.x, table.size.width
        assert line(table, 0).rstrip() == " Name     Price   Note"[x : x + width].rstrip()
        assert line(table, 1).rstrip() == " row0      100.00 n"[x : x + width].rstrip()
        await pilot.press("left", "left")
        assert table.scroll_offset.x == 0


async def test_reorder_puts_named_rows_first_and_keeps_the_cursor_on_its_row() -> None:
    app = Host(rows(5))
    async with app.run_test(size=(40, 10)) as pilot:
        table = app.query_one(Table)
        table.move_cursor(1)  # on k1
        table.reorder(["k3", "nope", "k1", "k3"])  # an unknown key and a repeat are ignored
        await pilot.pause()
        assert table.row_keys == ["k3", "k1", "k0", "k2", "k4"]  # the rest keep their order
        assert table.selected_key == "k1"
        table.reorder(["k4", "k3", "k2", "k1", "k0"])  # every row named
        await pilot.pause()
        assert table.row_keys == ["k4", "k3", "k2", "k1", "k0"]
        assert table.selected_key == "k1"
        assert line(table, 1).startswith(" row4")


async def test_update_rows_builds_and_repaints_only_the_rows_given() -> None:
    app = Host(rows(5))
    async with app.run_test(size=(60, 10)) as pilot:
        table = app.query_one(Table)
        await pilot.pause()
        drawn = dict(table._strips)
        table.built.clear()
        assert table.has_rows(["k1", "k3"]) and not table.has_rows(["k1", "k9"])
        table.update_rows([Row("k3", "row3", price=-123456789.0), Row("k1", "row1", price=101.0)])
        assert table.built == ["k3", "k1"]  # k1 built, unchanged: kept as drawn
        assert table.column_width("price") == len("-123,456,789.00")  # widened: laid out again
        assert table.row_keys == ["k0", "k1", "k2", "k3", "k4"]
        await pilot.pause()
        assert "-123,456,789.00" in line(table, 4)
        table.built.clear()
        table.update_rows([Row("k2", "row2", price=5.0)])
        await pilot.pause()
        assert line(table, 3).startswith(" row2")
        assert "5.00" in line(table, 3)
        assert table._strips["k0"] is not drawn["k0"]  # every row redrawn once, for the new width


async def test_a_row_out_of_view_is_built_when_it_comes_into_view() -> None:
    app = Host(rows(30))
    async with app.run_test(size=(60, 10)) as pilot:
        table = app.query_one(Table)
        await pilot.pause()
        table.built.clear()
        table.update_rows([Row("k25", "row25", price=1.0), Row("k25", "row25", price=-123456789.0)])
        table.update_rows([Row("k1", "row1", price=7.0)])
        assert table.built == ["k1"]  # k25 is scrolled out of view: only its newest item is kept
        assert table.column_width("price") == 7  # its number not looked at yet
        await pilot.press("end")
        await pilot.pause()
        assert table.built == ["k1", "k25"]  # built once, from the newest item
        assert table.column_width("price") == len("-123,456,789.00")
        await pilot.pause()
        shown = [line(table, y) for y in range(1, table.size.height)]
        assert any(text.startswith(" row25") and "-123,456,789.00" in text for text in shown)
        table.update_rows([Row("k2", "row2", price=3.0)])  # k2 now out of view: read, it is built
        assert table.get_cell("k2", "price").plain == "3.00"  # type: ignore[union-attr]
        table.sync(rows(29))  # k29 gone; a full sync builds every row anew
        assert table.row_count == 29
        assert table.get_cell("k25", "price").plain == "125.00"  # type: ignore[union-attr]
