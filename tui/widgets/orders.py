"""Orders panel (working orders, or all with ``o``) and the Trades panel."""

from __future__ import annotations

from rich.text import Text

from core.client import AccountState
from core.models import EXTERNAL, Direction, Offset, Order, Trade
from tui import format as fmt
from tui.widgets.table import Cell, KeyedTable


def _side(direction: Direction, scheme: str) -> Text:
    up, down = fmt.UP_DOWN.get(scheme, fmt.UP_DOWN["cn"])
    return Text("BUY", style=up) if direction is Direction.LONG else Text("SELL", style=down)


#: Offsets as they fit a 9-wide column (CLOSEYESTERDAY would be cut to CLOSEYEST).
OFFSET_LABELS = {
    Offset.OPEN: "OPEN",
    Offset.CLOSE: "CLOSE",
    Offset.CLOSETODAY: "CLOSE TD",
    Offset.CLOSEYESTERDAY: "CLOSE YD",
}


def _by(reference: str) -> Text | str:
    """Who placed it: ``manual``, a strategy instance, or ``external`` (outside qtrader), marked."""
    return Text(reference, style="bold yellow") if reference == EXTERNAL else reference


class OrdersTable(KeyedTable[Order]):
    """Newest first; the message (why an order was refused) takes the width left over."""

    COLUMNS = (
        ("time", "Time", 8),
        ("id", "Order", 16),
        ("symbol", "Symbol", 12),
        ("side", "Side", 4),
        ("offset", "Offset", 8),
        ("price", "Price", 10),
        ("vol", "Vol", 4),
        ("traded", "Done", 4),
        ("status", "Status", 10),
        ("ref", "By", 10),
        ("msg", "Message", 40),
    )
    # the order id first (the panel's cursor picks the order), the status and figures last
    HIDE_WHEN_NARROW = ("id", "ref", "time", "msg", "offset", "traded")
    FLEX = {"msg": 12}
    NEWEST_FIRST = True

    def __init__(self, *, scheme: str = "cn", id: str | None = None) -> None:
        super().__init__(id=id)
        self.scheme = scheme
        self.working_only = True
        self.state: AccountState | None = None

    def key_of(self, item: Order) -> str:
        return item.order_id

    def cells(self, item: Order) -> tuple[Cell, ...]:
        contract = self.state.contracts.get(item.vt_symbol) if self.state else None
        return (
            f"{item.datetime:%H:%M:%S}",
            item.order_id,
            item.vt_symbol,
            _side(item.direction, self.scheme),
            OFFSET_LABELS.get(item.offset, item.offset.name),
            fmt.right(fmt.price(item.price, contract)),
            fmt.right(fmt.volume(item.volume)),
            fmt.right(fmt.volume(item.traded)),
            fmt.order_status(item.status),
            _by(item.reference),
            item.status_msg,
        )

    def show(self, state: AccountState) -> None:
        self.state = state
        orders = state.orders.values()
        self.sync([o for o in orders if o.is_active] if self.working_only else list(orders))

    def selected(self) -> Order | None:
        key = self.selected_key
        if key is None or self.state is None:
            return None
        return self.state.orders.get(key)


class TradesTable(KeyedTable[Trade]):
    """Newest first."""

    COLUMNS = (
        ("time", "Time", 8),
        ("symbol", "Symbol", 12),
        ("side", "Side", 4),
        ("offset", "Offset", 8),
        ("price", "Price", 10),
        ("vol", "Vol", 4),
        ("fee", "Fee", 9),
        ("order", "Order", 16),
        ("ref", "By", 12),
    )
    HIDE_WHEN_NARROW = ("order", "ref", "fee", "offset")
    FLEX = {"ref": 8}
    NEWEST_FIRST = True

    def __init__(self, *, scheme: str = "cn", id: str | None = None) -> None:
        super().__init__(id=id)
        self.scheme = scheme
        self.state: AccountState | None = None

    def key_of(self, item: Trade) -> str:
        return item.trade_id

    def cells(self, item: Trade) -> tuple[Cell, ...]:
        contract = self.state.contracts.get(item.vt_symbol) if self.state else None
        return (
            f"{item.datetime:%H:%M:%S}",
            item.vt_symbol,
            _side(item.direction, self.scheme),
            OFFSET_LABELS.get(item.offset, item.offset.name),
            fmt.right(fmt.price(item.price, contract)),
            fmt.right(fmt.volume(item.volume)),
            fmt.right(fmt.amount(item.commission)),
            item.order_id,
            _by(item.reference),
        )

    def show(self, state: AccountState) -> None:
        self.state = state
        self.sync(state.trades)
