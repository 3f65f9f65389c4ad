"""Adding a contract to the watchlist: a symbol typed with completion from the venue's contracts.

The candidates are the contracts the account's trader has reported (the snapshot's) and, once
its answer arrives, every future its venue lists (``ConsoleClient.listed_contracts``). Typing
narrows them (the start of the symbol, any case); the first match is proposed inline (Right or
Tab takes it) and the first few are listed under the field. Enter returns the symbol; the trader
then checks that its venue knows it.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.suggester import Suggester
from textual.widgets import Input, Static

from core.models import SYMBOL_PATTERN

#: matches listed under the field
SHOWN_MATCHES = 8


def matches(candidates: Iterable[str], typed: str) -> list[str]:
    """The candidates that start with ``typed`` (any case), nearest month first per product."""
    text = typed.strip().lower()
    return sorted(c for c in candidates if c.lower().startswith(text)) if text else []


class _Completion(Suggester):
    """The first candidate that starts with what is typed."""

    def __init__(self, dialog: AddContractDialog) -> None:
        super().__init__(use_cache=False, case_sensitive=True)
        self.dialog = dialog

    async def get_suggestion(self, value: str) -> str | None:
        found = matches(self.dialog.candidates, value)
        return found[0] if found else None


class AddContractDialog(ModalScreen[str | None]):
    """Enter adds the typed contract; Esc abandons."""

    BINDINGS = [
        Binding("escape", "abandon", "Abandon"),
        Binding("tab", "complete", "Complete", show=False, priority=True),
    ]

    def __init__(
        self,
        account_id: str,
        known: Iterable[str],
        listed: Callable[[], Awaitable[list[str]]] | None = None,
        watched: Iterable[str] = (),
    ) -> None:
        """``known``: contracts the trader reported; ``listed``: asks for the venue's whole list;
        ``watched``: already in the watchlist (not proposed)."""
        super().__init__()
        self.account_id = account_id
        self.watched = set(watched)
        self.candidates: list[str] = sorted(set(known) - self.watched)
        self._listed = listed

    def compose(self) -> ComposeResult:
        with Vertical(id="watch-box"):
            yield Static(Text(f"Add to the watchlist — {self.account_id}", style="bold"), id="watch-title")
            yield Input(placeholder="rb2610.SHFE", id="watch-symbol", suggester=_Completion(self))
            yield Static("", id="watch-matches")
            yield Static("", id="watch-error")
            yield Static(
                Text("Enter: add  Tab / Right: complete  Esc: abandon", style="italic"), id="watch-keys"
            )

    def on_mount(self) -> None:
        self.query_one("#watch-symbol", Input).focus()
        if self._listed is not None:
            self.run_worker(self._load(), group="listed")

    async def _load(self) -> None:
        assert self._listed is not None
        listed = await self._listed()
        self.candidates = sorted((set(self.candidates) | set(listed)) - self.watched)
        self._show_matches(self.query_one("#watch-symbol", Input).value)

    @on(Input.Changed, "#watch-symbol")
    def _typed(self, event: Input.Changed) -> None:
        self._show_matches(event.value)
        self.query_one("#watch-error", Static).update("")

    def _show_matches(self, typed: str) -> None:
        found = matches(self.candidates, typed)
        text = Text()
        if found:
            text.append("  ".join(found[:SHOWN_MATCHES]))
            if len(found) > SHOWN_MATCHES:
                text.append(f"  ... {len(found) - SHOWN_MATCHES} more", style="dim")
        elif typed.strip():
            text.append("no listed contract starts so", style="dim")
        self.query_one("#watch-matches", Static).update(text)

    def action_complete(self) -> None:
        field = self.query_one("#watch-symbol", Input)
        found = matches(self.candidates, field.value)
        if found:
            field.value = found[0]
            field.cursor_position = len(found[0])

    @on(Input.Submitted, "#watch-symbol")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        symbol = event.value.strip()
        problem = self.problem(symbol)
        if problem:
            self.query_one("#watch-error", Static).update(Text(problem, style="bold red"))
            return
        self.dismiss(symbol)

    def problem(self, symbol: str) -> str:
        """What is wrong with ``symbol`` before it is sent ("" if nothing)."""
        if not symbol:
            return "type a contract, e.g. rb2610.SHFE"
        if symbol in self.watched:
            return f"{symbol} is in the watchlist already"
        if not re.fullmatch(SYMBOL_PATTERN, symbol):
            return f"'{symbol}' is not a contract symbol such as rb2610.SHFE"
        return ""

    def action_abandon(self) -> None:
        self.dismiss(None)
