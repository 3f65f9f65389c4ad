"""ConfirmDialog: shows exactly what will happen; a fresh ``y`` confirms once, ``n``/Esc aborts."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

#: The keys that send when the operator's config says nothing else (``ui.confirm_with_enter``
#: adds Enter). Not Enter by default: Enter submits the form before it, and a held Enter
#: must not go through both.
DEFAULT_CONFIRM_KEYS: tuple[str, ...] = ("y",)


class ConfirmDialog(ModalScreen[bool]):
    """Answers True at most once, and only to a key press the operator made after reading it.

    A confirming key counts only when (1) the dialog has been shown for ``ARM_DELAY``
    seconds, longer than a terminal's usual key-repeat delay, and (2) it is a fresh press:
    no key reached the dialog in the ``REPEAT_GAP`` before it. A key held down since the
    form (or any key held down) arrives as a stream of repeats a few tens of milliseconds
    apart, so no event of that stream counts, however long it is held; releasing it and
    pressing again does. A second answer (a repeat of the key that answered) does nothing.
    Aborting works at once.
    """

    ARM_DELAY: ClassVar[float] = 0.6
    REPEAT_GAP: ClassVar[float] = 0.25
    #: the time source (monotonic seconds); tests replace it
    clock: ClassVar[Callable[[], float]] = time.monotonic

    BINDINGS = [Binding("n,escape", "abort", "Abort", priority=True)]

    def __init__(self, title: str, rows: Sequence[tuple[str, str | Text]], *, danger: bool = False) -> None:
        super().__init__(classes="danger" if danger else "")
        self.title_text = title
        self.rows = rows
        self._answered = False
        self._shown_at = type(self).clock()
        self._last_key_at = self._shown_at  # keys before it went to what was on screen then

    @property
    def confirm_keys(self) -> tuple[str, ...]:
        """The keys that send: the app's (``ui.confirm_with_enter``), else ``y``."""
        return tuple(getattr(self.app, "confirm_keys", DEFAULT_CONFIRM_KEYS))

    @property
    def armed(self) -> bool:
        """Shown long enough for a confirming key to count."""
        return type(self).clock() - self._shown_at >= self.ARM_DELAY

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box"):
            yield Static(Text(self.title_text, style="bold"), id="confirm-title")
            yield Static(self._grid(), id="confirm-rows")
            yield Static(self._keys_text(), id="confirm-keys")

    def _grid(self) -> Table:
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold")
        grid.add_column()
        for label, value in self.rows:
            grid.add_row(label, value)
        return grid

    def _keys_text(self) -> Text:
        keys = " / ".join("Enter" if k == "enter" else k for k in self.confirm_keys)
        return Text(f"{keys}: confirm    n / Esc: abort", style="italic")

    def show_rows(self, rows: Sequence[tuple[str, str | Text]]) -> None:
        """Say something else: the new rows, read afresh (arming starts over, so a key
        pressed as they change does not confirm what the operator has not read)."""
        self.rows = rows
        self._shown_at = type(self).clock()
        self.query_one("#confirm-rows", Static).update(self._grid())
        self.query_one("#confirm-keys", Static).update(self._keys_text())

    def on_key(self, event: events.Key) -> None:
        moment = type(self).clock()
        fresh = moment - self._last_key_at >= self.REPEAT_GAP
        self._last_key_at = moment
        if event.key not in self.confirm_keys:
            return
        event.stop()
        event.prevent_default()
        if fresh and self.armed:
            self.action_confirm()

    def action_confirm(self) -> None:
        if self._answered:
            return
        self._answered = True
        self.dismiss(True)

    def action_abort(self) -> None:
        if self._answered:
            return
        self._answered = True
        self.dismiss(False)
