"""KeyedTable: a DataTable that is kept in sync by row key.

Live data never rebuilds a table: rows are added, removed, or have just their
changed cells updated, so the cursor and scroll stay where the operator left them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar, Generic, TypeVar

from rich.console import RenderableType
from textual.widgets import DataTable

T = TypeVar("T")


class KeyedTable(DataTable, Generic[T]):
    """Subclasses declare ``COLUMNS`` ((key, label, width), ...) and implement
    ``key_of`` and ``cells``."""

    COLUMNS: ClassVar[tuple[tuple[str, str, int], ...]] = ()
    # columns given up, in this order, when the table is too narrow to show them all
    HIDE_WHEN_NARROW: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes, cursor_type="row", zebra_stripes=False)
        self._cells: dict[str, tuple[RenderableType, ...]] = {}
        self._visible: list[int] = list(range(len(self.COLUMNS)))

    def on_mount(self) -> None:
        self._add_columns()

    def _add_columns(self) -> None:
        for i in self._visible:
            key, label, width = self.COLUMNS[i]
            self.add_column(label, width=width, key=key)

    def _columns_for(self, width: int) -> tuple[list[int], int]:
        """The columns that fit in ``width``, and the cell padding to use: hide columns
        first; only when that is not enough, drop the padding (and hide fewer)."""

        def need(hidden: set[str], padding: int) -> int:
            return sum(w + 2 * padding for k, _, w in self.COLUMNS if k not in hidden)

        hidden: set[str] = set()
        for padding in (1, 0):
            hidden = set()
            for key in (None, *self.HIDE_WHEN_NARROW):
                if key is not None:
                    hidden.add(key)
                if need(hidden, padding) <= width:
                    return [i for i, (k, _, _) in enumerate(self.COLUMNS) if k not in hidden], padding
        return [i for i, (k, _, _) in enumerate(self.COLUMNS) if k not in hidden], 0

    def on_resize(self) -> None:
        """Show what fits: rebuilt on a resize only, never on a tick."""
        if not self.HIDE_WHEN_NARROW or not self.size.width:
            return
        visible, padding = self._columns_for(self.size.width - 1)
        if visible == self._visible and padding == self.cell_padding:
            return
        self.cell_padding = padding
        self._visible = visible
        cursor = self.cursor_row
        self.clear(columns=True)
        self._add_columns()
        for key, cells in self._cells.items():
            self.add_row(*(cells[i] for i in visible), key=key)
        if self.row_count:
            self.move_cursor(row=min(cursor, self.row_count - 1))

    # ------------------------------------------------------------------ subclass API

    def key_of(self, item: T) -> str:
        raise NotImplementedError

    def cells(self, item: T) -> tuple[RenderableType, ...]:
        raise NotImplementedError

    # ------------------------------------------------------------------ syncing

    def sync(self, items: Iterable[T], *, only: set[str] | None = None) -> None:
        """Make the rows match ``items``. With ``only``, rows outside it are assumed
        unchanged (their cells are not even rendered): the per-tick path."""
        fresh: dict[str, T] = {self.key_of(item): item for item in items}
        for key in [k for k in self._cells if k not in fresh]:
            self.remove_row(key)
            del self._cells[key]
        for key, item in fresh.items():
            old = self._cells.get(key)
            if old is not None and only is not None and key not in only:
                continue
            new = self.cells(item)
            if old is None:
                self.add_row(*(new[i] for i in self._visible), key=key)
            elif new != old:
                for i in self._visible:
                    if old[i] != new[i]:
                        self.update_cell(key, self.COLUMNS[i][0], new[i], update_width=False)
            self._cells[key] = new

    def reset(self) -> None:
        """Forget every row (another account's data is about to come in)."""
        self.clear()
        self._cells.clear()

    @property
    def selected_key(self) -> str | None:
        if not self.row_count:
            return None
        try:
            return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except Exception:  # no valid cursor
            return None
