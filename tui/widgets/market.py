"""Market panel: the watchlist's quotes, with the day's limits, pre-settlement and open interest.

The row under the cursor is the selected contract: the Depth panel shows its book (the table
posts ``Highlighted`` when the cursor moves to another contract)."""

from __future__ import annotations

from textual.message import Message

from core.client import AccountState
from core.models import Tick
from tui import format as fmt
from tui.widgets.table import Cell, KeyedTable


class MarketTable(KeyedTable[Tick]):
    COLUMNS = (
        ("symbol", "Symbol", 12),
        ("last", "Last", 9),
        ("chg", "Chg%", 7),
        ("bid", "Bid", 9),
        ("bidv", "BidV", 4),
        ("ask", "Ask", 9),
        ("askv", "AskV", 4),
        ("vol", "Volume", 9),
        ("oi", "OI", 9),
        ("pre", "PreSettle", 9),
        ("up", "Limit up", 9),
        ("down", "Limit dn", 9),
    )
    # at 80 columns the watchlist is symbol, last and change; bid and ask come back from 100
    HIDE_WHEN_NARROW = ("pre", "down", "up", "oi", "vol", "askv", "bidv", "ask", "bid")

    class Highlighted(Message):
        """The cursor is on another contract (``vt_symbol``; None when the table is empty)."""

        def __init__(self, table: MarketTable, vt_symbol: str | None) -> None:
            super().__init__()
            self.table = table
            self.vt_symbol = vt_symbol

        @property
        def control(self) -> MarketTable:
            return self.table

    def __init__(self, *, scheme: str = "cn", id: str | None = None) -> None:
        super().__init__(id=id)
        self.scheme = scheme
        self.state: AccountState | None = None

    def key_of(self, item: Tick) -> str:
        return item.vt_symbol

    def cells(self, item: Tick) -> tuple[Cell, ...]:
        contract = self.state.contracts.get(item.vt_symbol) if self.state else None
        change = item.change_pct
        return (
            item.vt_symbol,
            fmt.signed(change, fmt.price(item.last_price, contract), self.scheme),
            fmt.signed(change, fmt.pct(change), self.scheme),
            fmt.right(fmt.price(item.bid_price_1, contract)),
            fmt.right(fmt.volume(item.bid_volume_1)),
            fmt.right(fmt.price(item.ask_price_1, contract)),
            fmt.right(fmt.volume(item.ask_volume_1)),
            fmt.right(fmt.volume(item.volume)),
            fmt.right(fmt.volume(item.open_interest)),
            fmt.right(fmt.price(item.pre_settlement, contract)),
            fmt.right(fmt.price(item.limit_up, contract)),
            fmt.right(fmt.price(item.limit_down, contract)),
        )

    def move_cursor(self, row: int) -> None:
        before = self.selected_key
        super().move_cursor(row)
        if self.selected_key != before:
            self.post_message(self.Highlighted(self, self.selected_key))

    def show(self, state: AccountState, only: set[str] | None = None) -> None:
        self.state = state
        symbols = market_symbols(state)
        if symbols is None:
            self.sync(state.ticks.values(), only=only)
            return
        self.sync([state.ticks[s] for s in symbols if s in state.ticks], only=only)
        self.reorder(symbols)


def market_symbols(state: AccountState) -> list[str] | None:
    """The Market panel's contracts in order: the account's watchlist, then the contracts of
    its positions and strategies that are not in it (what the operator must see quoted); None
    when the trader has not said its watchlist (then every quote, as it comes)."""
    if state.watchlist is None:
        return None
    extra = [p.vt_symbol for p in state.positions.values()] + [s.vt_symbol for s in state.strategies.values()]
    return list(dict.fromkeys([*state.watchlist, *extra]))
