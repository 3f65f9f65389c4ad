"""The help screen, generated from the action table."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from tui.actions import ACTIONS, key_label


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close", priority=True)]

    def __init__(self, keymap: dict[str, str]) -> None:
        super().__init__()
        self.keymap = keymap

    def compose(self) -> ComposeResult:
        table = Table(title="qtrader-tui keys", expand=True, show_edge=False)
        table.add_column("Key", style="bold cyan", no_wrap=True)
        table.add_column("Where")
        table.add_column("What")
        shown_numbers = False
        for action in ACTIONS:
            if action.id.startswith("account_"):
                if shown_numbers:
                    continue
                shown_numbers = True
                table.add_row("1 .. 9", "everywhere", "Account by its number")
                continue
            where = {"global": "everywhere", "account": "account screen", "dashboard": "dashboard"}[
                action.scope
            ]
            table.add_row(key_label(action, self.keymap), where, action.help)
        table.add_row("tab", "everywhere", "Next panel")
        table.add_row("ctrl+p", "everywhere", "Command palette (every action, and 'Switch to account ...')")
        with VerticalScroll(id="help-box"):
            yield Static(table)
            yield Static("ctrl+c is never bound to a trading action.   Esc closes this help.", id="help-foot")

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)
