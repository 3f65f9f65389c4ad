"""Positions panel: direction, volume, yesterday's volume, cost, last, P&L."""

from __future__ import annotations

from core.client import AccountState
from core.models import Position
from tui import format as fmt
from tui.widgets.table import Cell, KeyedTable


def position_key(pos: Position) -> str:
    return f"{pos.vt_symbol}|{pos.direction.name}"


class PositionsTable(KeyedTable[Position]):
    COLUMNS = (
        ("symbol", "Symbol", 12),
        ("dir", "Dir", 5),
        ("vol", "Vol", 4),
        ("yd", "Yd", 4),
        ("cost", "Cost", 9),
        ("last", "Last", 9),
        ("pnl", "P&L", 11),
    )
    # what the operator closes by (symbol, direction, volume) and the P&L stay longest
    HIDE_WHEN_NARROW = ("yd", "last", "cost")

    def __init__(self, *, scheme: str = "cn", id: str | None = None) -> None:
        super().__init__(id=id)
        self.scheme = scheme
        self.state: AccountState | None = None

    def key_of(self, item: Position) -> str:
        return position_key(item)

    def cells(self, item: Position) -> tuple[Cell, ...]:
        contract = self.state.contracts.get(item.vt_symbol) if self.state else None
        return (
            item.vt_symbol,
            fmt.side(item.direction, self.scheme),
            fmt.right(fmt.volume(item.volume)),
            fmt.right(fmt.volume(item.yd_volume)),
            fmt.right(fmt.price(item.price, contract)),
            fmt.right(fmt.price(item.last_price, contract)),
            fmt.signed(item.pnl, fmt.amount(item.pnl), self.scheme),
        )

    def show(self, state: AccountState) -> None:
        self.state = state
        self.sync(state.positions.values())

    def selected(self) -> Position | None:
        key = self.selected_key
        if key is None or self.state is None:
            return None
        return next((p for p in self.state.positions.values() if position_key(p) == key), None)
