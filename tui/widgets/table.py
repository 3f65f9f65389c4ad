"""KeyedTable: a table kept in sync by row key, drawn line by line.

Live data never rebuilds a table: rows are added, removed, or have just their
changed cells replaced, so the cursor and scroll stay where the operator left them.

It is a Line API widget (``ScrollView`` + ``render_line``): every row is drawn once
into a ``Strip`` that is kept until one of its cells changes, and a change repaints
that one line only. (Textual's ``DataTable`` keys its render caches on one table-wide
counter, so a single changed cell re-renders every visible cell through Rich: tens of
milliseconds a frame with a busy Market panel, with the event loop blocked meanwhile.)
Cells are plain strings (never markup) or ``rich.text.Text`` with a style and a
``justify``; a row is built from them directly, at the widths the layout gave the columns.

Layout by width (decided on a resize, or when a number outgrows its column; never per tick):
columns are given up in ``HIDE_WHEN_NARROW`` order, flexible columns (``FLEX``) take the
width left over and shrink to their minimum before anything is given up, the two-blank
padding narrows to one blank before a column is, and there is always at least one blank
between two columns. A number (a right-justified cell) is never cut: its column widens to
the widest number it has held.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Generic, Self, TypeVar

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

T = TypeVar("T")
Cell = str | Text

# a cell is one line: what follows a line break is not shown, other control characters are blanks
_BLANK_CONTROLS = {c: " " for c in (*range(32), 127)}


def _one_line(text: str) -> str:
    if text.isprintable():
        return text
    return text.split("\n", 1)[0].split("\r", 1)[0].translate(_BLANK_CONTROLS)


def _signature(cell: Cell) -> object:
    """What a cell looks like (``Text.__eq__`` ignores the style: a color flip counts here)."""
    if isinstance(cell, Text):
        return (cell.plain, cell.style, cell.justify, cell.spans)
    return cell


class KeyedTable(ScrollView, Generic[T], can_focus=True, inherit_bindings=False):
    """Subclasses declare ``COLUMNS`` ((key, label, width), ...) and implement
    ``key_of`` and ``cells``; the layout declarations below are optional."""

    COLUMNS: ClassVar[tuple[tuple[str, str, int], ...]] = ()
    # columns given up, in this order, when the table is too narrow to show them all
    HIDE_WHEN_NARROW: ClassVar[tuple[str, ...]] = ()
    # flexible columns and their minimum width: they share the width the others leave
    FLEX: ClassVar[Mapping[str, int]] = {}
    # labels to show when the column is narrower than its label
    SHORT_LABELS: ClassVar[Mapping[str, str]] = {}
    # new rows go on top (time-ordered panels): see ``sync`` for the cursor and the view
    NEWEST_FIRST: ClassVar[bool] = False

    ALLOW_SELECT = False

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select_cursor", "Select", show=False),
        Binding("up", "cursor_up", "Cursor up", show=False),
        Binding("down", "cursor_down", "Cursor down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home,ctrl+home", "first_row", "First row", show=False),
        Binding("end,ctrl+end", "last_row", "Last row", show=False),
        Binding("left", "scroll_left", "Scroll left", show=False),
        Binding("right", "scroll_right", "Scroll right", show=False),
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = {"keyed-table--header", "keyed-table--cursor"}

    # the look of Textual's DataTable (row cursor, no zebra stripes)
    DEFAULT_CSS = """
    KeyedTable {
        background: $surface;
        color: $foreground;
        height: auto;
        max-height: 100%;
        scrollbar-size-vertical: 1;

        &:focus {
            background-tint: $foreground 5%;
            & > .keyed-table--cursor {
                background: $block-cursor-background;
                color: $block-cursor-foreground;
                text-style: $block-cursor-text-style;
            }
            & > .keyed-table--header {
                background-tint: $foreground 5%;
            }
        }
        & > .keyed-table--header {
            text-style: bold;
            background: $panel;
            color: $foreground;
        }
        &:ansi > .keyed-table--header {
            background: ansi_bright_blue;
            color: ansi_default;
        }
        & > .keyed-table--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
    }
    """

    class RowSelected(Message):
        """Enter on a row, or a click on the row under the cursor."""

        def __init__(self, table: KeyedTable, row_key: str, cursor_row: int) -> None:
            super().__init__()
            self.table = table
            self.row_key = row_key
            self.cursor_row = cursor_row

        @property
        def control(self) -> KeyedTable:
            return self.table

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._keys: list[str] = []  # row order: insertion order
        self._index: dict[str, int] = {}
        self._cells: dict[str, tuple[Cell, ...]] = {}  # every column's cell, shown or not
        self._pending: dict[str, T] = {}  # rows out of view: their newest item, cells not built yet
        self._cursor = 0
        self._visible: list[int] = list(range(len(self.COLUMNS)))
        self._column_index = {key: i for i, (key, _, _) in enumerate(self.COLUMNS)}
        self._widths: list[int] = [width for _, _, width in self.COLUMNS]  # as laid out
        self._numbers: list[int] = [0] * len(self.COLUMNS)  # the widest number each column held
        self._texts: list[int] = [0] * len(self.COLUMNS)  # the widest text of each flexible column
        self._flex = {i for i, (key, _, _) in enumerate(self.COLUMNS) if key in self.FLEX}
        self._laid_out_for = -1  # the width the layout was made for
        self.cell_padding = 1  # blanks after a cell (one blank always comes before it)
        # drawing: rebuilt lazily, dropped when the styles or the columns change
        self._strips: dict[str, Strip] = {}  # row key -> the row, as wide as the table
        self._header: Strip | None = None
        self._style_key: tuple[Style, Style, Style] | None = None
        self._styles_checked = False
        self._base = Style()
        self._header_style = Style()
        self._cursor_pre = Style()
        self._cursor_post = Style()
        self._cell_styles: dict[str | Style, Style] = {}

    # ------------------------------------------------------------------ subclass API

    def key_of(self, item: T) -> str:
        raise NotImplementedError

    def cells(self, item: T) -> tuple[Cell, ...]:
        raise NotImplementedError

    # ------------------------------------------------------------------ reading

    @property
    def row_count(self) -> int:
        return len(self._keys)

    @property
    def row_keys(self) -> list[str]:
        """The rows' keys, top to bottom."""
        return list(self._keys)

    def get_cell(self, row_key: str, column_key: str) -> Cell:
        if row_key in self._pending:
            self._build_pending(row_key)
        return self._cells[row_key][self._column_index[column_key]]

    def row_in_view(self, row_key: str) -> bool:
        """Whether the row is scrolled into view (a change to it has something to draw)."""
        index = self._index.get(row_key)
        if index is None:
            return False
        top = self.scroll_offset.y
        return top <= index < top + self._page

    @property
    def cursor_row(self) -> int:
        return self._cursor

    @property
    def shown_columns(self) -> list[str]:
        """The keys of the columns on screen, left to right."""
        return [self.COLUMNS[i][0] for i in self._visible]

    def column_width(self, column_key: str) -> int:
        """The width the layout gave a column."""
        return self._widths[self._column_index[column_key]]

    @property
    def selected_key(self) -> str | None:
        return self._keys[self._cursor] if self._keys else None

    # ------------------------------------------------------------------ syncing

    def sync(self, items: Iterable[T], *, only: set[str] | None = None) -> None:
        """Make the rows match ``items``. With ``only``, rows outside it are assumed
        unchanged (their cells are not even built): the per-tick path.

        New rows are appended, or with ``NEWEST_FIRST`` put on top (``items`` oldest first).
        The cursor stays on the row it is on, so what the operator selected is what the keys
        act on; only a table without focus whose cursor is on its top row follows new rows
        there (a live view). A view scrolled down keeps showing the same rows."""
        fresh: dict[str, T] = {self.key_of(item): item for item in items}
        selected = self.selected_key
        was_visible = self._cursor_in_view()
        follow = self.NEWEST_FIRST and self._cursor == 0 and not self.has_focus
        gone = [key for key in self._keys if key not in fresh]
        for key in gone:
            del self._cells[key]
            self._strips.pop(key, None)
            self._pending.pop(key, None)
        if gone:
            self._keys = [key for key in self._keys if key in self._cells]
            self._index = {key: i for i, key in enumerate(self._keys)}
        added: list[str] = []
        widened = False
        for key, item in fresh.items():
            old = self._cells.get(key)
            if old is not None and only is not None and key not in only:
                continue
            self._pending.pop(key, None)
            new = self.cells(item)
            widened = self._note_numbers(new) or widened
            if old is None:
                self._cells[key] = new
                added.append(key)
            elif len(old) != len(new) or any(map(_differ, old, new)):
                self._set_row(key, new)
        if added:
            if self.NEWEST_FIRST:
                self._keys[:0] = reversed(added)
            else:
                self._keys.extend(added)
            self._index = {key: i for i, key in enumerate(self._keys)}
        if widened:
            self._lay_out(force=True)
        if gone or added:
            if follow:
                selected = self._keys[0] if self._keys else None
            elif self.NEWEST_FIRST and added and self.scroll_offset.y > 0:
                self._update_virtual_size()
                self.scroll_to(y=self.scroll_offset.y + len(added), animate=False)
            self._rows_moved(selected, was_visible)

    def update_rows(self, items: Iterable[T]) -> None:
        """Bring the rows of ``items`` up to date, every one of them already in the table (the
        per-tick path when no row comes or goes: the other rows are not even looked at).

        A row scrolled out of view only keeps its newest item: its cells are built when it
        comes into view (or is read), so a busy row nobody sees costs a dictionary write, and a
        number that outgrows its column widens it then."""
        widened = False
        index, pending, strips = self._index, self._pending, self._strips
        top = self.scroll_offset.y
        bottom = top + self._page
        for item in items:
            key = self.key_of(item)
            if not top <= index[key] < bottom:
                if key not in pending:
                    strips.pop(key, None)
                pending[key] = item
                continue
            pending.pop(key, None)
            old = self._cells[key]
            new = self.cells(item)
            widened = self._note_numbers(new) or widened
            if len(old) != len(new) or any(map(_differ, old, new)):
                self._set_row(key, new)
        if widened:
            self._lay_out(force=True)

    def _build_pending(self, key: str) -> None:
        """The cells of a row updated while out of view (see ``update_rows``)."""
        cells = self.cells(self._pending.pop(key))
        self._cells[key] = cells
        self._strips.pop(key, None)
        if self._note_numbers(cells):
            self._lay_out(force=True)

    def has_rows(self, keys: Iterable[str]) -> bool:
        """Whether every one of ``keys`` is a row."""
        index = self._index
        return all(key in index for key in keys)

    def _note_numbers(self, cells: tuple[Cell, ...]) -> bool:
        """Remember the widest number of each column, and the widest text of each flexible
        one; True when one outgrew its column (a new layout gives it room if there is any)."""
        widened = False
        for i, cell in enumerate(cells):
            if isinstance(cell, Text) and cell.justify == "right":
                length = cell_len(_one_line(cell.plain).strip())
                if length > self._numbers[i]:
                    self._numbers[i] = length
                    widened = widened or length > self._widths[i]
            elif i in self._flex:
                length = cell_len(_one_line(cell.plain if isinstance(cell, Text) else cell).rstrip())
                if length > self._texts[i]:
                    self._texts[i] = length
                    widened = widened or length > self._widths[i]
        return widened

    def _set_row(self, key: str, cells: tuple[Cell, ...]) -> None:
        """A changed row: forget its drawing, repaint its line (and nothing else)."""
        self._cells[key] = cells
        self._strips.pop(key, None)
        self._refresh_row(self._index[key])

    def _rows_moved(self, selected: str | None, was_visible: bool) -> None:
        """Rows came or went: the cursor stays on its row (or, that row gone, where it was)."""
        if selected is not None and selected in self._index:
            self._cursor = self._index[selected]
        self._cursor = max(0, min(self._cursor, len(self._keys) - 1))
        self._update_virtual_size()
        if was_visible and not self._cursor_in_view():
            self._scroll_cursor_into_view()
        self.refresh()

    def reorder(self, keys: list[str]) -> None:
        """Put the rows in the order of ``keys`` (rows not named keep their order, after them);
        the cursor stays on its row."""
        cells = self._cells
        named = list(dict.fromkeys(k for k in keys if k in cells))
        if len(named) == len(self._keys):  # every row named (a watchlist): nothing else to keep
            order = named
        else:
            first = set(named)
            order = named + [k for k in self._keys if k not in first]
        if order == self._keys:
            return
        selected = self.selected_key
        was_visible = self._cursor_in_view()
        self._keys = order
        self._index = {key: i for i, key in enumerate(order)}
        self._rows_moved(selected, was_visible)

    def reset(self) -> None:
        """Forget every row (another account's data is about to come in)."""
        self._keys.clear()
        self._index.clear()
        self._cells.clear()
        self._pending.clear()
        self._strips.clear()
        self._cursor = 0
        self._numbers = [0] * len(self.COLUMNS)
        self._texts = [0] * len(self.COLUMNS)
        self._lay_out(force=True)
        self._update_virtual_size()
        self.scroll_to(0, 0, animate=False)
        self.refresh()

    # ------------------------------------------------------------------ geometry

    @property
    def _table_width(self) -> int:
        return sum(self._widths[i] + 1 + self.cell_padding for i in self._visible)

    def _update_virtual_size(self) -> None:
        size = Size(self._table_width, len(self._keys) + 1)  # + the header
        if size != self.virtual_size:
            self.virtual_size = size

    @property
    def _page(self) -> int:
        """Rows that fit under the header."""
        return max(1, self.scrollable_content_region.height - 1)

    def _cursor_in_view(self) -> bool:
        top = self.scroll_offset.y
        return top <= self._cursor < top + self._page

    def _scroll_cursor_into_view(self) -> None:
        top = self.scroll_offset.y
        if self._cursor < top:
            self.scroll_to(y=self._cursor, animate=False)
        elif self._cursor >= top + self._page:
            self.scroll_to(y=self._cursor - self._page + 1, animate=False)

    def _refresh_row(self, index: int) -> None:
        y = index + 1 - self.scroll_offset.y
        if 1 <= y < self.size.height:
            self.refresh(Region(0, y, self.size.width, 1))

    def _label(self, i: int, width: int) -> str:
        key, label, _ = self.COLUMNS[i]
        label = _one_line(label)
        short = self.SHORT_LABELS.get(key)
        if cell_len(label) > width and short is not None:
            return short
        return label

    def _natural(self, i: int) -> int:
        """A fixed column's width: as declared, wide enough for its label (or its short
        label) and for the widest number it has held."""
        key, label, width = self.COLUMNS[i]
        label_width = cell_len(self.SHORT_LABELS.get(key, _one_line(label)))
        return max(width, label_width, self._numbers[i])

    def _least(self, i: int) -> int:
        key = self.COLUMNS[i][0]
        if key in self.FLEX:
            label = self.SHORT_LABELS.get(key, _one_line(self.COLUMNS[i][1]))
            return max(self.FLEX[key], cell_len(label), self._numbers[i])
        return self._natural(i)

    def _plan(self, width: int) -> tuple[list[int], list[int], int]:
        """The columns that fit in ``width``, every column's width, and the padding after a
        cell: give up columns in ``HIDE_WHEN_NARROW`` order, but before each one first
        shrink the flexible columns to their minimum, then narrow the padding to nothing
        (one blank before each cell stays). Nothing fits: the fewest columns, scrolled."""
        widths = [self._natural(i) for i in range(len(self.COLUMNS))]
        hidden: set[str] = set()
        visible: list[int] = []
        for give_up in (None, *self.HIDE_WHEN_NARROW):
            if give_up is not None:
                hidden.add(give_up)
            visible = [i for i, (k, _, _) in enumerate(self.COLUMNS) if k not in hidden]
            least = sum(self._least(i) for i in visible)
            for padding in (1, 0):
                spare = width - least - len(visible) * (1 + padding)
                if spare >= 0:
                    return visible, self._share(widths, visible, spare), padding
        return visible, self._share(widths, visible, 0), 0

    def _share(self, widths: list[int], visible: list[int], spare: int) -> list[int]:
        """The flexible columns get their minimum plus the spare width: first what their
        widest text needs (in column order), then the rest in proportion to their declared
        widths."""
        flex = [i for i in visible if i in self._flex]
        for i in flex:
            widths[i] = self._least(i)
            give = min(max(0, self._texts[i] - widths[i]), spare)
            widths[i] += give
            spare -= give
        weight = sum(self.COLUMNS[i][2] for i in flex)
        given = 0
        for n, i in enumerate(flex):
            extra = spare - given if n == len(flex) - 1 else spare * self.COLUMNS[i][2] // max(weight, 1)
            widths[i] += extra
            given += extra
        return widths

    def on_mount(self) -> None:
        self._update_virtual_size()

    def on_resize(self) -> None:
        """Lay out what fits: decided on a resize (and when a number outgrows its column)."""
        self._lay_out()

    def _lay_out(self, *, force: bool = False) -> None:
        # room for a vertical scrollbar is always kept, so rows coming past a page never
        # change the layout
        width = self.size.width - self.styles.scrollbar_size_vertical
        if width <= 0:  # not on screen (a hidden tab): laid out when it is
            self._laid_out_for = -1
            return
        if width == self._laid_out_for and not force:
            return
        self._laid_out_for = width
        visible, widths, padding = self._plan(width)
        if visible == self._visible and widths == self._widths and padding == self.cell_padding:
            return
        self._visible, self._widths, self.cell_padding = visible, widths, padding
        self._strips.clear()
        self._header = None
        self._update_virtual_size()
        self.refresh()

    # ------------------------------------------------------------------ drawing

    def refresh(self, *regions: Region, **kwargs: Any) -> Self:
        if not regions:  # every style change repaints the whole widget: look at them again
            self._styles_checked = False
        return super().refresh(*regions, **kwargs)

    def notify_style_update(self) -> None:
        self._styles_checked = False
        super().notify_style_update()

    def render_lines(self, crop: Region) -> list[Strip]:
        if not self._styles_checked:  # not per changed line: reading styles is not free
            self._styles_checked = True
            self._check_styles()
        return super().render_lines(crop)

    def _check_styles(self) -> None:
        base = self.rich_style
        header = self.get_component_rich_style("keyed-table--header")
        cursor = self.get_component_rich_style("keyed-table--cursor")
        if (base, header, cursor) != self._style_key:  # focus, theme: every line changes
            self._style_key = (base, header, cursor)
            self._base, self._header_style = base, header
            self._cursor_pre = cursor
            self._cursor_post = Style.from_color(cursor.color, cursor.bgcolor)
            self._cell_styles.clear()
            self._strips.clear()
            self._header = None

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        scroll_x, scroll_y = self.scroll_offset
        if y == 0:
            if self._header is None:
                self._header = self._build_header()
            return self._header.crop_extend(scroll_x, scroll_x + width, self._header_style)
        index = scroll_y + y - 1
        if index >= len(self._keys):
            return Strip.blank(width, self._base)
        key = self._keys[index]
        if key in self._pending:  # updated while out of view
            self._build_pending(key)
        strip = self._strips.get(key)
        if strip is None:
            strip = self._strips[key] = self._build_row(self._cells[key])
        line = strip.crop_extend(scroll_x, scroll_x + width, self._base)
        if index == self._cursor:
            line = Strip(Segment.apply_style(line, self._cursor_pre, self._cursor_post), width)
        return line

    def _build_header(self) -> Strip:
        after = " " * self.cell_padding
        text = "".join(
            " " + set_cell_size(self._label(i, self._widths[i]), self._widths[i]) + after
            for i in self._visible
        )
        return Strip([Segment(text, self._header_style)], self._table_width)

    def _build_row(self, cells: tuple[Cell, ...]) -> Strip:
        segments: list[Segment] = []
        add = segments.append
        before = Segment(" ", self._base)
        after = Segment(" " * self.cell_padding, self._base) if self.cell_padding else None
        for i in self._visible:
            add(before)
            segments.extend(self._fit(cells[i], self._widths[i]))
            if after:
                add(after)
        return Strip(segments, self._table_width).simplify()

    def _fit(self, cell: Cell, width: int) -> list[Segment]:
        """One cell, exactly ``width`` wide: cropped, then justified."""
        if not isinstance(cell, Text):
            plain, style, justify = _one_line(str(cell)), "", None
        elif cell.spans:
            return self._fit_spans(cell, width)
        else:
            plain, style, justify = _one_line(cell.plain), cell.style, cell.justify
        if justify == "right":
            plain = plain.rstrip()
        length = cell_len(plain)
        if length > width:
            plain, length = set_cell_size(plain, width), width
        gap = width - length
        if gap:
            if justify == "right":
                plain = " " * gap + plain
            elif justify == "center":
                plain = " " * (gap // 2) + plain + " " * (gap - gap // 2)
            else:
                plain += " " * gap
        return [Segment(plain, self._cell_style(style))]

    def _fit_spans(self, cell: Text, width: int) -> list[Segment]:
        """A cell styled in parts: the slow way, through Rich."""
        text = cell.copy()
        if not text.plain.isprintable():
            text = text.split("\n")[0] if "\n" in text.plain else text
            text.plain = _one_line(text.plain)
        text.truncate(width, overflow="crop")
        gap = width - text.cell_len
        if cell.justify == "right":
            text.pad_left(gap)
        elif cell.justify == "center":
            text.pad_left(gap // 2)
            text.pad_right(gap - gap // 2)
        else:
            text.pad_right(gap)
        return list(Segment.apply_style(text.render(self.app.console), self._base))

    def _cell_style(self, style: str | Style) -> Style:
        combined = self._cell_styles.get(style)
        if combined is None:
            if isinstance(style, Style):
                parsed = style
            else:
                parsed = self.app.console.get_style(style, default=Style.null()) if style else Style.null()
            combined = self._cell_styles[style] = self._base + parsed
        return combined

    # ------------------------------------------------------------------ cursor

    def move_cursor(self, row: int) -> None:
        """Put the cursor on row ``row`` (clamped) and scroll it into view."""
        if not self._keys:
            return
        row = max(0, min(row, len(self._keys) - 1))
        if row != self._cursor:
            old, self._cursor = self._cursor, row
            self._refresh_row(old)
            self._refresh_row(row)
        self._scroll_cursor_into_view()

    def action_cursor_up(self) -> None:
        self.move_cursor(self._cursor - 1)

    def action_cursor_down(self) -> None:
        self.move_cursor(self._cursor + 1)

    def action_page_up(self) -> None:
        self.move_cursor(self._cursor - self._page)

    def action_page_down(self) -> None:
        self.move_cursor(self._cursor + self._page)

    def action_first_row(self) -> None:
        self.move_cursor(0)

    def action_last_row(self) -> None:
        self.move_cursor(len(self._keys) - 1)

    def action_select_cursor(self) -> None:
        key = self.selected_key
        if key is not None:
            self.post_message(self.RowSelected(self, key, self._cursor))

    async def _on_click(self, event: events.Click) -> None:
        """A click selects the row under the mouse; a click on the selected row is Enter."""
        offset = event.get_content_offset(self)
        if offset is None or offset.y < 1:
            return
        index = offset.y - 1 + self.scroll_offset.y
        if index >= len(self._keys):
            return
        if index == self._cursor:
            self.action_select_cursor()
        else:
            self.move_cursor(index)


def _differ(old: Cell, new: Cell) -> bool:
    return old is not new and _signature(old) != _signature(new)
