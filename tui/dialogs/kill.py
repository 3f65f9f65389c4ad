"""KillDialog: the kill switch's confirmation, with the one choice it offers.

Whether the protective strategies (stop guards: strategy classes with ``PROTECTIVE``)
keep running when the switch is pulled. The default is what the kill switch always
did: everything stops. With ``p`` they keep running and their closing orders still go
out, held to what REDUCING allows, while the account is HALTED for everything else
(core/protocol.py, ``KillRequest``). The rows always say what confirming does now.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType

from tui.dialogs.confirm import ConfirmDialog

Rows = Sequence[tuple[str, str | Text]]


def protective_row(labels: list[str], keep: bool, *, auto_trading: bool | None) -> tuple[str, Text]:
    """The ``Protective`` row: the running protective strategies and what becomes of them."""
    names = ", ".join(labels)
    if not keep:
        return "Protective", Text.assemble(("STOPPED ", "bold"), f"with the rest: {names}")
    text = Text.assemble(
        ("KEEP RUNNING ", "bold red"),
        f"{names}: they may still close positions (only orders that reduce one; their own "
        "working closes stay working); nothing else trades",
    )
    if auto_trading is False:
        text.append(" (auto-trading is OFF: their signals are only recorded until it is on)")
    return "Protective", text


class KillDialog(ConfirmDialog):
    """The kill switch's confirmation; ``keep_protective`` is the operator's choice (``p``).

    ``rows_for(keep)`` gives the rows for either choice. ``choice`` is False when no
    protective strategy runs: then there is nothing to choose and ``p`` does nothing.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("p", "toggle_protective", "Keep/stop protective strategies", show=False),
    ]

    def __init__(self, title: str, rows_for: Callable[[bool], Rows], *, choice: bool) -> None:
        self.rows_for = rows_for
        self.choice = choice
        self.keep_protective = False
        super().__init__(title, rows_for(False), danger=True)

    def _keys_text(self) -> Text:
        text = super()._keys_text()
        if self.choice:
            what = "stop them too" if self.keep_protective else "keep them running"
            text.append(f"    p: {what}")
        return text

    def action_toggle_protective(self) -> None:
        if not self.choice or self._answered:
            return
        self.keep_protective = not self.keep_protective
        self.show_rows(self.rows_for(self.keep_protective))
