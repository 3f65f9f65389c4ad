"""Market panel: the watchlist's quotes."""

from __future__ import annotations

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
    )
    # at 80 columns the watchlist is symbol, last and change; bid and ask come back from 100
    HIDE_WHEN_NARROW = ("oi", "vol", "askv", "bidv", "ask", "bid")

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
        )

    def show(self, state: AccountState, only: set[str] | None = None) -> None:
        self.state = state
        self.sync(state.ticks.values(), only=only)
