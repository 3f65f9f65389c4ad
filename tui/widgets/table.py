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

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes, cursor_type="row", zebra_stripes=False)
        self._cells: dict[str, tuple[RenderableType, ...]] = {}

    def on_mount(self) -> None:
        for key, label, width in self.COLUMNS:
            self.add_column(label, width=width, key=key)

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
                self.add_row(*new, key=key)
            elif new != old:
                for (col, _, _), before, after in zip(self.COLUMNS, old, new, strict=True):
                    if before != after:
                        self.update_cell(key, col, after, update_width=False)
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
