"""ConfirmDialog: shows exactly what will happen; ``y``/Enter confirms once, ``n``/Esc aborts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static


class ConfirmDialog(ModalScreen[bool]):
    """Answers True at most once: a second ``y`` (key repeat) does nothing.

    It accepts a confirmation only ``ARM_DELAY`` seconds after it appears, so a key
    still held down from the form before it (a repeating Enter) cannot confirm
    what the operator has not seen. Aborting works at once.
    """

    ARM_DELAY: ClassVar[float] = 0.3

    BINDINGS = [
        Binding("y,enter", "confirm", "Confirm", priority=True),
        Binding("n,escape", "abort", "Abort", priority=True),
    ]

    def __init__(self, title: str, rows: Sequence[tuple[str, str | Text]], *, danger: bool = False) -> None:
        super().__init__(classes="danger" if danger else "")
        self.title_text = title
        self.rows = rows
        self._answered = False
        self.armed = False

    def compose(self) -> ComposeResult:
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold")
        grid.add_column()
        for label, value in self.rows:
            grid.add_row(label, value)
        with Vertical(id="confirm-box"):
            yield Static(Text(self.title_text, style="bold"), id="confirm-title")
            yield Static(grid, id="confirm-rows")
            yield Static(Text("y / Enter: confirm    n / Esc: abort", style="italic"), id="confirm-keys")

    def on_mount(self) -> None:
        if self.ARM_DELAY > 0:
            self.set_timer(self.ARM_DELAY, self._arm)
        else:
            self._arm()

    def _arm(self) -> None:
        self.armed = True

    def action_confirm(self) -> None:
        if self._answered or not self.armed:
            return
        self._answered = True
        self.dismiss(True)

    def action_abort(self) -> None:
        if self._answered:
            return
        self._answered = True
        self.dismiss(False)
